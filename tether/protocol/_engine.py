"""The seam between the connection actor and a protocol engine (HTTP/1.1 or HTTP/2).

The actor drives one engine per connection, chosen when the connection
is up (ALPN, or ``protocols`` over TCP): :class:`~tether.protocol.ClientProtocol`
(HTTP/1.1 over h11, then Websocket) or
:class:`~tether.protocol._h2.Http2Protocol` (HTTP/2 over h2). Both are
:class:`ProtocolEngine`: the same intents, the same ``drain`` after each
call, the same events. The actor holds the engine under this type and
never asks which one it is, so the HTTP/1.1 path does exactly the calls it
did before HTTP/2 existed (no dispatch layer in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from tether._events import Event, ProtocolName, StreamRef
from tether._frames import Frame
from tether._options import WsOpts
from tether.protocol._validate import HeaderList
from tether.protocol._ws import WsClient

if TYPE_CHECKING:
    from tether.protocol._client import Tunnel

__all__ = ["HeadWait", "ProtocolEngine"]


@dataclass(frozen=True, slots=True)
class HeadWait:
    """A stream waiting for its response head, and how long it may (see ``head_wait``)."""

    stream: StreamRef
    timeout: float
    upgrade: bool


class ProtocolEngine(Protocol):
    """What the connection actor calls on a protocol engine; see ``ClientProtocol``'s docs.

    Not thread-safe: one thread (the connection actor's turn) drives an engine.
    """

    @property
    def close_reason(self) -> BaseException | None:
        """Why the connection must now be closed, or None while it goes on."""

    @property
    def protocol(self) -> ProtocolName:
        """What the connection speaks now: ``"http"``, ``"http2"`` or ``"ws"``."""

    @property
    def ws(self) -> WsClient | None:
        """The Websocket that is the whole connection (HTTP/1.1 upgraded), else None."""

    @property
    def ws_stream(self) -> StreamRef | None:
        """That Websocket's stream."""

    @property
    def keepalive_ws(self) -> WsClient | None:
        """The Websocket that ``ws_opts`` keepalive pings, if any.

        The connection's (HTTP/1.1), or the last one upgraded on HTTP/2: its
        pongs prove the whole connection alive.
        """

    @property
    def tunnel(self) -> Tunnel | None:
        """Set once a CONNECT through this connection succeeded (HTTP/1.1 only)."""

    @property
    def busy(self) -> bool:
        """True while a request is queued or unanswered."""

    @property
    def flow_paused(self) -> bool:
        """True while reading the connection must stop for a stream's flow credit."""

    @property
    def held_size(self) -> int:
        """Bytes of bodies held by the engine, not yet written."""

    @property
    def head_wait(self) -> HeadWait | None:
        """The stream whose response head a timeout bounds now, if any."""

    def head_timed_out(self, stream: StreamRef, error: Exception) -> None:
        """``stream``'s head is late: ``Error`` for it."""

    def stream_state(self, stream: StreamRef) -> Literal["running", "stopping"] | None:
        """Gun's ``stream_info`` state."""

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Gun's ``update_flow``."""

    def take_unsent(self) -> list[StreamRef]:
        """Remove the requests never sent; their streams."""

    def drain(
        self,
    ) -> tuple[list[bytes | bytearray], list[Event], BaseException | None, WsClient | None]:
        """``(chunks, events, close_reason, failing Websocket)``, after every call."""

    def lost_streams(self) -> tuple[tuple[StreamRef, ...], tuple[StreamRef, ...]]:
        """``(killed, unprocessed)`` for the ``Down``."""

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
        """A request with its whole body."""

    def headers(
        self,
        stream: StreamRef,
        method: bytes,
        target: bytes,
        headers: HeaderList,
        *,
        flow: int | None = None,
    ) -> None:
        """A request whose body follows."""

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """A piece of a streamed body."""

    def cancel(self, stream: StreamRef) -> None:
        """Stop a stream."""

    def ws_upgrade(
        self, stream: StreamRef, target: bytes, headers: HeaderList, opts: WsOpts | None = None
    ) -> None:
        """A Websocket upgrade (HTTP/1.1) or extended CONNECT (HTTP/2)."""

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
        """Gun's ``gun:connect``: a CONNECT to ``authority``; True if it was sent."""

    def ws_send(self, frames: tuple[Frame, ...], stream: StreamRef | None = None) -> None:
        """Frames for a Websocket."""

    def close_websockets(self, code: int) -> bool:
        """Send a close frame with ``code`` on every Websocket not closing yet (shutdown).

        True if it sent one (a Websocket upgraded since the last call, too).
        """

    def closing_timeout(self, http: float) -> float:
        """How long a shutdown may wait for what is open to finish.

        ``http`` (``http_opts``') bounds requests, a Websocket's own
        ``closing_timeout`` (its ``ws_opts``) its close handshake: the
        longest of those of the streams open.
        """

    def ping(self, ref: StreamRef) -> None:
        """Gun's ``ping``: ``PingAck(ref)`` once answered, or ``Error(ref)`` if unsupported."""

    def http_keepalive(self) -> bool:
        """The protocol's keepalive, if the connection is idle; True if sent."""

    #: A graceful GOAWAY came while streams below its last id ran (HTTP/2 only).
    draining: bool

    def stop_draining(self) -> None:
        """Give up waiting for those streams: the connection ends, they are killed."""

    def receive_data(self, data: bytes) -> None:
        """Bytes read from the socket (``b""``: the server closed it)."""
