"""The life of one connection: h11 request cycles, then maybe a Websocket.

h11 does the HTTP/1.x parsing and the keep-alive bookkeeping (HTTP/1.0
clients, ``connection: close``, bodies by content-length or chunked); this
loop reads a request and its whole body, lets a route answer it, and
starts the next cycle when both sides are done. It ends when the client
closes, h11 says the connection must close, the client breaks HTTP (400,
then close), a route drops the connection, or the connection is upgraded
and the Websocket echo ends.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import h11
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType

from tether.server._client_socket import ClientSocket
from tether.server._exchange import Exchange
from tether.server._http_routes import After, dispatch
from tether.server._ws_echo import WsEcho
from tether.server._ws_handshake import WsAccept

__all__ = ["HttpConnection"]

_ReceivedEvent = h11.Request | h11.Data | h11.EndOfMessage | h11.ConnectionClosed


class HttpConnection:
    """Serves one client connection until it ends (run it on the connection's thread).

    Args:
        client: The connection's socket.
        subprotocols: The Websocket subprotocols the server accepts.
        on_request: Called with ``(method, target)`` of each request received.
    """

    def __init__(
        self,
        client: ClientSocket,
        subprotocols: Sequence[str],
        on_request: Callable[[str, str], None],
    ) -> None:
        self._client = client
        self._subprotocols = subprotocols
        self._on_request = on_request
        self._h11 = h11.Connection(h11.SERVER)

    def run(self) -> None:
        """Serve requests until the connection ends; the caller releases the socket."""
        while not self._client.aborted.is_set():
            event = self._next_event()
            if not isinstance(event, h11.Request):
                self._close()
                return
            self._on_request(event.method.decode("latin-1"), event.target.decode("latin-1"))
            body = self._read_body()
            if body is None:
                self._close()
                return
            outcome = dispatch(Exchange(self._h11, self._client, event, body), self._subprotocols)
            if isinstance(outcome, WsAccept):
                self._run_websocket(outcome)
                return
            if outcome is After.DROP:
                self._client.abort()
                return
            if (
                outcome is After.CLOSE
                or self._h11.our_state is not h11.DONE
                or self._h11.their_state is not h11.DONE
            ):
                self._close()
                return
            self._h11.start_next_cycle()

    def _next_event(self) -> _ReceivedEvent | None:
        """The next h11 event, receiving as needed; None if the connection is unusable."""
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._reject(exc)
                return None
            if event is h11.NEED_DATA:
                if self._client.aborted.is_set():
                    return None
                self._h11.receive_data(self._client.recv())
                continue
            if isinstance(event, _ReceivedEvent):
                return event
            return None  # PAUSED: we never read past a request before answering it

    def _read_body(self) -> bytes | None:
        """The whole body of the current request; None if the connection ended first."""
        if self._h11.they_are_waiting_for_100_continue:
            self._client.send(
                self._h11.send(h11.InformationalResponse(status_code=100, headers=[])) or b""
            )
        parts: list[bytes] = []
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                parts.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:
                return None

    def _reject(self, exc: h11.RemoteProtocolError) -> None:
        """Answer a request that broke HTTP with 400 (or h11's hint) when still possible."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        body = b"bad request\n"
        response = h11.Response(
            status_code=exc.error_status_hint,
            headers=[
                ("content-type", "text/plain"),
                ("content-length", str(len(body))),
                ("connection", "close"),
            ],
        )
        try:
            data = b"".join(
                self._h11.send(event) or b""
                for event in (response, h11.Data(data=body), h11.EndOfMessage())
            )
        except h11.LocalProtocolError:
            return
        self._client.send(data)

    def _close(self) -> None:
        if self._client.aborted.is_set():
            return
        self._client.close_gracefully()

    def _run_websocket(self, accept: WsAccept) -> None:
        switch = h11.InformationalResponse(
            status_code=101, headers=accept.headers, reason=b"Switching Protocols"
        )
        if not self._client.send(self._h11.send(switch) or b""):
            return
        trailing, _closed = self._h11.trailing_data
        ws = WsConnection(
            ConnectionType.SERVER, extensions=accept.extensions, trailing_data=trailing
        )
        WsEcho(self._client, ws).run()
