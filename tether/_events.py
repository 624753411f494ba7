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

All are frozen, slotted dataclasses, so they are cheap, immutable (pykka
does not copy messages) and usable in ``match`` statements with keyword
patterns: ``case tether.Ws(frame=tether.Text(data=text)):``.

Events pickle (for an owner in another process): ``conn`` becomes the
connection's wire stand-in (a [`ConnectionRef`][tether.ConnectionRef]
unless a fleet set its own, see ``tether._wire``), a ``StreamRef`` keeps
its identity, errors and frames are values; a copy compares equal to
the event (``Down`` and ``Error`` compare their ``reason`` as a value).

A stream's events end with one of: ``Response(fin=True)``,
``Data(fin=True)``, ``Trailers``, ``Upgrade`` (the stream lives on as the
Websocket), or ``Error`` for that stream; or the stream appears in a
``Down``'s ``killed_streams``/``unprocessed_streams``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, final

from tether._errors import error_key, same_error
from tether._frames import Frame
from tether._wire import intern, process_origin

if TYPE_CHECKING:
    from tether.actors._handle import Connection

__all__ = [
    "Data",
    "Down",
    "Error",
    "Event",
    "Headers",
    "Inform",
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

ProtocolName: TypeAlias = Literal["http", "ws"]

_stream_ids = itertools.count(1)


@final
class StreamRef:
    """Identifies one request (or Websocket) on a connection, like Gun's ``StreamRef``.

    Issued at once by the request call, before anything reaches the wire.
    Compared by identity; hashable. Survives ``pickle`` with its identity:
    a copy unpickled where the original (or another copy) is alive *is*
    that object, so it compares equal, in this process or another
    (``tether._wire``). Thread-safe: immutable.
    """

    # _origin: set on copies from another process only (see __reduce__).
    __slots__ = ("__weakref__", "_origin", "id")

    id: int

    def __init__(self) -> None:
        # next() on itertools.count is atomic under the GIL: ids are unique
        # across threads without a lock.
        object.__setattr__(self, "id", next(_stream_ids))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("StreamRef is immutable")

    def __repr__(self) -> str:
        return f"StreamRef({self.id})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A StreamRef made here has no _origin (nothing is spent on identity
        # when one is made, per request): it is this process's, and enters
        # the intern table now, so that its copies come back as itself.
        origin = getattr(self, "_origin", None)
        if origin is None:
            origin = process_origin()
            intern("stream", origin, self.id, lambda: self)
        return (_unpickle_stream, (origin, self.id))


def _unpickle_stream(origin: int, number: int) -> StreamRef:
    """The live ``StreamRef`` with that identity, or a new one that has it."""

    def make() -> StreamRef:
        stream = object.__new__(StreamRef)
        object.__setattr__(stream, "id", number)
        object.__setattr__(stream, "_origin", origin)
        return stream

    found: StreamRef = intern("stream", origin, number, make)
    return found


def _value_eq(self: Any, other: Any) -> bool:
    """``==`` of an event that carries an error: the error compared as a value."""
    if other.__class__ is not self.__class__:
        return NotImplemented  # type: ignore[no-any-return]
    return all(same_error(getattr(self, f), getattr(other, f)) for f in self.__slots__)


def _value_hash(self: Any) -> int:
    return hash(
        tuple(
            error_key(v) if isinstance(v, BaseException) else v
            for v in (getattr(self, f) for f in self.__slots__)
        )
    )


@dataclass(frozen=True, slots=True)
class Up:
    """The connection is up and speaks ``protocol`` (always ``"http"`` after a connect)."""

    conn: Connection
    protocol: ProtocolName


@dataclass(frozen=True, slots=True, eq=False)
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

    # The reason compares as a value (an OSError has no == of its own), so
    # that a pickled copy compares equal.
    __eq__ = _value_eq
    __hash__ = _value_hash


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


@dataclass(frozen=True, slots=True, eq=False)
class Error:
    """An error for one stream, or for the whole connection when ``stream`` is None."""

    conn: Connection
    stream: StreamRef | None
    reason: BaseException

    __eq__ = _value_eq  # as Down's
    __hash__ = _value_hash


StreamEvent: TypeAlias = Inform | Response | Data | Trailers | Upgrade | Ws | TunnelUp | Error
"""The events that belong to a stream (``Error`` may also be connection-wide)."""

Event: TypeAlias = Up | Down | StreamEvent
"""Every message a connection tells its owner."""
