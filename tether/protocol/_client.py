"""One client connection, sans-I/O: HTTP/1.1 until an upgrade, then Websocket.

The contract, in the style of h11 and websockets' ``Protocol``:

- call the intent methods (:meth:`ClientProtocol.request`, ``headers``,
  ``data``, ``cancel``, ``ws_upgrade``, ``ws_send``) and feed received
  bytes to :meth:`ClientProtocol.receive_data` (``b""`` when the server
  closed the connection);
- after each call, send :meth:`ClientProtocol.data_to_send` (or, to avoid
  joining them, the pieces :meth:`ClientProtocol.chunks_to_send`) to the
  network and deliver :meth:`ClientProtocol.events` to the owner, in order
  (:meth:`ClientProtocol.drain` returns both, with the close reason, in
  one call);
- once :attr:`ClientProtocol.close_reason` is set, send what is left and
  close the TCP connection; :meth:`ClientProtocol.lost_streams` then gives
  the two stream lists of the ``Down`` event.

One instance serves one TCP connection: a reconnect gets a new one. It
never touches a socket, a thread or a clock.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from tether._errors import (
    ConnectionClosed,
    InvalidRequestError,
    NotUpgradedError,
    UnsupportedByProtocol,
    UpgradedError,
    UpgradeError,
)
from tether._events import Error, Event, ProtocolName, StreamRef, Upgrade
from tether._frames import Close, Frame
from tether._options import HttpOpts, WsOpts
from tether.protocol._engine import HeadWait
from tether.protocol._http import HttpClient, Outgoing, Switch
from tether.protocol._phases import Observer
from tether.protocol._validate import HeaderList
from tether.protocol._ws import WsClient, WsHandshake

__all__ = ["ClientProtocol", "HeadWait", "Tunnel", "connect_headers"]


@dataclass(frozen=True, slots=True)
class Tunnel:
    """A CONNECT that succeeded: this connection now carries bytes to its destination.

    ``stream`` is the CONNECT's; ``leftover`` the bytes that followed its 2xx
    answer in the same read (already the destination's: the driver gives
    them to whatever speaks to it next).
    """

    stream: StreamRef
    leftover: bytes


def _has(headers: HeaderList, name: bytes) -> bool:
    return any(n == name for n, _ in headers)


def connect_headers(
    authority: bytes,
    headers: HeaderList,
    username: str | None = None,
    password: str | None = None,
) -> HeaderList:
    """The headers of a ``CONNECT authority`` request, as Gun builds them.

    ``content-length`` and ``transfer-encoding`` are dropped (a CONNECT
    has no body: RFC 9110 9.3.6); ``host`` is the authority unless given;
    ``proxy-authorization: Basic`` is added from ``username`` and
    ``password`` (both given) unless the headers have one.
    """
    out = [(n, v) for n, v in headers if n not in (b"content-length", b"transfer-encoding")]
    if not _has(out, b"host"):
        out.insert(0, (b"host", authority))
    if username is not None and password is not None and not _has(out, b"proxy-authorization"):
        token = base64.b64encode(f"{username}:{password}".encode())
        out.append((b"proxy-authorization", b"Basic " + token))
    return out


class ClientProtocol:
    """A client connection state machine; see the module docstring for the contract.

    Args:
        conn: the object events carry as ``conn`` (the user's handle);
            the protocol never looks at it.
        authority: the ``host`` header value (``host[:port]``).
        http_opts: HTTP options.
        ws_opts: default Websocket options for upgrades.
        observe: called as ``observe(name, data)`` at each moment only the
            protocol sees (a request written, a response head read, a frame
            sent or received: ``tether.protocol._phases``), synchronously,
            within the call that reaches it; None (the default): not told.

    Not thread-safe: one thread (the connection actor) drives it.
    """

    #: Never: HTTP/1.1 has no GOAWAY (``Http2Protocol.draining``).
    draining = False

    def __init__(
        self,
        conn: Any,
        *,
        authority: str,
        http_opts: HttpOpts,
        ws_opts: WsOpts,
        observe: Observer | None = None,
    ) -> None:
        self._conn = conn
        self._observe = observe
        self._authority = (
            authority.encode("idna") if not authority.isascii() else authority.encode()
        )
        self._http_opts = http_opts
        self._ws_opts = ws_opts
        self._events: list[Event] = []
        # What to send, as the pieces it was produced in: a 1 MiB message is a
        # header and a masked payload, which the transport writes with one
        # sendmsg rather than copying them into one buffer.
        self._out: list[bytes | bytearray] = []
        self._http = HttpClient(
            conn, http_opts, self._events.append, self._out.append, observe=observe
        )
        self._ws: WsClient | None = None
        #: Set once a CONNECT succeeded: this protocol is done, the tunnel
        #: carries the bytes. From then on the driver speaks to the destination
        #: (a new ``ClientProtocol``, after a TLS handshake for a TLS one) and
        #: feeds this one nothing more; it has no stream left. (An attribute:
        #: the driver looks at it after every read.)
        self.tunnel: Tunnel | None = None

    # -- state -------------------------------------------------------------

    @property
    def protocol(self) -> ProtocolName:
        """``"http"``, or ``"ws"`` once upgraded."""
        return "http" if self._ws is None else "ws"

    @property
    def ws_stream(self) -> StreamRef | None:
        """The Websocket's stream, once upgraded."""
        return None if self._ws is None else self._ws.stream

    @property
    def keepalive_ws(self) -> WsClient | None:
        """The Websocket that keepalive pings: the connection's, once upgraded."""
        return self._ws

    @property
    def ws(self) -> WsClient | None:
        """The Websocket frame layer once upgraded (its options, pong count, state)."""
        return self._ws

    @property
    def close_reason(self) -> BaseException | None:
        """Why the TCP connection must now be closed, or None while it goes on."""
        if self._ws is not None:
            return self._ws.close_reason
        return self._http.close_reason

    @property
    def busy(self) -> bool:
        """True while an HTTP request is queued or waiting for its response (not once a tunnel)."""
        return self._http.busy and self.tunnel is None

    @property
    def flow_paused(self) -> bool:
        """True while the stream being received has spent its flow credit: stop reading.

        Gun's flow control (``flow`` options, :meth:`update_flow`); always
        False for streams without it.
        """
        ws = self._ws
        return self._http.flow_paused if ws is None else ws.flow_paused

    def take_unsent(self) -> list[StreamRef]:
        """Remove the requests queued behind the one in progress (never sent); their streams."""
        return [request.stream for request in self._http.take_queue()]

    @property
    def held_size(self) -> int:
        """Bytes of request bodies held, queued behind an earlier request (not yet written)."""
        return self._http.held_size

    @property
    def head_wait(self) -> HeadWait | None:
        """The stream on the wire waiting for its response head, if a timeout bounds the wait.

        ``http_opts`` ``response_timeout`` for a request, the upgrade's
        ``ws_opts`` ``upgrade_timeout`` for an upgrade (its ``101`` or a
        refusal's head). The driver times it (the protocol has no clock)
        and calls :meth:`head_timed_out` if it is still waiting then.
        """
        if self._ws is not None:
            return None
        request = self._http.waiting_for_head
        if request is None:
            return None
        if request.handshake is not None:
            timeout = request.handshake.opts.upgrade_timeout
        else:
            timeout = self._http_opts.response_timeout
        return (
            None
            if timeout is None
            else HeadWait(request.stream, timeout, request.handshake is not None)
        )

    def head_timed_out(self, stream: StreamRef, error: Exception) -> None:
        """``stream`` waited too long for its head: ``Error`` for it, and the connection closes.

        Nothing if ``stream`` is no longer the one waiting.
        """
        if self._ws is None:
            request = self._http.waiting_for_head
            if request is not None and request.stream is stream:
                self._http.fail_stream(request, error)

    def stream_state(self, stream: StreamRef) -> Literal["running", "stopping"] | None:
        """Gun's ``stream_info`` state of ``stream``: None if unknown or ended.

        The Websocket's stream is ``"running"`` until its close handshake
        begins (``"stopping"``).
        """
        ws = self._ws
        if ws is None:
            return self._http.stream_state(stream)
        if stream is not ws.stream or ws.close_reason is not None:
            return None
        return "stopping" if ws.closing else "running"

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Gun's ``update_flow``: ``increment`` more flow credit for ``stream``.

        Nothing for an unknown or ended stream, or one without flow control.
        """
        ws = self._ws
        if ws is None:
            self._http.update_flow(stream, increment)
        elif stream is ws.stream:
            ws.update_flow(increment)

    def events(self) -> list[Event]:
        """Remove and return the events produced so far, oldest first."""
        events = self._events[:]
        self._events.clear()
        return events

    def data_to_send(self) -> bytes:
        """Remove and return the bytes to write to the socket, joined."""
        data = b"".join(self._out)  # a single bytes piece is returned as it is, not copied
        self._out.clear()
        return data

    def chunks_to_send(self) -> list[bytes | bytearray]:
        """Remove and return the bytes to write to the socket, as pieces to write in order.

        The same bytes as :meth:`data_to_send`, without joining them: an
        empty list when there is nothing to send.
        """
        chunks = self._out[:]
        self._out.clear()
        return chunks

    def drain(
        self,
    ) -> tuple[list[bytes | bytearray], list[Event], BaseException | None, WsClient | None]:
        """Everything a driver looks at after each call, in one call.

        Returns ``(chunks, events, close_reason, failing)``: what
        :meth:`chunks_to_send` and :meth:`events` would return (both
        removed), :attr:`close_reason`, and the Websocket layer if a
        failure of it lingers (``WsClient.failing``), else None. The
        connection actor calls this after every message it handles
        (hot-path ledger: ``drain()``).
        """
        # Usually one of the two is empty (a send writes, a read emits): no copy then.
        out, pending = self._out, self._events
        chunks: list[bytes | bytearray] = []
        if out:
            chunks = out[:]
            out.clear()
        events: list[Event] = []
        if pending:
            events = pending[:]
            pending.clear()
        ws = self._ws
        if ws is None:
            return chunks, events, self._http.close_reason, None
        return chunks, events, ws.close_reason, ws if ws.failing else None

    def lost_streams(self) -> tuple[tuple[StreamRef, ...], tuple[StreamRef, ...]]:
        """``(killed, unprocessed)`` for the ``Down`` of this connection."""
        killed, unprocessed = self._http.lost_streams()
        if self._ws is not None:
            killed = [self._ws.stream]
        return tuple(killed), tuple(unprocessed)

    # -- intents -----------------------------------------------------------

    def _base_headers(self, headers: HeaderList) -> HeaderList:
        if _has(headers, b"host"):
            return list(headers)
        return [(b"host", self._authority), *headers]

    def _refuse_if_upgraded(self, stream: StreamRef) -> bool:
        if self._ws is None:
            return False
        self._events.append(
            Error(
                self._conn,
                stream,
                UpgradedError(
                    "the connection was upgraded to Websocket before this request was sent"
                ),
            )
        )
        return True

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
        """Queue a request with its whole body (``None``: no body at all).

        ``flow``: its flow credit (``None``: ``http_opts`` flow).
        """
        if self._refuse_if_upgraded(stream):
            return
        all_headers = self._base_headers(headers)
        if body is not None and not (
            _has(headers, b"content-length") or _has(headers, b"transfer-encoding")
        ):
            all_headers.append((b"content-length", str(len(body)).encode()))
        self._http.submit(
            Outgoing(
                stream,
                method,
                target,
                all_headers,
                [body] if body else [],
                fin=True,
                flow=self._flow(flow),
            )
        )

    def headers(
        self,
        stream: StreamRef,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        *,
        flow: int | None = None,
    ) -> None:
        """Queue a request whose body follows through :meth:`data` (``flow``: see ``request``)."""
        if self._refuse_if_upgraded(stream):
            return
        all_headers = self._base_headers(headers)
        if not (_has(headers, b"content-length") or _has(headers, b"transfer-encoding")):
            if self._http_opts.version != "HTTP/1.1":
                self._events.append(
                    Error(
                        self._conn,
                        stream,
                        InvalidRequestError(
                            "a streamed body on HTTP/1.0 needs a content-length header "
                            "(HTTP/1.0 has no chunked encoding)"
                        ),
                    )
                )
                return
            all_headers.append((b"transfer-encoding", b"chunked"))
        self._http.submit(
            Outgoing(
                stream,
                method,
                target,
                all_headers,
                fin=False,
                flow=self._flow(flow),
                function="headers",
            )
        )

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """Send a piece of a streamed request body; ``fin`` marks the last one."""
        if self._refuse_if_upgraded(stream):
            return
        self._http.data(stream, fin, data)

    def cancel(self, stream: StreamRef) -> None:
        """Stop the stream: a queued request is dropped, a running one goes silent."""
        if self._ws is None:
            self._http.cancel(stream)

    def ws_upgrade(
        self, stream: StreamRef, target: bytes, headers: HeaderList, opts: WsOpts | None = None
    ) -> None:
        """Queue a Websocket upgrade request (a GET with the handshake headers)."""
        if self._refuse_if_upgraded(stream):
            return
        if self._http_opts.version != "HTTP/1.1":
            self._events.append(
                Error(
                    self._conn,
                    stream,
                    UpgradeError("Websocket needs HTTP/1.1; this connection uses HTTP/1.0"),
                )
            )
            return
        handshake = WsHandshake(headers, opts or self._ws_opts)
        all_headers = self._base_headers(handshake.request_headers())
        # Gun: ws_opts flow (never http_opts flow) counts for the upgrade
        # request and, after the 101, for the Websocket.
        self._http.submit(
            Outgoing(
                stream,
                b"GET",
                target,
                all_headers,
                fin=True,
                handshake=handshake,
                flow=handshake.opts.flow,
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
        """Send ``CONNECT authority`` (Gun's ``gun:connect``); True if it was sent.

        ``authority`` is ``host:port``. A 2xx answer is a ``Response(fin=True)``
        and then :attr:`tunnel` is set; any other answer is an ordinary
        response (with its body) and the connection goes on. As in Gun, a
        CONNECT needs an idle HTTP/1.1 connection: with another request
        queued or in progress (or after an upgrade) it is refused with an
        ``Error`` (False).
        """
        if self._refuse_if_upgraded(stream):
            return False
        if self._http.busy or self.tunnel is not None:
            self._events.append(
                Error(
                    self._conn,
                    stream,
                    InvalidRequestError(
                        "CONNECT can only be used with HTTP/1.1 when no other streams are "
                        "active (as in Gun)"
                    ),
                )
            )
            return False
        raw = authority.encode("idna") if not authority.isascii() else authority.encode()
        self._http.submit(
            Outgoing(
                stream,
                b"CONNECT",
                raw,
                connect_headers(raw, headers, username, password),
                fin=True,
                flow=self._flow(flow),
                function="connect",
            )
        )
        return True

    def stop_draining(self) -> None:
        """Nothing to give up on HTTP/1.1."""

    def http_keepalive(self) -> bool:
        """Send Gun's HTTP keepalive, an empty line, if the connection is idle.

        HTTP has no ping; RFC 9112 2.2 lets a server ignore empty lines before
        a request, which keeps NATs and idle timers from dropping the
        connection. Some servers (h11-based ones) reject it instead, which is
        why Gun and tether leave ``http_opts`` keepalive off by default.
        Returns True if the line was queued.
        """
        if (
            self._ws is not None
            or self.tunnel is not None
            or self._http.busy
            or self.close_reason is not None
        ):
            return False
        self._out.append(b"\r\n")
        return True

    def close_websockets(self, code: int) -> bool:
        """Begin the close handshake of the Websocket (``code``), unless it has begun."""
        ws = self._ws
        if ws is None or ws.closing:
            return False
        ws.send((Close(code),))
        return True

    def closing_timeout(self, http: float) -> float:
        """The Websocket's ``closing_timeout`` once upgraded, else ``http`` (ProtocolEngine)."""
        ws = self._ws
        return http if ws is None else ws.opts.closing_timeout

    def ping(self, ref: StreamRef) -> None:
        """Gun's ``ping``: HTTP/1.1 and Websocket have none for it: ``Error(conn, ref, ...)``."""
        self._events.append(
            Error(
                self._conn,
                ref,
                UnsupportedByProtocol(
                    f"ping needs HTTP/2; this connection speaks {self.protocol} "
                    "(Gun: ping_unsupported_by_protocol)"
                ),
            )
        )

    def ws_send(self, frames: tuple[Frame, ...], stream: StreamRef | None = None) -> None:
        """Send frames on the Websocket (``stream``, if given, must be its stream)."""
        ws = self._ws
        if ws is None or (stream is not None and stream is not ws.stream):
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

    # -- bytes in ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the socket; ``b""`` when the server closed it."""
        ws = self._ws
        if ws is not None:
            ws.receive_data(data)  # which reads nothing more once its close_reason is set
            return
        if self._http.close_reason is not None or self.tunnel is not None:
            return  # the connection is over (or a tunnel's): nothing more is read here
        self._http.receive_data(data)
        switch = self._http.switch
        if switch is None:
            return
        request = switch.request
        if request.handshake is None:
            self._open_tunnel(switch)
            return
        try:
            extensions = request.handshake.accept(switch.headers)
        except UpgradeError as exc:
            # h11 has switched protocols already: there is no going back to
            # HTTP on this connection, so it must be closed.
            self._events.append(Error(self._conn, request.stream, exc))
            self._http.close_reason = exc
            return
        self._ws = WsClient(
            self._conn,
            request.stream,
            request.handshake.opts,
            extensions=extensions,
            trailing_data=switch.trailing_data,
            emit=self._events.append,
            write=self._out.append,
            flow=request.flow,
            observe=self._observe,
        )
        if self._observe is not None:
            self._observe("protocol_changed", {"stream": request.stream, "protocol": "ws"})
        self._events.append(Upgrade(self._conn, request.stream, ("websocket",), switch.headers))
        for raced in self._http.take_queue():
            self._refuse_if_upgraded(raced.stream)
        self._ws.start()

    def _open_tunnel(self, switch: Switch) -> None:
        """A CONNECT's 2xx: the requests queued behind it can never go out on this protocol."""
        self.tunnel = Tunnel(switch.request.stream, switch.trailing_data)
        for raced in self._http.take_queue():
            self._events.append(
                Error(
                    self._conn,
                    raced.stream,
                    ConnectionClosed(
                        "not sent: the connection became a tunnel (CONNECT) before this "
                        "request went out; send it again through the tunnel"
                    ),
                )
            )
