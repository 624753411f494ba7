"""What reaches a connection actor's mailbox: user commands and I/O reports.

Every message is a frozen, slotted dataclass (pykka does not copy messages),
except the two that every Websocket round trip builds, ``WsSend`` and
``BytesIn``: slotted, not frozen (hot-path ledger: unfrozen messages).
Nothing changes them after they are built either.
I/O reports carry the connection *epoch* they belong to: bytes from a socket
that was already replaced can still be queued after a reconnect, and the
actor drops anything whose epoch is not current.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from tether._events import StreamRef
from tether._frames import Frame
from tether._options import WsOpts
from tether.actors._delivery import Delivery
from tether.actors._tunnels import Destination
from tether.protocol._validate import HeaderList

__all__ = [
    "LIFELONG",
    "BytesIn",
    "Cancel",
    "Close",
    "Closed",
    "Command",
    "ConnectCmd",
    "ConnectFailed",
    "Connected",
    "DataCmd",
    "HeadersCmd",
    "InfoQuery",
    "IoReport",
    "PingCmd",
    "RequestCmd",
    "Resolved",
    "SetOwner",
    "Shutdown",
    "StreamInfoQuery",
    "Tick",
    "Timer",
    "UpdateFlow",
    "Writable",
    "WsSend",
    "WsUpgrade",
]


# -- user commands (told by the Connection handle) ---------------------------


@dataclass(frozen=True, slots=True)
class RequestCmd:
    stream: StreamRef
    method: bytes
    target: bytes
    headers: HeaderList
    body: bytes | None
    flow: int | None = None
    #: Bytes it holds for the wire (its body): what the send buffer counts.
    size: int = 0
    #: Where the stream's events go (Gun's ``reply_to``); None: the owner.
    reply_to: Delivery | None = None
    #: The tunnel the request expects to go through (Gun's ``tunnel``); None: any.
    tunnel: StreamRef | None = None


@dataclass(frozen=True, slots=True)
class HeadersCmd:
    stream: StreamRef
    method: bytes
    target: bytes
    headers: HeaderList
    flow: int | None = None
    size: int = 0
    reply_to: Delivery | None = None
    tunnel: StreamRef | None = None


@dataclass(frozen=True, slots=True)
class DataCmd:
    stream: StreamRef
    fin: bool
    data: bytes
    size: int = 0


@dataclass(frozen=True, slots=True)
class Cancel:
    stream: StreamRef


@dataclass(frozen=True, slots=True)
class PingCmd:
    """``conn.ping()``: an HTTP/2 PING; ``stream`` is the ref of its ``PingAck`` (or ``Error``)."""

    stream: StreamRef


@dataclass(frozen=True, slots=True)
class WsUpgrade:
    stream: StreamRef
    target: bytes
    headers: HeaderList
    opts: WsOpts
    reply_to: Delivery | None = None
    tunnel: StreamRef | None = None


@dataclass(frozen=True, slots=True)
class ConnectCmd:
    """Gun's ``gun:connect``: a CONNECT to ``destination`` (through ``tunnel``, if given)."""

    stream: StreamRef
    destination: Destination
    headers: HeaderList
    reply_to: Delivery | None = None
    tunnel: StreamRef | None = None


@dataclass(slots=True)  # hot-path ledger: unfrozen messages
class WsSend:
    frames: tuple[Frame, ...]
    stream: StreamRef | None
    size: int = 0


@dataclass(frozen=True, slots=True)
class UpdateFlow:
    """Gun's ``update_flow``: ``increment`` more data messages for ``stream``."""

    stream: StreamRef
    increment: int


@dataclass(frozen=True, slots=True)
class SetOwner:
    """Gun's ``set_owner``: events from here on go to ``delivery``'s owner."""

    delivery: Delivery


@dataclass(frozen=True, slots=True)
class Close:
    """Brutal close: stop now (told first: it overtakes queued commands)."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Graceful close: let in-flight streams finish (bounded by closing_timeout; told first)."""


@dataclass(frozen=True, slots=True)
class InfoQuery:
    """Asked (not told) by ``Connection.info()``."""


@dataclass(frozen=True, slots=True)
class StreamInfoQuery:
    """Asked (not told) by ``Connection.stream_info()``."""

    stream: StreamRef


Command: TypeAlias = (
    RequestCmd
    | HeadersCmd
    | DataCmd
    | Cancel
    | UpdateFlow
    | WsUpgrade
    | ConnectCmd
    | WsSend
    | PingCmd
    | SetOwner
    | Close
    | Shutdown
)
StreamCommand: TypeAlias = (
    RequestCmd | HeadersCmd | DataCmd | Cancel | UpdateFlow | WsUpgrade | ConnectCmd
)


# -- I/O reports (told by the transport thread and the scheduler) --------------


@dataclass(frozen=True, slots=True)
class Resolved:
    """The host name's addresses are known (an IP address: itself); connecting starts.

    ``too``: the addresses of the name the transport was asked to look up
    as well (the origin's, for a ``socks5://`` proxy), if any.
    """

    epoch: int
    addresses: tuple[str, ...]
    too: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Connected:
    epoch: int


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    epoch: int
    reason: BaseException


@dataclass(slots=True)  # hot-path ledger: unfrozen messages
class BytesIn:
    epoch: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    epoch: int
    reason: BaseException | None


class Timer(enum.Enum):
    """The connection actor's timers: what a ``Tick`` says fired.

    Each kind has one handler in the actor (``ConnectionActor._TICKS``).
    Those of a connection are cancelled when it is dropped, and a late tick
    of one is stale (its epoch); :attr:`lifelong` ones run across reconnects.
    """

    CONNECT = "connect"  #: the first attempt (told at once, not timed)
    RETRY = "retry"  #: the next attempt after a failed one or a loss
    CONNECT_DEADLINE = "connect_deadline"  #: connect_timeout
    CLOSING = "closing"  #: shutdown()'s closing_timeout
    GOAWAY_DEADLINE = "goaway_deadline"  #: closing_timeout after a server's graceful GOAWAY
    OWNER_CHECK = "owner_check"  #: is the owner still there? (every state)
    HTTP_PING = "http_ping"  #: http_opts keepalive
    WS_PING = "ws_ping"  #: ws_opts keepalive
    PONG_DEADLINE = "pong_deadline"  #: ws_opts pong_timeout
    WS_FAIL = "ws_fail"  #: the close frame of a lingering Websocket failure
    SEND_DEADLINE = "send_deadline"  #: send_timeout: the oldest byte not sent
    HEAD = "head"  #: response_timeout / upgrade_timeout
    LOOKUP_DEADLINE = "lookup_deadline"  #: domain_lookup_timeout
    TLS_DEADLINE = "tls_deadline"  #: tls_handshake_timeout
    TUNNEL_TLS_DEADLINE = (
        "tunnel_tls_deadline"  #: a conn.connect destination's tls_handshake_timeout
    )

    @property
    def lifelong(self) -> bool:
        """True for the timers that belong to the actor, not to one connection."""
        return self is Timer.OWNER_CHECK


#: The epoch of a lifelong timer's ticks: always current.
LIFELONG = -1


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer fired; ``kind`` says which."""

    epoch: int
    kind: Timer


@dataclass(frozen=True, slots=True)
class OwnerClosed:
    """The owner's Inbox closed (told by the handle): look at the owner now, not at its check."""


@dataclass(frozen=True, slots=True)
class Writable:
    """The socket that did not take all that was written can take more: send the rest."""

    epoch: int


IoReport: TypeAlias = Resolved | Connected | ConnectFailed | BytesIn | Closed | Tick | Writable
