"""HTTP/2 client streams over h2, Websocket over HTTP/2 (RFC 8441) among them (sans-I/O).

:class:`Http2Protocol` is the HTTP/2 engine behind the connection actor's
protocol seam (:class:`~tether.protocol._engine.ProtocolEngine`): the same
intents, the same ``drain`` and the same events per stream as HTTP/1.1's
:class:`~tether.protocol.ClientProtocol`, with every request its own
stream, all of them on the wire at once.

- **Start.** The client preface and SETTINGS (push refused,
  ``ENABLE_PUSH = 0``) go out at once; requests wait until the server's
  SETTINGS came, so that ``max_concurrent_streams`` and
  ``enable_connect_protocol`` are known before any stream opens.
- **Streams.** A request opens a stream while the server's
  ``max_concurrent_streams`` allows it; the excess waits in a queue, in
  order (its bodies count in :attr:`held_size`, which the actor's send
  buffer bounds). ``cancel`` resets a stream (``RST_STREAM(CANCEL)``);
  a stream the server resets ends in ``Error(StreamReset)``.
- **Flow control.** Received DATA is acknowledged (its window given back,
  in steps of a sixteenth of the window) as it becomes an event, except on
  a stream whose Gun ``flow`` credit is spent: its bytes are acknowledged
  when ``update_flow`` gives credit, so a slow stream shrinks its window,
  and the connection's, instead of growing memory. The receive windows
  are ``http2_opts``' (1 MiB a stream, 4 MiB the connection, by default);
  request bodies (and Websocket frames) wait in their stream until the
  server's window takes them.
- **GOAWAY.** The streams above the server's ``last_stream_id`` and the
  queued ones are *unprocessed* in the ``Down`` (Gun 2.x), safe to send
  again after the reconnect; no new stream opens. A graceful GOAWAY
  (NO_ERROR) lets the streams up to ``last_stream_id`` finish, as Gun
  does (servers send one after so many requests: hypercorn after 1000),
  and the connection ends when none is left; with an error code it ends
  at once, the rest *killed*.
- **PING.** :meth:`Http2Protocol.ping` sends one; its ACK is a
  ``PingAck`` event.
- **Websocket.** ``ws_upgrade`` sends an extended CONNECT
  (``:protocol: websocket``) if the server's SETTINGS enabled it (else an
  ``Error`` for the stream, as Gun does); a ``2xx`` starts a
  :class:`~tether.protocol._ws.WsClient` on the stream, the same frame
  layer as over HTTP/1.1, whose bytes become DATA of the stream. Its close
  handshake ends the stream, not the connection.

A malformed frame, an HPACK bomb (h2 bounds the header list to
``max_header_block_size``), a window overflow: h2 raises, and the
connection ends with an ``Error`` and a GOAWAY. Not thread-safe: the
connection actor alone drives it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from tether._errors import (
    ConnectionClosed,
    GoAway,
    InvalidRequestError,
    NotUpgradedError,
    RemoteProtocolError,
    StreamReset,
    UpgradeError,
)
from tether._events import (
    Error,
    Event,
    Headers,
    Inform,
    PingAck,
    ProtocolName,
    StreamRef,
    Trailers,
    Upgrade,
)
from tether._frames import Close, Frame
from tether._options import Http2Opts, HttpOpts, WsOpts
from tether.protocol import _received as received
from tether.protocol._engine import HeadWait
from tether.protocol._h2_streams import H2Client, H2Stream, StreamState, response_head
from tether.protocol._phases import Observer
from tether.protocol._validate import HeaderList
from tether.protocol._ws import WsClient, WsHandshake

__all__ = ["Http2Protocol"]

# The windows every connection starts with (RFC 9113 6.9.2), before its SETTINGS.
_DEFAULT_WINDOW = 65_535

# Connection-specific headers have no place in HTTP/2 (RFC 9113 8.2.2): dropped, as Gun does.
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"host"}
)
# RFC 9113 7: CANCEL, what a client sends when it no longer wants a stream.
_CANCEL = h2.errors.ErrorCodes.CANCEL
_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_CLOSED = h2.connection.ConnectionState.CLOSED
# The pseudo-headers a response may carry (:status): not counted as header fields.
_PSEUDO_MAX = 1


class Http2Protocol:
    """An HTTP/2 client connection state machine; see the module docstring.

    Args:
        conn: the object events carry as ``conn`` (the user's handle).
        authority: the ``:authority`` (``host[:port]``).
        scheme: ``"https"`` over TLS, ``"http"`` for h2c.
        http_opts: HTTP options (``max_header_block_size`` bounds a header
            list, ``flow`` the streams' credit, ``response_timeout``).
        ws_opts: default Websocket options.
        http2_opts: the receive windows (``Http2Opts``; default: its defaults).
        observe: the event handler's phases (see ``ClientProtocol``).

    Not thread-safe: one thread (the connection actor) drives it.
    """

    def __init__(
        self,
        conn: Any,
        *,
        authority: str,
        scheme: str,
        http_opts: HttpOpts,
        ws_opts: WsOpts,
        http2_opts: Http2Opts | None = None,
        observe: Observer | None = None,
    ) -> None:
        windows = http2_opts or Http2Opts()
        self._conn = conn
        self._observe = observe
        self._authority = (
            authority.encode("idna") if not authority.isascii() else authority.encode()
        )
        self._scheme = scheme.encode()
        self._http_opts = http_opts
        self._ws_opts = ws_opts
        self._events: list[Event] = []
        self._h2 = H2Client(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self._h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: windows.initial_stream_window_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: http_opts.max_header_block_size,
            },
        )
        # Enforced from the start, not only once the server acknowledged the setting.
        self._h2.decoder.max_header_list_size = http_opts.max_header_block_size
        self._h2.initiate_connection()
        extra = windows.initial_connection_window_size - _DEFAULT_WINDOW
        if extra:
            self._h2.increment_flow_control_window(extra)
        self._queue: deque[H2Stream] = deque()
        self._open: dict[int, H2Stream] = {}
        self._by_ref: dict[StreamRef, H2Stream] = {}
        self._settled = False  # the server's first SETTINGS came
        self._goaway: GoAway | None = None
        #: A graceful GOAWAY came while streams below its last id ran. They may
        #: finish (RFC 9113 6.8), but a server need not answer them nor close:
        #: the connection actor ends the wait after ``closing_timeout``, as Gun
        #: does (``stop_draining``).
        self.draining = False
        self._pings: dict[bytes, StreamRef | None] = {}
        self._ping_ids = itertools.count(1)
        self._last_ws: H2Stream | None = None
        self._held = 0  # bytes in the streams' bodies (held_size), kept as they come and go
        self._window_grew = False  # a WINDOW_UPDATE or SETTINGS came: bodies may go on
        # Acknowledged bytes not yet given back to h2, and the steps they go back in (_ack).
        self._acking: dict[int, H2Stream] = {}
        self._acked = 0
        self._ack_step = windows.initial_stream_window_size // 16
        self._ack_step_all = windows.initial_connection_window_size // 16
        self.close_reason: BaseException | None = None

    # -- state -------------------------------------------------------------

    @property
    def protocol(self) -> ProtocolName:
        """Always ``"http2"``: Websockets are streams, the connection stays HTTP/2."""
        return "http2"

    @property
    def ws(self) -> WsClient | None:
        """None: no Websocket is the whole connection on HTTP/2."""
        return None

    @property
    def ws_stream(self) -> StreamRef | None:
        """None: see :attr:`ws`."""
        return None

    @property
    def keepalive_ws(self) -> WsClient | None:
        """The last Websocket upgraded, if it is open: keepalive pings it (``ws_opts``)."""
        stream = self._last_ws
        return None if stream is None else stream.ws

    @property
    def tunnel(self) -> None:
        """None: a CONNECT tunnel through HTTP/2 is not there yet (see :meth:`connect`)."""
        return None

    @property
    def busy(self) -> bool:
        """True while a stream is queued or open (a Websocket among them)."""
        return bool(self._queue) or bool(self._open)

    @property
    def flow_paused(self) -> bool:
        """Always False: HTTP/2 pauses a stream by its window, never the whole connection."""
        return False

    @property
    def held_size(self) -> int:
        """Bytes of bodies (and Websocket frames) held here, waiting for room or for a window."""
        return self._held

    @property
    def head_wait(self) -> HeadWait | None:
        """The oldest open stream waiting for its response head, if ``response_timeout`` is set."""
        for stream in self._open.values():
            if stream.headed or stream.answered or not stream.sent_end:
                continue
            if stream.handshake is not None:
                timeout = stream.handshake.opts.upgrade_timeout
            else:
                timeout = self._http_opts.response_timeout
            if timeout is not None:
                return HeadWait(stream.ref, timeout, stream.handshake is not None)
        return None

    def head_timed_out(self, stream: StreamRef, error: Exception) -> None:
        """``stream`` waited too long for its head: ``Error`` for it, and it is reset.

        The other streams go on: on HTTP/2 a late response costs its stream only.
        """
        target = self._by_ref.get(stream)
        if target is not None and target.state is StreamState.OPEN and not target.headed:
            self._fail_stream(target, error)

    def stream_state(self, stream: StreamRef) -> Literal["running", "stopping"] | None:
        """``"running"`` while queued or open; ``"stopping"`` while a Websocket closes."""
        target = self._by_ref.get(stream)
        if target is None or target.state is StreamState.DONE:
            return None
        ws = target.ws
        if ws is not None and ws.closing:
            return "stopping"
        return "running"

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Gun's ``update_flow``: more credit; the bytes held for it are acknowledged."""
        target = self._by_ref.get(stream)
        if target is None:
            return
        if target.ws is not None:
            target.ws.update_flow(increment)
        elif target.flow is not None:
            target.flow += increment
        if target.unacked and not self._spent(target):
            self._ack(target, target.unacked)
            target.unacked = 0

    def take_unsent(self) -> list[StreamRef]:
        """Remove the requests queued for room (never sent); their streams."""
        queued = [stream.ref for stream in self._queue]
        for stream in self._queue:
            self._by_ref.pop(stream.ref, None)
            self._drop(stream)
        self._queue.clear()
        return queued

    def events(self) -> list[Event]:
        """Remove and return the events produced so far, oldest first."""
        events = self._events[:]
        self._events.clear()  # the same list: the Websockets' emit appends to it
        return events

    def data_to_send(self) -> bytes:
        """Remove and return the bytes to write to the socket."""
        return self._h2.data_to_send()

    def chunks_to_send(self) -> list[bytes | bytearray]:
        """:meth:`data_to_send` as a list of pieces (empty when there is nothing)."""
        data = self._h2.take_data()
        return [data] if data else []

    def drain(
        self,
    ) -> tuple[list[bytes | bytearray], list[Event], BaseException | None, WsClient | None]:
        """``(chunks, events, close_reason, None)``: see ``ClientProtocol.drain``.

        A failing Websocket of a stream sends its close frame at once (no
        linger timer on HTTP/2): the last item is always None.
        """
        data = self._h2.take_data()
        events: list[Event] = []
        if self._events:
            events = self._events[:]
            self._events.clear()  # the same list: the Websockets' emit appends to it
        return ([data] if data else []), events, self.close_reason, None

    def lost_streams(self) -> tuple[tuple[StreamRef, ...], tuple[StreamRef, ...]]:
        """``(killed, unprocessed)`` for the ``Down``: see the module docstring."""
        last = self._goaway.last_stream_id if self._goaway is not None else None
        killed: list[StreamRef] = []
        unprocessed: list[StreamRef] = []
        for stream in self._open.values():
            if stream.answered:
                continue
            if last is not None and stream.id > last:
                unprocessed.append(stream.ref)
            else:
                killed.append(stream.ref)
        unprocessed.extend(stream.ref for stream in self._queue)
        return tuple(killed), tuple(unprocessed)

    # -- intents -----------------------------------------------------------

    def _flow(self, flow: int | None) -> int | None:
        return self._http_opts.flow if flow is None else flow

    def request(
        self,
        stream: StreamRef,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        body: bytes | None,
        *,
        flow: int | None = None,
    ) -> None:
        """A request with its whole body (``None``: none)."""
        request = H2Stream(stream, method, target, headers, flow=self._flow(flow))
        if body:
            self._hold(request, body)
        self._submit(request)

    def headers(
        self,
        stream: StreamRef,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        *,
        flow: int | None = None,
    ) -> None:
        """A request whose body follows through :meth:`data`."""
        self._submit(
            H2Stream(
                stream,
                method,
                target,
                headers,
                fin=False,
                flow=self._flow(flow),
                function="headers",
            )
        )

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """A piece of a streamed request body; ``fin`` marks the last one."""
        target = self._by_ref.get(stream)
        if target is None or target.fin or target.ws is not None:
            self._events.append(
                Error(
                    self._conn,
                    stream,
                    InvalidRequestError(
                        "data() for a stream that is not sending a body (unknown, or fin "
                        "already sent)"
                    ),
                )
            )
            return
        if data:
            self._hold(target, data)
        target.fin = fin
        if target.state is StreamState.OPEN:
            self._send_body(target)

    def cancel(self, stream: StreamRef) -> None:
        """Drop a queued request; reset an open stream (``RST_STREAM(CANCEL)``)."""
        target = self._by_ref.pop(stream, None)
        if target is None:
            return
        if target.state is StreamState.QUEUED:
            self._queue.remove(target)
            self._drop(target)
        elif target.state is StreamState.OPEN:
            self._reset(target, _CANCEL)
        target.state = StreamState.DONE
        self._pump()

    def ws_upgrade(
        self, stream: StreamRef, target: bytes, headers: HeaderList, opts: WsOpts | None = None
    ) -> None:
        """A Websocket on a new stream: an extended CONNECT (RFC 8441), once the server allows."""
        handshake = WsHandshake(headers, opts or self._ws_opts)
        self._submit(
            H2Stream(
                stream,
                b"CONNECT",
                target,
                handshake.extended_connect_headers(),
                fin=False,
                flow=handshake.opts.flow,
                handshake=handshake,
                function="ws_upgrade",
            )
        )

    def connect(
        self,
        stream: StreamRef,
        authority: str,
        headers: HeaderList,
        *,
        username: str | None = None,
        password: str | None = None,
        flow: int | None = None,
    ) -> bool:
        """Gun's ``gun:connect`` over HTTP/2: not yet; an ``Error`` for ``stream`` (False)."""
        self._events.append(
            Error(
                self._conn,
                stream,
                InvalidRequestError(
                    "CONNECT tunnels through an HTTP/2 connection are not supported yet; "
                    "open the connection with protocols=('http',)"
                ),
            )
        )
        return False

    def ws_send(self, frames: tuple[Frame, ...], stream: StreamRef | None = None) -> None:
        """Send frames on a Websocket stream (``None``: the last one upgraded)."""
        target = self._last_ws if stream is None else self._by_ref.get(stream)
        ws = None if target is None or target.state is not StreamState.OPEN else target.ws
        if ws is None or target is None:
            self._events.append(
                Error(
                    self._conn,
                    stream,
                    NotUpgradedError(
                        f"no Websocket is up on this stream; {len(frames)} frame(s) not sent",
                        frames,
                    ),
                )
            )
            return
        ws.send(frames)
        self._after_ws(target)

    def close_websockets(self, code: int) -> bool:
        """Begin the close handshake (``code``) of every Websocket stream not closing yet."""
        closed = False
        for stream in list(self._open.values()):
            ws = stream.ws
            if ws is not None and not ws.closing:
                ws.send((Close(code),))
                self._after_ws(stream)
                closed = True
        return closed

    def closing_timeout(self, http: float) -> float:
        """The longest bound of the streams open: ``http``, or a Websocket's own (ProtocolEngine).

        A Websocket's close handshake waits as long as its ``ws_opts`` say,
        as over HTTP/1.1, not ``http_opts``' (15 s by default) as well.
        """
        bounds = (http if s.ws is None else s.ws.opts.closing_timeout for s in self._open.values())
        return max(bounds, default=http)

    def ping(self, ref: StreamRef | None) -> None:
        """Send a PING; its ACK is told as ``PingAck(conn, ref)`` (None: told to nobody)."""
        opaque = next(self._ping_ids).to_bytes(8, "big")
        self._pings[opaque] = ref
        self._h2.ping(opaque)

    def stop_draining(self) -> None:
        """The wait for the streams below the GOAWAY's last id is over: they are killed."""
        if self._goaway is not None and self.close_reason is None:
            self.close_reason = self._goaway

    def http_keepalive(self) -> bool:
        """HTTP/2's keepalive is a PING (Gun's ``http2_opts`` keepalive); its ACK is not told."""
        if self.close_reason is not None:
            return False
        self.ping(None)
        return True

    # -- bytes in ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` when the server closed it."""
        if self.close_reason is not None:
            return
        if not data:
            self.close_reason = self._goaway or ConnectionClosed()
            return
        try:
            # The DATA frames H2Client reads itself come to _data_read, without
            # h2's events (hot-path ledger: h2's DATA, framed here).
            h2_events = self._h2.receive_data(data, self._data_read)
        except h2.exceptions.H2Error as exc:
            self._fail_connection(
                RemoteProtocolError(f"HTTP/2 protocol error from the server: {exc}")
            )
            return
        if self._ended():
            return
        handle = _ON_EVENT
        for event in h2_events:
            on = handle.get(type(event))
            if on is not None:
                on(self, event)
            if self._ended():
                return
        if self._queue or self._window_grew:
            self._pump()

    def _ended(self) -> bool:
        """The connection must close (a method: a handler above may have said so)."""
        return self.close_reason is not None

    # -- internals ---------------------------------------------------------

    def _submit(self, stream: H2Stream) -> None:
        if self._goaway is not None:
            self._events.append(
                Error(
                    self._conn,
                    stream.ref,
                    ConnectionClosed(
                        "not sent: the server sent GOAWAY; send it again after the next Up"
                    ),
                )
            )
            return
        self._by_ref[stream.ref] = stream
        self._queue.append(stream)
        self._pump()

    def _pump(self) -> None:
        """Open queued streams while the server allows more; after a window grew, write more.

        Only then are all open streams looked at: a request costs the
        streams it opens, not one look at every stream on the connection.
        """
        if not self._settled or self.close_reason is not None:
            return
        queue = self._queue
        if queue and self._goaway is None:
            limit = self._h2.remote_settings.max_concurrent_streams
            while queue and self._h2.open_outbound_streams < limit:
                self._start(queue.popleft())
        if self._window_grew:
            self._window_grew = False
            for stream in list(self._open.values()):
                if stream.unsent:
                    self._send_body(stream)

    def _start(self, stream: H2Stream) -> None:
        """Send ``stream``'s head: it is on the wire from now on."""
        if stream.handshake is not None and not self._h2.remote_settings.enable_connect_protocol:
            self._by_ref.pop(stream.ref, None)
            stream.state = StreamState.DONE
            self._drop(stream)
            self._events.append(
                Error(
                    self._conn,
                    stream.ref,
                    UpgradeError(
                        "the HTTP/2 server did not enable Websocket over HTTP/2 (RFC 8441, "
                        "SETTINGS_ENABLE_CONNECT_PROTOCOL); open the connection with "
                        "protocols=('http',) to upgrade over HTTP/1.1"
                    ),
                )
            )
            return
        head: list[tuple[bytes, bytes]] = [(b":method", stream.method)]
        if stream.handshake is not None:
            head.append((b":protocol", b"websocket"))
        authority = next((v for n, v in stream.headers if n == b"host"), self._authority)
        head += [(b":scheme", self._scheme), (b":authority", authority), (b":path", stream.target)]
        head += [(n, v) for n, v in stream.headers if n not in _CONNECTION_SPECIFIC]
        stream.id = self._h2.get_next_available_stream_id()
        end = stream.fin and not stream.body
        try:
            self._h2.send_headers(stream.id, head, end_stream=end)
        except h2.exceptions.H2Error as exc:
            self._by_ref.pop(stream.ref, None)
            stream.state = StreamState.DONE
            self._drop(stream)
            self._events.append(
                Error(
                    self._conn,
                    stream.ref,
                    InvalidRequestError(f"not a valid HTTP/2 request: {exc}"),
                )
            )
            return
        stream.state = StreamState.OPEN
        stream.sent_end = end
        self._open[stream.id] = stream
        observe = self._observe
        if observe is not None:
            phase = {
                "stream": stream.ref,
                "function": stream.function,
                "method": stream.method,
                "authority": authority,
                "path": stream.target,
                "headers": head,
            }
            observe("request_start", phase)
            observe("request_headers", phase)
            if end:
                observe("request_end", {"stream": stream.ref})
        if not end:
            self._send_body(stream)  # what of its body the windows take now

    def _send_body(self, stream: H2Stream) -> None:
        """Write as much of the body as the windows allow; END_STREAM after its last byte."""
        h2c = self._h2
        body = stream.body
        if 0 < len(body) <= 2 and not stream.fin:
            # The common case, a Websocket frame (its header, its payload): one
            # DATA frame framed here if the windows take it whole (hot-path ledger:
            # h2's DATA, framed here); else the loop below, through h2.
            data = body[0] if len(body) == 1 else b"".join(body)
            if h2c.frame_data(stream.id, data):
                body.clear()
                self._held -= len(data)
                return
        while body:
            window = min(h2c.local_flow_control_window(stream.id), h2c.max_outbound_frame_size)
            if window <= 0:
                return
            chunk = self._take(body, window)
            last = not body and stream.fin
            h2c.send_data(stream.id, chunk, end_stream=last)
            if last:
                self._sent_end(stream)
                return
        if stream.fin and not stream.sent_end:
            h2c.end_stream(stream.id)
            self._sent_end(stream)

    def _hold(self, stream: H2Stream, piece: bytes | bytearray | memoryview) -> None:
        """``piece`` waits in ``stream`` for its turn and its window (counted in held_size)."""
        stream.body.append(piece)
        self._held += len(piece)

    def _drop(self, stream: H2Stream) -> None:
        """What ``stream`` still held will never be sent."""
        self._held -= sum(map(len, stream.body))
        stream.body.clear()

    def _take(self, body: deque[bytes | bytearray | memoryview], window: int) -> bytes:
        """The next DATA frame's payload: the pieces that fit in ``window``, joined.

        A Websocket frame is two pieces (header, masked payload): one DATA
        frame carries both, not one each (h2's framing, and the server's,
        cost per frame).
        """
        piece = body[0]
        size = len(piece)
        if size > window:
            view = memoryview(piece)
            body[0] = view[window:]
            self._held -= window
            return bytes(view[:window])
        body.popleft()
        if body and size + len(body[0]) <= window:
            parts = [piece]
            while body and size + len(body[0]) <= window:
                part = body.popleft()
                parts.append(part)
                size += len(part)
            piece = b"".join(parts)
        self._held -= size
        return bytes(piece)

    def _sent_end(self, stream: H2Stream) -> None:
        stream.sent_end = True
        if self._observe is not None:
            self._observe("request_end", {"stream": stream.ref})

    def _spent(self, stream: H2Stream) -> bool:
        """The stream's Gun flow credit is spent: its bytes stay unacknowledged."""
        if stream.ws is not None:
            return stream.ws.flow_paused
        return stream.flow is not None and stream.flow <= 0

    def _ack(self, stream: H2Stream, size: int) -> None:
        """``size`` bytes of ``stream`` were told: their window goes back, in steps.

        h2 sends a WINDOW_UPDATE only once half a window was given back;
        telling it every DATA frame's bytes (a Websocket message is one) cost
        more than the frame itself. They are given back once a stream holds a
        sixteenth of its window, or all streams together a sixteenth of the
        connection's: what is held never keeps the server waiting.
        """
        if not size:
            return
        stream.acked += size
        self._acked += size
        self._acking[stream.id] = stream
        if stream.acked >= self._ack_step or self._acked >= self._ack_step_all:
            self._give_back()

    def _give_back(self) -> None:
        """Every stream's acknowledged bytes to h2 (WINDOW_UPDATEs as h2 sees fit)."""
        for stream in self._acking.values():
            if stream.acked:
                self._h2.acknowledge_received_data(stream.acked, stream.id)
                stream.acked = 0
        self._acking.clear()
        self._acked = 0

    def _reset(self, stream: H2Stream, code: int) -> None:
        self._open.pop(stream.id, None)
        stream.state = StreamState.DONE
        self._drop(stream)
        self._release(stream)
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream.id, code)  # unless the server ended it meanwhile
        if self._goaway is not None:
            self._check_goaway_end()

    def _release(self, stream: H2Stream) -> None:
        """The connection's window gets back what a stream that ends left unacknowledged."""
        held = stream.unacked + stream.acked
        if held:
            self._h2.acknowledge_received_data(held, stream.id)
            self._acked -= stream.acked
            self._acking.pop(stream.id, None)
            stream.unacked = stream.acked = 0

    def _finish(self, stream: H2Stream) -> None:
        """The stream is over: forget it (its ref ends with it)."""
        stream.answered = True
        stream.state = StreamState.DONE
        self._release(stream)
        self._open.pop(stream.id, None)
        self._by_ref.pop(stream.ref, None)
        if self._last_ws is stream:
            self._last_ws = None
        if self._goaway is not None:
            self._check_goaway_end()

    def _check_goaway_end(self) -> None:
        """After a graceful GOAWAY, the connection ends once no stream is left open."""
        if self._goaway is not None and not self._open and self.close_reason is None:
            self.close_reason = self._goaway

    def _fail_stream(self, stream: H2Stream, error: Exception) -> None:
        self._events.append(Error(self._conn, stream.ref, error))
        self._reset(stream, _CANCEL)
        self._finish(stream)

    def _fail_connection(self, error: RemoteProtocolError) -> None:
        """The server broke HTTP/2: ``Error`` for the connection; h2 queued the GOAWAY."""
        self._events.append(Error(self._conn, None, error))
        self.close_reason = error

    def _after_ws(self, stream: H2Stream) -> None:
        """After the frame layer of ``stream`` worked: its bytes out, its end if it ended."""
        ws = stream.ws
        assert ws is not None
        if ws.open:  # the common case: no close and no failure to act on, only bytes to send
            # (Its END_STREAM is not due while it is open: it rides on the close frame.)
            if stream.body and stream.state is StreamState.OPEN:
                self._send_body(stream)
            return
        if ws.failing:
            ws.fail_now()
        if ws.closing and not stream.fin:
            # A close frame went out (ours, or the echo of the server's): nothing may
            # follow it, so END_STREAM rides on its DATA frame (RFC 8441 4, 6455 5.5.1).
            stream.fin = True
        if stream.state is StreamState.OPEN and stream.unsent:
            self._send_body(stream)  # (after a read, usually nothing to send)
        if ws.close_reason is not None and stream.sent_end:
            # The Websocket is over (close handshake done, or failed, or the server
            # ended its side). A server that leaves its half open (hypercorn does,
            # after a close the client began) would hold the stream, and a slot of
            # max_concurrent_streams, for good: it is reset instead.
            if not stream.answered:
                self._reset(stream, _CANCEL)
            self._finish(stream)

    # One per h2 event kind (_ON_EVENT).

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        self._settled = True
        self._window_grew = True  # (its initial window size may have grown)

    def _stream_of(self, stream_id: int | None) -> H2Stream | None:
        return self._open.get(stream_id or 0)

    def _head(
        self, stream: H2Stream, raw: list[tuple[bytes, bytes]] | None, what: str
    ) -> tuple[int, Headers] | None:
        """``(status, headers)`` of a head or trailer block; None if over ``max_headers``.

        h2 bounds the block's size (``max_header_block_size``, HPACK
        included); the count is checked here, as for HTTP/1.1. A block over
        it fails its stream only.
        """
        raw = raw or []
        limit = self._http_opts.max_headers
        if limit is not None and len(raw) > limit + _PSEUDO_MAX:
            count = sum(1 for name, _ in raw if not name.startswith(b":"))
            if count > limit:
                self._fail_stream(
                    stream,
                    RemoteProtocolError(
                        f"{what} with {count} header fields, over http_opts max_headers ({limit})"
                    ),
                )
                return None
        try:
            return response_head(raw)
        except RemoteProtocolError as exc:  # a :status that is no status code
            self._fail_stream(stream, exc)
            return None

    def _on_informational(self, event: h2.events.InformationalResponseReceived) -> None:
        stream = self._stream_of(event.stream_id)
        if stream is None:
            return
        head = self._head(stream, event.headers, "response head")
        if head is None:
            return
        status, headers = head
        if self._observe is not None:
            self._observe("response_start", {"stream": stream.ref, "status": status})
            self._observe(
                "response_inform", {"stream": stream.ref, "status": status, "headers": headers}
            )
        self._events.append(Inform(self._conn, stream.ref, status, headers))

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        stream = self._stream_of(event.stream_id)
        if stream is None:
            return
        head = self._head(stream, event.headers, "response head")
        if head is None:
            return
        status, headers = head
        stream.headed = True
        fin = event.stream_ended is not None
        if self._observe is not None:
            self._observe("response_start", {"stream": stream.ref, "status": status})
            self._observe(
                "response_headers", {"stream": stream.ref, "status": status, "headers": headers}
            )
        if stream.handshake is not None and 200 <= status < 300 and not fin:
            self._upgraded(stream, headers)
            return
        stream.answered = fin
        self._events.append(received.response(self._conn, stream.ref, fin, status, headers))
        if fin:
            self._end_response(stream)

    def _upgraded(self, stream: H2Stream, headers: Headers) -> None:
        handshake = stream.handshake
        assert handshake is not None
        try:
            extensions = handshake.accept_extended_connect(headers)
        except UpgradeError as exc:
            self._fail_stream(stream, exc)
            return
        stream.ws = WsClient(
            self._conn,
            stream.ref,
            handshake.opts,
            extensions=extensions,
            trailing_data=b"",
            emit=self._events.append,
            write=functools.partial(self._hold, stream),
            flow=stream.flow,
            observe=self._observe,
        )
        self._last_ws = stream
        if self._observe is not None:
            self._observe("protocol_changed", {"stream": stream.ref, "protocol": "ws"})
        self._events.append(Upgrade(self._conn, stream.ref, ("websocket",), headers))

    def _on_data(self, event: h2.events.DataReceived) -> None:
        self._data(
            event.stream_id,
            event.data or b"",
            event.flow_controlled_length or 0,
            event.stream_ended is not None,
        )

    def _data_read(self, stream_id: int, data: bytes, size: int) -> bool:
        """A DATA frame H2Client read itself (no END_STREAM); False once the connection ends."""
        self._data(stream_id, data, size, False)
        return self.close_reason is None

    def _data(self, stream_id: int, data: bytes, size: int, fin: bool) -> None:
        """``data`` (``size`` bytes of the windows) for ``stream_id``; ``fin``: its last."""
        stream = self._open.get(stream_id)
        if stream is None or stream.answered:
            if size and stream_id:  # a stream cancelled or ended: its window still counts
                self._h2.acknowledge_received_data(size, stream_id)
            return
        ws = stream.ws
        if ws is not None:
            if data:
                ws.receive_data(data)
            if fin:
                ws.receive_data(b"")
                stream.answered = True
            self._after_ws(stream)
        else:
            if stream.flow is not None:
                stream.flow -= 1
            stream.answered = fin
            self._events.append(received.data(self._conn, stream.ref, fin, data))
            if fin:
                self._end_response(stream)
        if self._spent(stream) and not stream.answered:
            stream.unacked += size
        else:
            self._ack(stream, size)

    def _on_trailers(self, event: h2.events.TrailersReceived) -> None:
        stream = self._stream_of(event.stream_id)
        if stream is None or stream.answered:
            return
        head = self._head(stream, event.headers, "trailer block")
        if head is None:
            return
        headers = head[1]
        if self._observe is not None:
            self._observe("response_trailers", {"stream": stream.ref, "headers": headers})
        stream.answered = True
        self._events.append(Trailers(self._conn, stream.ref, headers))
        self._end_response(stream)

    def _on_stream_ended(self, event: h2.events.StreamEnded) -> None:
        stream = self._stream_of(event.stream_id)
        if stream is None:
            return
        if stream.ws is not None:
            if not stream.answered:
                stream.ws.receive_data(b"")
                stream.answered = True
            self._after_ws(stream)
            return
        if not stream.answered:
            stream.answered = True
            self._events.append(received.data(self._conn, stream.ref, True, b""))
            self._end_response(stream)

    def _end_response(self, stream: H2Stream) -> None:
        """The response is whole; the stream ends (reset if its body is still being sent)."""
        if self._observe is not None:
            self._observe("response_end", {"stream": stream.ref})
        if not stream.sent_end:
            # RFC 9113 8.1: the server answered before the whole request;
            # the rest of the body is not wanted.
            self._reset(stream, _NO_ERROR)
        self._finish(stream)

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self._stream_of(event.stream_id)
        if stream is None:
            return
        code = int(event.error_code or 0)
        stream.state = StreamState.DONE
        if not stream.answered:
            self._events.append(Error(self._conn, stream.ref, StreamReset(code)))
        self._finish(stream)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        code = int(event.error_code or 0)
        last = event.last_stream_id if event.last_stream_id is not None else 0
        if self._goaway is not None:  # a later GOAWAY may only lower last_stream_id
            last = min(last, self._goaway.last_stream_id)
        self._goaway = goaway = GoAway(code, last)
        # The streams the server will never process join the queued ones (unprocessed).
        for stream in list(self._open.values()):
            if stream.id > last:
                self._open.pop(stream.id)
                self._queue.append(stream)
        if code != _NO_ERROR or self._h2.state_machine.state is _CLOSED:
            self.close_reason = goaway  # those it may have processed are killed
        else:
            self._check_goaway_end()  # they may finish first
            self.draining = self.close_reason is None

    def _on_ping_ack(self, event: h2.events.PingAckReceived) -> None:
        ref = self._pings.pop(event.ping_data or b"", None)
        if ref is not None:
            self._events.append(PingAck(self._conn, ref))

    def _on_window(self, event: h2.events.WindowUpdated) -> None:
        self._window_grew = True  # _pump, after the read, writes what it takes


_ON_EVENT: dict[type, Callable[[Http2Protocol, Any], None]] = {
    h2.events.RemoteSettingsChanged: Http2Protocol._on_settings,
    h2.events.InformationalResponseReceived: Http2Protocol._on_informational,
    h2.events.ResponseReceived: Http2Protocol._on_response,
    h2.events.DataReceived: Http2Protocol._on_data,
    h2.events.TrailersReceived: Http2Protocol._on_trailers,
    h2.events.StreamEnded: Http2Protocol._on_stream_ended,
    h2.events.StreamReset: Http2Protocol._on_reset,
    h2.events.ConnectionTerminated: Http2Protocol._on_goaway,
    h2.events.PingAckReceived: Http2Protocol._on_ping_ack,
    h2.events.WindowUpdated: Http2Protocol._on_window,
}
"""What Http2Protocol does with each kind of h2 event a client receives."""
