"""What reaches a connection actor's mailbox: user commands and I/O reports.

Every message is a frozen, slotted dataclass (pykka does not copy messages),
except the two that every Websocket round trip builds, ``WsSend`` and
``BytesIn``: slotted, not frozen, because a frozen dataclass's ``__init__``
sets each field through ``object.__setattr__`` and costs 2.5x as much
(``docs/performance.md``). Nothing changes them after they are built either.
I/O reports carry the connection *epoch* they belong to: bytes from a socket
that was already replaced can still be queued after a reconnect, and the
actor drops anything whose epoch is not current.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from tether._events import StreamRef
from tether._frames import Frame
from tether._options import WsOpts
from tether.protocol._validate import HeaderList

__all__ = [
    "BytesIn",
    "Cancel",
    "Close",
    "Closed",
    "Command",
    "ConnectFailed",
    "Connected",
    "DataCmd",
    "HeadersCmd",
    "InfoQuery",
    "IoReport",
    "RequestCmd",
    "Shutdown",
    "Tick",
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


@dataclass(frozen=True, slots=True)
class HeadersCmd:
    stream: StreamRef
    method: bytes
    target: bytes
    headers: HeaderList
    flow: int | None = None


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
class WsUpgrade:
    stream: StreamRef
    target: bytes
    headers: HeaderList
    opts: WsOpts


@dataclass(slots=True)  # not frozen: see the module's docstring
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
class Close:
    """Brutal close: stop now (told first: it overtakes queued commands)."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Graceful close: let in-flight streams finish (bounded by closing_timeout; told first)."""


@dataclass(frozen=True, slots=True)
class InfoQuery:
    """Asked (not told) by ``Connection.info()``."""


Command: TypeAlias = (
    RequestCmd | HeadersCmd | DataCmd | Cancel | UpdateFlow | WsUpgrade | WsSend | Close | Shutdown
)
StreamCommand: TypeAlias = RequestCmd | HeadersCmd | DataCmd | Cancel | UpdateFlow | WsUpgrade


# -- I/O reports (told by the transport thread and the scheduler) --------------


@dataclass(frozen=True, slots=True)
class Connected:
    epoch: int


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    epoch: int
    reason: BaseException


@dataclass(slots=True)  # not frozen: see the module's docstring
class BytesIn:
    epoch: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Closed:
    epoch: int
    reason: BaseException | None


@dataclass(frozen=True, slots=True)
class Tick:
    """A timer fired; ``kind`` says which (``"retry"``, ``"closing"``)."""

    epoch: int
    kind: str


@dataclass(frozen=True, slots=True)
class Writable:
    """The socket that did not take all that was written can take more: send the rest."""

    epoch: int


IoReport: TypeAlias = Connected | ConnectFailed | BytesIn | Closed | Tick | Writable
