"""The parts of an HTTP/2 connection (:mod:`tether.protocol._h2`): h2's machine, a stream.

Sans-I/O, as the rest of ``tether.protocol``. Not thread-safe: the
connection actor's turn alone uses them.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import h2.connection
import h2.errors

from tether._errors import RemoteProtocolError
from tether._events import Headers, StreamRef
from tether.protocol._validate import HeaderList
from tether.protocol._ws import WsClient, WsHandshake

__all__ = ["H2Client", "H2Stream", "StreamState", "response_head"]

_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_CLOSED = h2.connection.ConnectionState.CLOSED
_CLIENT_OPEN = h2.connection.ConnectionState.CLIENT_OPEN


class H2Client(h2.connection.H2Connection):
    """h2's connection, reading on after a graceful GOAWAY.

    h2 closes its state machine on any GOAWAY and then refuses every frame,
    even those of the streams the server still answers (RFC 9113 6.8: a
    graceful GOAWAY lets them finish). After a NO_ERROR one, the state is
    put back to open here, within the same read; ``Http2Protocol`` opens no
    stream from then on. (h2 4.x; ``h2>=4.1,<5`` pins it.)
    """

    def _receive_goaway_frame(self, frame: Any) -> Any:
        result = super()._receive_goaway_frame(frame)
        machine = self.state_machine
        if frame.error_code == _NO_ERROR and machine.state is _CLOSED:
            machine.state = _CLIENT_OPEN
        return result


class StreamState(enum.Enum):
    """Where a stream is: waiting for room, on the wire, or over."""

    QUEUED = "queued"
    OPEN = "open"
    DONE = "done"


@dataclass(eq=False, slots=True)
class H2Stream:
    """One request (or Websocket) of the connection."""

    ref: StreamRef
    method: bytes
    target: bytes
    headers: HeaderList
    #: Body pieces (or Websocket bytes) not yet written: they wait for the window.
    body: deque[bytes | bytearray | memoryview] = field(default_factory=deque)
    #: The user gave the whole body: END_STREAM follows its last piece.
    fin: bool = True
    flow: int | None = None
    handshake: WsHandshake | None = None
    function: Literal["request", "headers", "ws_upgrade"] = "request"
    state: StreamState = StreamState.QUEUED
    id: int = 0
    headed: bool = False
    #: Its response ended (or failed): nothing more is told for it.
    answered: bool = False
    sent_end: bool = False
    ws: WsClient | None = None
    #: Flow-controlled bytes received and not acknowledged (its flow credit was spent).
    unacked: int = 0


def response_head(raw: list[tuple[bytes, bytes]]) -> tuple[int, Headers]:
    """``(status, headers)`` of a response head: the pseudo-headers out, names lower-case."""
    status = 0
    out: list[tuple[str, str]] = []
    for name, value in raw:
        if name.startswith(b":"):
            if name == b":status":
                if not (len(value) == 3 and value.isdigit()):
                    raise RemoteProtocolError(f"malformed :status {value!r} from the server")
                status = int(value)
            continue
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    return status, tuple(out)
