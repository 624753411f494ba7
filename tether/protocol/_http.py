"""HTTP/1.1 client streams over h11 (sans-I/O).

h11 runs one request/response cycle at a time. Gun lets the user fire any
number of requests at once, so :class:`HttpClient` keeps a queue: every
request gets its ``StreamRef`` at once, the first is sent, and each next one
goes out when the previous cycle ends. What a lost connection means for each
stream follows from where it is: the one in the cycle was sent and is
*killed*; the queued ones never left and are *unprocessed* (Gun 1.0's two
lists in ``gun_down``).

Events are turned into Gun's messages with one event of lookahead, so that
``fin`` can be set on the ``Response`` (no body) or on the last ``Data``
when h11 has already seen the end of the message in the same read, instead
of always sending an extra empty ``Data(fin=True)``.

Flow control is Gun's (``flow`` in ``http_opts`` or per request): each
``Data`` event spends one credit of its stream; once the stream in the
cycle has none left and its response is not over, :attr:`HttpClient.flow_paused`
says so and the driver stops reading the connection (HTTP/1.1 has one
stream at a time on the wire), until :meth:`HttpClient.update_flow` gives
more. A cancelled stream is read to its end whatever its credit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Literal

import h11

from tether._errors import ConnectionClosed, InvalidRequestError, RemoteProtocolError
from tether._events import Error, Event, Headers, Inform, StreamRef, Trailers
from tether._options import HttpOpts
from tether.protocol import _received as received
from tether.protocol._phases import Observer
from tether.protocol._validate import HeaderList, transform_names
from tether.protocol._ws import WsHandshake

__all__ = ["HttpClient", "Outgoing", "Switch"]

# h11's error_status_hint for "Receive buffer too long": more than
# max_incomplete_event_size bytes without a complete event.
_TOO_LONG = 431


@dataclass(eq=False, slots=True)
class Outgoing:
    """A request waiting in the queue or in its cycle.

    ``body`` holds pieces not yet written; ``fin`` says the user has given
    the whole body. ``handshake`` is set for a Websocket upgrade request.
    """

    stream: StreamRef
    method: bytes
    target: bytes
    headers: HeaderList
    body: list[bytes] = field(default_factory=list)
    fin: bool = True
    handshake: WsHandshake | None = None
    cancelled: bool = False
    answered: bool = False
    #: Gun's flow credit: Data events it may still deliver (None: no flow control).
    flow: int | None = None
    #: The response's head (or the 101) has arrived.
    headed: bool = False
    #: Gun's ``function`` of the event handler's request phases: ``"request"``
    #: (the whole body given at once), ``"headers"`` (a streamed body) or
    #: ``"ws_upgrade"`` or ``"connect"`` (a CONNECT: its 2xx opens a tunnel).
    function: Literal["request", "headers", "ws_upgrade", "connect"] = "request"


@dataclass(frozen=True, slots=True)
class Switch:
    """A completed Websocket handshake or CONNECT: what takes the connection over.

    For a CONNECT (``request.function == "connect"``) ``headers`` are its
    2xx answer's and ``trailing_data`` the first bytes from the tunnel.
    """

    request: Outgoing
    headers: Headers
    trailing_data: bytes


def _fields_size(headers: h11._headers.Headers) -> int:
    # A header (or trailer) block's size on the wire, less any whitespace h11 stripped.
    # hot-path ledger: raw_items()
    raw = headers.raw_items()
    return sum(map(len, chain.from_iterable(raw))) + 4 * len(raw) + len(b"\r\n")


def _closes_after() -> ConnectionClosed:
    """Why a request cannot go out on a connection that closes after the cycle in progress."""
    return ConnectionClosed(
        "not sent: the connection closes after the response in progress (connection: close); "
        "send it again after the next Up"
    )


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    return {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }


def _says_close(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """``connection: close`` among ``headers`` (RFC 9112 9.6)."""
    return b"close" in _connection_tokens(headers)


def _says_keep_alive(headers: h11._headers.Headers) -> bool:
    return b"keep-alive" in _connection_tokens(headers.raw_items())


def _request_phase(request: Outgoing) -> dict[str, Any]:
    """The data of ``request_start`` and ``request_headers`` (Gun's request event)."""
    authority = next((value for name, value in request.headers if name == b"host"), b"")
    return {
        "stream": request.stream,
        "function": request.function,
        "method": request.method,
        "authority": authority,
        "path": request.target,
        "headers": list(request.headers),
    }


def _observe_head(observe: Observer, stream: StreamRef, phase: str, event: Any) -> None:
    """``response_start``, then ``phase`` (``response_inform`` or ``response_headers``)."""
    status = event.status_code
    observe("response_start", {"stream": stream, "status": status})
    observe(phase, {"stream": stream, "status": status, "headers": _headers(event.headers)})


def _observe_end(observe: Observer, stream: StreamRef, event: Any) -> None:
    """``response_trailers`` (if the message had any), then ``response_end``."""
    if event.headers:
        observe("response_trailers", {"stream": stream, "headers": _headers(event.headers)})
    observe("response_end", {"stream": stream})


def _headers(raw: h11._headers.Headers) -> Headers:
    # Lower-cased names, as h11's own iteration gives them; latin-1 maps every
    # byte, so nothing is lost. hot-path ledger: raw_items()
    return tuple(
        [
            (name.lower().decode("latin-1"), value.decode("latin-1"))
            for name, value in raw.raw_items()
        ]
    )


class HttpClient:
    """The HTTP/1.1 half of a client connection; see the module docstring."""

    def __init__(
        self,
        conn: Any,
        opts: HttpOpts,
        emit: Callable[[Event], None],
        write: Callable[[bytes], None],
        observe: Observer | None = None,
    ) -> None:
        self._conn = conn
        self._observe = observe
        self._http10 = opts.version == "HTTP/1.0"
        self._max_head = opts.max_header_block_size
        self._max_headers = opts.max_headers
        self._transform = opts.transform_header_name
        self._emit = emit
        self._write = write
        self._h11 = h11.Connection(
            h11.CLIENT, max_incomplete_event_size=opts.max_header_block_size
        )
        self._queue: deque[Outgoing] = deque()
        self._current: Outgoing | None = None
        self._switch_headers: Headers = ()
        self.close_reason: BaseException | None = None
        self.switch: Switch | None = None
        #: The connection closes after the cycle in progress (a request or its
        #: response said ``connection: close``, or the server speaks HTTP/1.0
        #: without keep-alive): nothing queued can be sent on it any more, so
        #: the requests queued and those submitted from then on fail at once
        #: (Gun's ``closing``) instead of in the ``Down``.
        self.will_close = False
        #: Bytes of request bodies held here, not yet written (queued behind
        #: an earlier request): the driver's send buffer counts them.
        self.held_size = 0

    # -- user intents ------------------------------------------------------

    def submit(self, request: Outgoing) -> None:
        """Queue a request; it is sent when every earlier cycle has ended."""
        if self.will_close:
            self._emit(Error(self._conn, request.stream, _closes_after()))
            return
        self._queue.append(request)
        self.held_size += sum(map(len, request.body))
        self._pump()

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """Add a piece of a streamed request body (see ``headers``)."""
        target = self._find(stream)
        if target is None or target.fin:
            self._emit(
                Error(
                    self._conn,
                    stream,
                    InvalidRequestError(
                        "data() for a stream that is not sending a body (unknown, or fin already "
                        "sent)"
                    ),
                )
            )
            return
        if data:
            target.body.append(data)
            self.held_size += len(data)
        target.fin = fin
        if target is self._current:
            self._send_body(target)
            self._end_cycle_and_continue()

    def cancel(self, stream: StreamRef) -> None:
        """Stop delivering events for ``stream``; a queued request is never sent.

        HTTP/1.1 cannot abort a request in the middle of its body, so
        cancelling one whose body is still being streamed closes the
        connection (the owner sees ``Down``), as the only way to stop it.
        """
        current = self._current
        if current is not None and current.stream is stream:
            current.cancelled = True
            if not current.fin:
                self._set_close_reason(
                    ConnectionClosed(
                        "closed to abort a cancelled request whose body was incomplete"
                    )
                )
            return
        for request in self._queue:
            if request.stream is stream:
                self._queue.remove(request)
                self.held_size -= sum(map(len, request.body))
                return

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Gun's ``update_flow``: ``increment`` more credit for ``stream``.

        Nothing for an unknown or ended stream, or one without flow control.
        """
        target = self._find(stream)
        if target is not None and target.flow is not None:
            target.flow += increment

    def stream_state(self, stream: StreamRef) -> Literal["running", "stopping"] | None:
        """``"running"``: queued or in its cycle; ``"stopping"``: cancelled in its cycle."""
        current = self._current
        if current is not None and current.stream is stream:
            if current.cancelled:
                return "stopping"  # its response is still read, and discarded
            return None if current.answered else "running"
        return "running" if any(r.stream is stream for r in self._queue) else None

    @property
    def flow_paused(self) -> bool:
        """True while the response on the wire may not deliver more (its credit is spent)."""
        current = self._current
        return (
            current is not None
            and current.flow is not None
            and current.flow <= 0
            and not (current.answered or current.cancelled)
        )

    @property
    def waiting_for_head(self) -> Outgoing | None:
        """The request on the wire, all of it sent, while its response head has not arrived.

        A streamed body still being sent is the client's wait, not the server's.
        """
        current = self._current
        if current is None or current.headed or current.answered or not current.fin:
            return None
        return current

    def fail_stream(self, request: Outgoing, error: Exception) -> None:
        """``request`` can never be answered (a timeout): ``Error``, then the connection closes."""
        if self._current is request:
            self._fail(error)

    @property
    def busy(self) -> bool:
        """True while a request is queued or its cycle has not ended."""
        return bool(self._queue) or self._current is not None

    def _closes(self) -> None:
        """The connection closes after this cycle: what is queued will never be sent."""
        if not self.will_close:
            self.will_close = True
            for request in self.take_queue():
                self._emit(Error(self._conn, request.stream, _closes_after()))

    def take_queue(self) -> list[Outgoing]:
        """Remove and return the requests that were never sent."""
        queued = [r for r in self._queue if not r.cancelled]
        self._queue.clear()
        self.held_size = 0
        return queued

    def lost_streams(self) -> tuple[list[StreamRef], list[StreamRef]]:
        """(killed, unprocessed) streams if the connection were lost now."""
        current = self._current
        killed = (
            [current.stream] if current and not (current.answered or current.cancelled) else []
        )
        return killed, [r.stream for r in self._queue]

    # -- bytes from the server --------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the server closed the connection."""
        if self.close_reason is not None or self.switch is not None:
            return
        self._h11.receive_data(data)
        while True:
            events: list[Any] = []
            try:
                self._next_events(events, eof=not data)
            except h11.RemoteProtocolError as exc:
                self._handle(events)
                self._on_remote_error(exc, eof=not data)
                return
            except RemoteProtocolError as exc:  # over one of our limits
                self._handle(events)
                self._fail(exc)
                return
            self._handle(events)
            if self.close_reason is not None or self._check_switch():
                return
            if not self._end_cycle_and_continue():
                return

    # -- internals -----------------------------------------------------------

    def _next_events(self, events: list[Any], *, eof: bool) -> None:
        """Append h11's next events to ``events`` until it needs data, pauses or closes."""
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return
            if event is h11.PAUSED:
                self._check_paused()
                if eof:  # h11 holds the EOF behind the paused bytes
                    self._set_close_reason(ConnectionClosed())
                return
            self._check_limits(event)
            events.append(event)
            if type(event) is h11.ConnectionClosed:  # hot-path ledger: type() is, for h11's events
                return

    def _find(self, stream: StreamRef) -> Outgoing | None:
        if self._current is not None and self._current.stream is stream:
            return self._current
        return next((r for r in self._queue if r.stream is stream), None)

    def _check_limits(self, event: Any) -> None:
        """Refuse a head (or trailer block) over ``max_header_block_size`` or ``max_headers``.

        h11 bounds only what is still incomplete (its 431 "receive buffer too
        long"); one read can bring a whole head that is too big.
        """
        # h11's events are ABCs. hot-path ledger: type() is, for h11's events
        kind = type(event)
        if kind is h11.Response or kind is h11.InformationalResponse:
            what = "response head"
            size = len(b"HTTP/1.1 000 \r\n") + len(event.reason) + _fields_size(event.headers)
        elif kind is h11.EndOfMessage and event.headers:
            what = "trailer block"
            size = _fields_size(event.headers)
        else:
            return
        if size > self._max_head:
            raise RemoteProtocolError(
                f"{what} larger than http_opts max_header_block_size ({self._max_head} bytes)"
            )
        count = len(event.headers)
        if self._max_headers is not None and count > self._max_headers:
            raise RemoteProtocolError(
                f"{what} with {count} header fields, over http_opts max_headers "
                f"({self._max_headers})"
            )

    def _check_paused(self) -> None:
        """Bound what the server sends past its response while h11 pauses.

        h11 pauses once the response is complete and leaves later bytes in its
        buffer, unchecked, until the next cycle; while a request body is
        still going out that can last for ever, so the bytes are held to the
        size of a head (they can only be the start of the next response).
        """
        waiting = len(self._h11.trailing_data[0])
        if waiting > self._max_head:
            raise RemoteProtocolError(
                f"the server sent {waiting} bytes after its response, before the next request "
                f"(over http_opts max_header_block_size, {self._max_head} bytes)"
            )

    def _set_close_reason(self, reason: BaseException) -> None:
        if self.close_reason is None:
            self.close_reason = reason

    def _pump(self) -> None:
        """Send the next queued request if no cycle is in progress."""
        if self._current is not None or self.close_reason is not None:
            return
        if self._h11.our_state is not h11.IDLE:
            return
        headers = None
        while headers is None:  # past the requests whose names cannot be transformed
            if not self._queue:
                return
            request = self._queue.popleft()
            headers = self._wire_headers(request)
        self._current = request
        observe = self._observe
        if observe is not None:
            observe("request_start", _request_phase(request))
        try:
            head = self._h11.send(
                h11.Request(method=request.method, target=request.target, headers=headers)
            )
        except h11.LocalProtocolError as exc:
            self.held_size -= sum(map(len, request.body))  # never sent
            self._refused(request, exc)
            return
        if self._http10:
            # h11 only writes HTTP/1.1; the request line is all that differs
            # for an HTTP/1.0 request (the body framing was checked at the call).
            head = head.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        self._write(head)
        if observe is not None:
            observe("request_headers", _request_phase(request))
        self._send_body(request)
        if self._http10 or _says_close(request.headers):
            self._closes()

    def _wire_headers(self, request: Outgoing) -> HeaderList | None:
        """``request``'s headers as they go out (``transform_header_name``); None if it failed.

        A transform that fails fails the request alone, with nothing of it
        sent: the connection goes on with the next one.
        """
        transform = self._transform
        if transform is None:
            return request.headers
        try:
            return transform_names(request.headers, transform)
        except InvalidRequestError as error:
            self.held_size -= sum(map(len, request.body))  # never sent
            self._emit_for(request, Error(self._conn, request.stream, error))
            return None

    def _send_body(self, request: Outgoing) -> None:
        pieces, request.body = request.body, []
        try:
            while pieces:
                self._write(self._h11.send(h11.Data(data=pieces[0])))
                self.held_size -= len(pieces.pop(0))
            if request.fin and self._h11.our_state is h11.SEND_BODY:
                self._write(self._h11.send(h11.EndOfMessage()))
                if self._observe is not None:
                    self._observe("request_end", {"stream": request.stream})
        except h11.LocalProtocolError as exc:  # more or less body than its content-length
            self.held_size -= sum(map(len, pieces))  # never sent
            self._refused(request, exc)

    def _refused(self, request: Outgoing, exc: h11.LocalProtocolError) -> None:
        """h11 would not send (part of) ``request``: ``Error`` for it, then the connection closes.

        Whatever the call-time checks let through (a streamed body longer or
        shorter than its ``content-length``). Part of the request may be on
        the wire already, and HTTP/1.1 cannot take it back.
        """
        error = InvalidRequestError(f"the request cannot be sent: {exc}")
        self._emit_for(request, Error(self._conn, request.stream, error))
        request.answered = True  # reported by this Error, not again in Down
        self._set_close_reason(error)

    def _end_cycle_and_continue(self) -> bool:
        """Start the next cycle if this one is over on both sides; True if it did."""
        ours, theirs = self._h11.our_state, self._h11.their_state
        if ours is h11.DONE and theirs is h11.DONE:
            self._h11.start_next_cycle()
            self._current = None
            self._pump()
            return True
        if h11.MUST_CLOSE in (ours, theirs) and {ours, theirs} <= {h11.DONE, h11.MUST_CLOSE}:
            self._set_close_reason(
                ConnectionClosed(
                    "the server ended the connection after the response (no keep-alive)"
                )
            )
        return False

    def _check_switch(self) -> bool:
        if self._h11.their_state is not h11.SWITCHED_PROTOCOL:
            return False
        request = self._current
        assert request is not None
        assert request.handshake is not None or request.function == "connect"
        request.answered = True
        self.switch = Switch(request, self._switch_headers, bytes(self._h11.trailing_data[0]))
        return True

    def _emit_for(self, request: Outgoing, event: Event) -> None:
        if not request.cancelled:
            self._emit(event)

    def _handle(self, events: list[Any]) -> None:
        request = self._current
        skip_end = False  # the message's end was told with its last head or data
        for index, event in enumerate(events):
            kind = type(event)  # hot-path ledger: type() is, for h11's events
            if kind is h11.ConnectionClosed:
                self._set_close_reason(ConnectionClosed())
                continue
            if request is None:  # pragma: no cover - h11 rejects responses without requests
                continue
            nxt = events[index + 1] if index + 1 < len(events) else None
            # The message ends right here if h11 already has its end, without trailers.
            ends_next = type(nxt) is h11.EndOfMessage and not nxt.headers
            skip_end = _ON_EVENT[kind](self, request, event, ends_next, skip_end)

    # One per h11 event kind (_ON_EVENT): each returns whether the
    # EndOfMessage that follows was already told (skip_end).

    def _on_inform(
        self, request: Outgoing, event: h11.InformationalResponse, ends_next: bool, skip: bool
    ) -> bool:
        if self._observe is not None:
            _observe_head(self._observe, request.stream, "response_inform", event)
        if event.status_code == 101:
            request.headed = True
            self._switch_headers = _headers(event.headers)
        else:
            inform = Inform(self._conn, request.stream, event.status_code, _headers(event.headers))
            self._emit_for(request, inform)
        return skip

    def _on_response(
        self, request: Outgoing, event: h11.Response, ends_next: bool, skip: bool
    ) -> bool:
        stream = request.stream
        if self._observe is not None:
            _observe_head(self._observe, stream, "response_headers", event)
        if request.function == "connect" and 200 <= event.status_code < 300:
            return self._on_tunnel(request, event)
        request.answered = ends_next
        request.headed = True
        self._emit_for(
            request,
            received.response(
                self._conn, stream, ends_next, event.status_code, _headers(event.headers)
            ),
        )
        if _says_close(event.headers.raw_items()) or (
            event.http_version == b"1.0" and not _says_keep_alive(event.headers)
        ):
            self._closes()  # the requests behind it fail, right after its head
        return ends_next

    def _on_tunnel(self, request: Outgoing, event: h11.Response) -> bool:
        """A 2xx to a CONNECT: the tunnel is open (h11 switches protocol right after).

        The answer has no body whatever its ``content-length`` or
        ``transfer-encoding`` say (RFC 9110 9.3.6): ``Response(fin=True)``,
        as Gun's. HTTP/1.0 answers count too (many proxies send them; Gun
        accepts them alike).
        """
        request.answered = request.headed = True
        stream = request.stream
        self._emit_for(
            request,
            received.response(
                self._conn, stream, True, event.status_code, _headers(event.headers)
            ),
        )
        self._switch_headers = _headers(event.headers)
        if self._observe is not None:
            self._observe("response_end", {"stream": stream})
        return True

    def _on_data(self, request: Outgoing, event: h11.Data, ends_next: bool, skip: bool) -> bool:
        request.answered = ends_next
        if request.flow is not None:
            request.flow -= 1
        self._emit_for(
            request, received.data(self._conn, request.stream, ends_next, bytes(event.data))
        )
        return ends_next

    def _on_end(
        self, request: Outgoing, event: h11.EndOfMessage, ends_next: bool, skip: bool
    ) -> bool:
        request.answered = True
        stream = request.stream
        if self._observe is not None:
            _observe_end(self._observe, stream, event)
        if skip:
            return skip
        if event.headers:
            self._emit_for(request, Trailers(self._conn, stream, _headers(event.headers)))
        else:
            self._emit_for(request, received.data(self._conn, stream, True, b""))
        return skip

    def _on_remote_error(self, exc: h11.RemoteProtocolError, *, eof: bool) -> None:
        if eof:
            # A close in the middle of a response: the stream is reported as
            # killed in Down, not as a malformed response.
            self._set_close_reason(
                ConnectionClosed(f"the server closed the connection mid-response ({exc})")
            )
            return
        if exc.error_status_hint == _TOO_LONG:
            message = (
                f"the server sent more than http_opts max_header_block_size ({self._max_head} "
                "bytes) without ending a response head, chunk-size line or trailer block"
            )
        else:
            message = f"malformed response from the server: {exc}"
        self._fail(RemoteProtocolError(message))

    def _fail(self, error: Exception) -> None:
        """The response cannot go on: ``Error`` for its stream, then the connection closes."""
        current = self._current
        # A stream whose response is complete is not in error: the connection is.
        in_error = current is not None and not (current.cancelled or current.answered)
        stream = current.stream if current is not None and in_error else None
        self._emit(Error(self._conn, stream, error))
        if current is not None:
            current.answered = True  # reported by this Error, not again in Down
        self._set_close_reason(error)


_OnEvent = Callable[[HttpClient, Outgoing, Any, bool, bool], bool]
_ON_EVENT: dict[type, _OnEvent] = {
    h11.InformationalResponse: HttpClient._on_inform,
    h11.Response: HttpClient._on_response,
    h11.Data: HttpClient._on_data,
    h11.EndOfMessage: HttpClient._on_end,
}
"""What HttpClient._handle does with each kind of h11 event a client receives."""
