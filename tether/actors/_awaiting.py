"""What ``await_body`` makes of the events it takes: shared by ``Connection`` and ``AsyncInbox``.

The blocking ``Connection.await_body`` and the coroutine
``AsyncInbox.await_body`` wait differently (a thread in an Inbox, a
coroutine on an event loop) but take the same events and answer the same:
this is that answer, without any waiting.
"""

from __future__ import annotations

from tether._errors import UpgradedError
from tether._events import Data, Error, Response, StreamRef, Trailers, Upgrade, Ws

__all__ = ["Body"]


class Body:
    """``await_body``'s answer, built from the events its waiter takes one by one."""

    __slots__ = ("_chunks", "_stream")

    def __init__(self, stream: StreamRef) -> None:
        self._stream = stream
        self._chunks: list[bytes] = []

    def add(self, event: object) -> bytes | None:
        """The body once ``event`` ends it, else None (wait for the next); raises as await_body."""
        match event:
            case Response(fin=True):
                return b""
            case Data(fin=fin, data=data):
                self._chunks.append(data)
                return b"".join(self._chunks) if fin else None
            case Trailers():
                return b"".join(self._chunks)
            case Error(reason=reason):
                raise reason
            case Upgrade() | Ws():
                raise UpgradedError(f"{self._stream!r} was upgraded to Websocket: no body")
            case _:
                return None  # Inform, Response(fin=False)
