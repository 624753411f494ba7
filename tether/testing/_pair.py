"""An in-memory client/server pair for testing the sans-I/O protocol layer.

:class:`ProtocolPair` drives a :class:`tether.protocol.ClientProtocol`
against a server made of an ``h11.Connection(h11.SERVER)`` and, once an
upgrade is accepted, a frame-level ``wsproto`` server connection. Bytes move
only when a test asks for it, so the test decides exactly what arrives in
which read:

- ``client_to_server()`` / ``ws_client_to_server()`` move what the client
  wrote into the server and return what the server parsed;
- ``server_send()`` / ``ws_server_send()`` / ``server_send_bytes()`` feed
  the client, optionally in pieces, and ``server_close()`` feeds EOF;
- ``events()`` returns what the owner would receive.

No socket, thread or clock is involved: the same inputs give the same
events, which is what makes split-anywhere property tests possible.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import h11
import wsproto.events as wse
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.extensions import Extension
from wsproto.handshake import server_extensions_handshake
from wsproto.utilities import generate_accept_token, split_comma_header

from tether._events import Error, Event, StreamRef
from tether._options import HttpOpts, WsOpts
from tether.protocol import ClientProtocol

__all__ = ["ProtocolPair", "split_at"]


class _Conn:
    def __repr__(self) -> str:
        return "<ProtocolPair conn>"


#: The ``conn`` the pair's events carry unless another one is given.
CONN: Any = _Conn()


def split_at(raw: bytes, positions: Iterable[int]) -> list[bytes]:
    """Cut ``raw`` at the given offsets (sorted, duplicates and ends ignored)."""
    if not raw:
        return []  # an empty read would mean EOF to the client
    cuts = sorted({p for p in positions if 0 < p < len(raw)})
    bounds = [0, *cuts, len(raw)]
    return [raw[a:b] for a, b in itertools.pairwise(bounds)]


def _header(request: h11.Request, name: bytes) -> bytes | None:
    return next((v for n, v in request.headers if n == name), None)


class ProtocolPair:
    """A :class:`ClientProtocol` wired to an in-memory h11 (then wsproto) server.

    Args:
        http_opts: the client's HTTP options (default ``HttpOpts()``).
        ws_opts: the client's default Websocket options (default ``WsOpts()``).
        authority: the client's ``host`` header value.
        conn: the object events carry as ``conn`` (default: a sentinel).
        observe: the client's ``observe`` (its event handler phases; default: none).

    Attributes:
        client: the protocol under test.
        server: the server's h11 connection.
        ws_server: the server's wsproto connection, once an upgrade was accepted.
        wire: the raw bytes the last ``client_to_server``/``ws_client_to_server``
            moved (what the client put on the wire).
        requests: every ``h11.Request`` the server has received, in order.
    """

    def __init__(
        self,
        *,
        http_opts: HttpOpts | None = None,
        ws_opts: WsOpts | None = None,
        authority: str = "example.test",
        conn: Any = CONN,
        observe: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.conn = conn
        self.client = ClientProtocol(
            conn,
            authority=authority,
            http_opts=http_opts or HttpOpts(),
            ws_opts=ws_opts or WsOpts(),
            observe=observe,
        )
        self.server = h11.Connection(h11.SERVER)
        self.ws_server: WsConnection | None = None
        self.wire = b""
        self.requests: list[h11.Request] = []

    # -- client intents ------------------------------------------------------

    def request(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes | None = None,
    ) -> StreamRef:
        """Call ``client.request`` with a new stream and return that stream."""
        stream = StreamRef()
        self.client.request(stream, method, target, list(headers), body)
        return stream

    def ws_upgrade(
        self,
        target: bytes = b"/ws",
        headers: Sequence[tuple[bytes, bytes]] = (),
        opts: WsOpts | None = None,
    ) -> StreamRef:
        """Call ``client.ws_upgrade`` with a new stream and return that stream."""
        stream = StreamRef()
        self.client.ws_upgrade(stream, target, list(headers), opts)
        return stream

    def events(self) -> list[Event]:
        """The events the owner would receive now (removed from the client)."""
        return self.client.events()

    def single_error(self, stream: StreamRef | None) -> BaseException:
        """Take the events; check they are one ``Error`` for ``stream``; return its reason."""
        events = self.client.events()
        match events:
            case [Error(conn=conn, stream=got, reason=reason)] if (
                conn is self.conn and got is stream
            ):
                return reason
        raise AssertionError(f"expected one Error for {stream!r}, got {events!r}")

    # -- HTTP ------------------------------------------------------------------

    def client_to_server(self) -> list[Any]:
        """Move the client's pending bytes into the h11 server; return its events.

        Events the server has buffered from earlier bytes (a request queued
        behind a finished cycle) are returned too.
        """
        self.wire = self.client.data_to_send()
        if self.wire:
            self.server.receive_data(self.wire)
        events: list[Any] = []
        while True:
            event = self.server.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return events
            if isinstance(event, h11.Request):
                self.requests.append(event)
            events.append(event)
            if isinstance(event, h11.ConnectionClosed):
                return events

    def server_bytes(self, *events: Any) -> bytes:
        """Serialize h11 events with the server (starting its next cycle when due)."""
        raw = b"".join(self.server.send(event) or b"" for event in events)
        if self.server.our_state is h11.DONE and self.server.their_state is h11.DONE:
            self.server.start_next_cycle()
        return raw

    def server_send(self, *events: Any, split: Iterable[int] = ()) -> None:
        """Serialize h11 events and feed them to the client in one read (or cut at ``split``)."""
        self.server_send_bytes(self.server_bytes(*events), split=split)

    def server_send_bytes(self, raw: bytes, split: Iterable[int] | None = None) -> None:
        """Feed raw bytes to the client: in one read, or cut at the ``split`` offsets."""
        for piece in split_at(raw, split or ()):
            self.client.receive_data(piece)

    def server_close(self) -> None:
        """The server closes the TCP connection: feed EOF to the client."""
        self.client.receive_data(b"")

    def respond(
        self, status: int = 200, body: bytes = b"", headers: Sequence[tuple[bytes, bytes]] = ()
    ) -> bytes:
        """A whole content-length response from the h11 server, as bytes (not yet sent)."""
        all_headers = [(b"content-length", str(len(body)).encode()), *headers]
        events: list[Any] = [h11.Response(status_code=status, headers=all_headers)]
        if body:
            events.append(h11.Data(data=body))
        return self.server_bytes(*events, h11.EndOfMessage())

    # -- Websocket ---------------------------------------------------------------

    def upgrade_response(
        self,
        *,
        subprotocol: str | None = None,
        extensions: Sequence[Extension] = (),
        accept: bytes | None = None,
        extra_headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> bytes:
        """Accept the last upgrade request: return the 101's bytes (not yet sent).

        The accept token is computed from the request's ``sec-websocket-key``
        unless ``accept`` overrides it; ``extensions`` are the server's
        supported ones, negotiated against the client's offer. The wsproto
        server starts with whatever the client sent after its request.
        """
        request = self.requests[-1]
        key = _header(request, b"sec-websocket-key")
        if key is None:
            raise AssertionError("the last request is not a Websocket upgrade")
        headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", accept or generate_accept_token(key)),
        ]
        if subprotocol is not None:
            headers.append((b"sec-websocket-protocol", subprotocol.encode()))
        offers = [
            o
            for n, v in request.headers
            if n == b"sec-websocket-extensions"
            for o in split_comma_header(v)
        ]
        supported = list(extensions)
        accepted = server_extensions_handshake(offers, supported)
        if accepted is not None:
            headers.append((b"sec-websocket-extensions", accepted))
        headers.extend(extra_headers)
        raw = self.server.send(h11.InformationalResponse(status_code=101, headers=headers))
        assert raw is not None  # h11 returns bytes for every event but ConnectionClosed
        names = {o.split(";", 1)[0].strip() for o in split_comma_header(accepted or b"")}
        agreed = [e for e in supported if e.name in names]
        self.ws_server = WsConnection(
            ConnectionType.SERVER, agreed, bytes(self.server.trailing_data[0])
        )
        return raw

    def accept_upgrade(
        self,
        *,
        subprotocol: str | None = None,
        extensions: Sequence[Extension] = (),
        then: Sequence[wse.Event] = (),
    ) -> None:
        """Send a valid 101 and, in the same read, the ``then`` frames."""
        raw = self.upgrade_response(subprotocol=subprotocol, extensions=extensions)
        self.server_send_bytes(raw + self.ws_server_bytes(*then))

    def upgrade(
        self,
        target: bytes = b"/ws",
        headers: Sequence[tuple[bytes, bytes]] = (),
        opts: WsOpts | None = None,
        *,
        extensions: Sequence[Extension] = (),
    ) -> StreamRef:
        """Run a whole successful upgrade; the ``Upgrade`` event is left in ``events()``."""
        stream = self.ws_upgrade(target, headers, opts)
        self.client_to_server()
        self.accept_upgrade(extensions=extensions)
        return stream

    def _ws(self) -> WsConnection:
        if self.ws_server is None:
            raise AssertionError("no upgrade was accepted: there is no Websocket server")
        return self.ws_server

    def ws_server_bytes(self, *events: wse.Event) -> bytes:
        """Serialize wsproto events with the server (unmasked frames)."""
        if not events:
            return b""
        ws = self._ws()
        return b"".join(ws.send(event) for event in events)

    def ws_server_send(self, *events: wse.Event, split: Iterable[int] = ()) -> None:
        """Serialize wsproto events and feed them to the client in one read."""
        self.server_send_bytes(self.ws_server_bytes(*events), split=split)

    def ws_client_to_server(self) -> list[wse.Event]:
        """Move the client's pending bytes into the wsproto server; return its events."""
        ws = self._ws()
        self.wire = self.client.data_to_send()
        if self.wire:
            ws.receive_data(self.wire)
        return list(ws.events())
