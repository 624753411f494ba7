"""The messages a connection tells its owner, one class per Gun message.

| Gun                                   | tether                                  |
| ------------------------------------- | --------------------------------------- |
| ``{gun_up, C, P}``                    | ``Up(conn, protocol)``                  |
| ``{gun_down, C, P, R, K, U}``         | ``Down(conn, protocol, reason, killed, unprocessed)`` |
| ``{gun_inform, C, S, Status, H}``     | ``Inform(conn, stream, status, headers)`` |
| ``{gun_response, C, S, Fin, St, H}``  | ``Response(conn, stream, fin, status, headers)`` |
| ``{gun_data, C, S, Fin, D}``          | ``Data(conn, stream, fin, data)``       |
| ``{gun_trailers, C, S, H}``           | ``Trailers(conn, stream, headers)``     |
| ``{gun_upgrade, C, S, Ps, H}``        | ``Upgrade(conn, stream, protocols, headers)`` |
| ``{gun_ws, C, S, Frame}``             | ``Ws(conn, stream, frame)``             |
| ``{gun_tunnel_up, C, S, P}``          | ``TunnelUp(conn, stream, protocol)``    |
| ``{gun_error, C, S, R}``              | ``Error(conn, stream, reason)``         |
| ``{gun_error, C, R}``                 | ``Error(conn, None, reason)``           |
| ``{gun_notify, C, ping_ack, Ref}``    | ``PingAck(conn, ref)``                  |

All are frozen, slotted dataclasses, so they are cheap, immutable (pykka
does not copy messages) and usable in ``match`` statements with keyword
patterns: ``case tether.Ws(frame=tether.Text(data=text)):``.

A stream's events end with one of: ``Response(fin=True)``,
``Data(fin=True)``, ``Trailers``, ``Upgrade`` (the stream lives on as the
Websocket), or ``Error`` for that stream; or the stream appears in a
``Down``'s ``killed_streams``/``unprocessed_streams``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias, final

from tether._frames import Frame

if TYPE_CHECKING:
    from tether.actors._handle import Connection

__all__ = [
    "Data",
    "Down",
    "Error",
    "Event",
    "Headers",
    "Inform",
    "PingAck",
    "ProtocolName",
    "Response",
    "StreamEvent",
    "StreamRef",
    "Trailers",
    "TunnelUp",
    "Up",
    "Upgrade",
    "Ws",
]

Headers: TypeAlias = tuple[tuple[str, str], ...]
"""Header pairs: names lower-case, values as sent, in wire order."""

ProtocolName: TypeAlias = Literal["http", "http2", "ws"]
"""What a connection speaks: HTTP/1.1 (or 1.0), HTTP/2, or Websocket after an HTTP/1.1 upgrade."""

_stream_ids = itertools.count(1)


@final
class StreamRef:
    """Identifies one request (or Websocket) on a connection, like Gun's ``StreamRef``.

    Issued at once by the request call, before anything reaches the wire.
    Compared by identity; hashable. Thread-safe: immutable.
    """

    __slots__ = ("__weakref__", "id")

    id: int

    def __init__(self) -> None:
        # next() on itertools.count is atomic under the GIL: ids are unique
        # across threads without a lock.
        object.__setattr__(self, "id", next(_stream_ids))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("StreamRef is immutable")

    def __repr__(self) -> str:
        return f"StreamRef({self.id})"


@dataclass(frozen=True, slots=True)
class Up:
    """The connection is up and speaks ``protocol``: ``"http"``, or ``"http2"`` (``protocols``)."""

    conn: Connection
    protocol: ProtocolName


@dataclass(frozen=True, slots=True)
class Down:
    """The connection was lost; tether will reconnect unless it is stopping.

    ``killed_streams`` were sent and not fully answered (the Websocket stream
    included); ``unprocessed_streams`` were queued and never sent, so they
    are safe to retry. ``protocol`` is what the connection spoke when lost.
    """

    conn: Connection
    protocol: ProtocolName
    reason: BaseException
    killed_streams: tuple[StreamRef, ...]
    unprocessed_streams: tuple[StreamRef, ...]


@dataclass(frozen=True, slots=True)
class Inform:
    """An informational (1xx) response other than 101."""

    conn: Connection
    stream: StreamRef
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Response:
    """The response status and headers; ``fin`` is True when there is no body."""

    conn: Connection
    stream: StreamRef
    fin: bool
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of the response body; ``fin`` is True on the last one."""

    conn: Connection
    stream: StreamRef
    fin: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class Trailers:
    """Response trailers; they end the stream (no ``Data(fin=True)`` follows)."""

    conn: Connection
    stream: StreamRef
    headers: Headers


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The Websocket upgrade succeeded; ``protocols == ("websocket",)``."""

    conn: Connection
    stream: StreamRef
    protocols: tuple[str, ...]
    headers: Headers


@dataclass(frozen=True, slots=True)
class Ws:
    """A Websocket frame from the server (messages arrive whole, never fragmented)."""

    conn: Connection
    stream: StreamRef
    frame: Frame


@dataclass(frozen=True, slots=True)
class TunnelUp:
    """The tunnel a ``conn.connect`` asked for is up (Gun's ``gun_tunnel_up``).

    ``stream`` is the CONNECT's (its ``Response(fin=True)`` came first; for
    a ``"tls"`` destination the TLS handshake inside the tunnel has
    succeeded too); ``protocol`` is what the connection now speaks through
    it (``"http"``). From now on requests go to the destination: pass
    ``tunnel=stream`` to name the tunnel they expect. Thread-safe: immutable.
    """

    conn: Connection
    stream: StreamRef
    protocol: ProtocolName


@dataclass(frozen=True, slots=True)
class Error:
    """An error for one stream, or for the whole connection when ``stream`` is None."""

    conn: Connection
    stream: StreamRef | None
    reason: BaseException


@dataclass(frozen=True, slots=True)
class PingAck:
    """The server answered the PING that ``conn.ping()`` sent (HTTP/2; Gun's ``ping_ack``).

    ``ref`` is what ``ping()`` returned.
    """

    conn: Connection
    ref: StreamRef


StreamEvent: TypeAlias = Inform | Response | Data | Trailers | Upgrade | Ws | TunnelUp | Error
"""The events that belong to a stream (``Error`` may also be connection-wide)."""

Event: TypeAlias = Up | Down | StreamEvent | PingAck
"""Every message a connection tells its owner."""
