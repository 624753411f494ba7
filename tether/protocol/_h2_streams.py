"""The parts of an HTTP/2 connection (:mod:`tether.protocol._h2`): h2's machine, a stream.

Sans-I/O, as the rest of ``tether.protocol``. Not thread-safe: the
connection actor's turn alone uses them.
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import h2.connection
import h2.errors
import h2.exceptions
import h2.stream

from tether._errors import RemoteProtocolError
from tether._events import Headers, StreamRef
from tether.protocol._validate import HeaderList
from tether.protocol._ws import WsClient, WsHandshake

__all__ = ["H2Client", "H2Stream", "OnData", "StreamState", "response_head"]

_NO_ERROR = h2.errors.ErrorCodes.NO_ERROR
_CLOSED = h2.connection.ConnectionState.CLOSED
_CLIENT_OPEN = h2.connection.ConnectionState.CLIENT_OPEN
# Stream states in which a DATA frame without END_STREAM or padding leaves the
# stream as it is (h2's machine runs nothing for it but making the event):
# those the fast paths of H2Client take.
_SENDING = frozenset({h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_REMOTE})
_RECEIVING = frozenset({h2.stream.StreamState.OPEN, h2.stream.StreamState.HALF_CLOSED_LOCAL})
_HEAD = 9  # a frame header's bytes (RFC 9113 4.1)
# A frame header: its length (24 bits, as a byte and 16 bits), type, flags, stream id.
_FRAME_HEAD = struct.Struct(">BHBBI")
_DATA = 0  # the DATA frame type

#: Where H2Client.receive_data hands a DATA frame it read itself: (stream id,
#: payload, flow-controlled size) -> False once nothing more is to be read.
OnData = Callable[[int, bytes, int], bool]


class H2Client(h2.connection.H2Connection):
    """h2's connection, reading on after a graceful GOAWAY, and DATA without h2's objects.

    h2 closes its state machine on any GOAWAY and then refuses every frame,
    even those of the streams the server still answers (RFC 9113 6.8: a
    graceful GOAWAY lets them finish). After a NO_ERROR one, the state is
    put back to open here, within the same read; ``Http2Protocol`` opens no
    stream from then on.

    **DATA, the common case, without h2's frame objects.** A Websocket
    message over HTTP/2 is one DATA frame each way, and h2 spends more on
    each (a hyperframe object built and serialised or parsed, the state
    machines of the connection and the stream, which change nothing for a
    DATA frame on an open stream) than the rest of tether does over
    HTTP/1.1 (the hot-path ledger of ``docs/design.md``). :meth:`send_data` and
    :meth:`receive_data` do the same bookkeeping as h2 itself for that one
    case (the flow-control windows, h2's window managers, the content
    length, and instead of the event a call of the caller's ``on_data``),
    building or reading the 9 bytes of header here, and
    hand everything else to h2: END_STREAM, padding, a stream in any other
    state, a frame over the windows or the frame size, any other frame
    type, a frame split between reads. (h2 4.x internals; ``h2>=4.1,<5``
    pins it, and tests/protocol/test_h2_fast.py checks both paths agree.)
    :meth:`frame_data` is ``send_data``'s own case, which the connection
    calls for a Websocket frame, and :meth:`take_data` h2's bytes to write
    without the copy ``data_to_send`` makes.
    """

    # hot-path ledger: h2's DATA, framed here (send_data, frame_data and receive_data)
    def send_data(
        self,
        stream_id: int,
        data: bytes | memoryview,
        end_stream: bool = False,
        pad_length: Any = None,
    ) -> None:
        """h2's ``send_data``; an open stream's DATA within the windows is framed here."""
        if end_stream or pad_length is not None or not self.frame_data(stream_id, data):
            super().send_data(stream_id, data, end_stream, pad_length)

    def frame_data(self, stream_id: int, data: bytes | bytearray | memoryview) -> bool:
        """Frame ``data`` as one DATA frame (no flags) if it may go whole; else False.

        It may when the stream is open for sending and ``data`` is not
        empty and fits the frame size and both windows. False changes
        nothing: the caller goes through h2 (``send_data``), which splits,
        queues or refuses as h2 does.
        """
        size = len(data)
        stream = self.streams.get(stream_id)
        if (
            not size
            or stream is None
            or self.state_machine.state is not _CLIENT_OPEN
            or stream.state_machine.state not in _SENDING
            or size > self.max_outbound_frame_size
            or size > self.outbound_flow_control_window
            or size > stream.outbound_flow_control_window
        ):
            return False
        out = self._data_to_send
        out += _FRAME_HEAD.pack(size >> 16, size & 0xFFFF, _DATA, 0, stream_id)  # no flags
        out += data
        self.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        return True

    def take_data(self) -> bytearray:
        """What is to be written, taken as it is (h2's ``data_to_send`` copies it to bytes)."""
        out = self._data_to_send
        if out:
            self._data_to_send = bytearray()
        return out

    def receive_data(  # type: ignore[override]  # bytes only, and on_data
        self, data: bytes, on_data: OnData
    ) -> list[Any]:
        """h2's ``receive_data``; the whole DATA frames of open streams it begins with, here.

        Those frames are handed to ``on_data(stream_id, payload, size)`` as
        they are read, not made into ``DataReceived`` events; h2's events for
        the rest are returned (they follow those frames on the wire). Once
        ``on_data`` returns False (the connection is over), nothing more is
        read and no event is returned.
        """
        buffer: Any = self.incoming_buffer
        held = getattr(buffer, "_data", None)  # h2 keeps the start of a frame split between reads
        if self.state_machine.state is not _CLIENT_OPEN or held is None or held:
            return super().receive_data(data)
        at, end = 0, len(data)
        limit = self.max_inbound_frame_size
        while end - at > _HEAD:
            high, low, kind, flags, stream_id = _FRAME_HEAD.unpack_from(data, at)
            size = high << 16 | low
            start = at + _HEAD
            if kind != _DATA or flags or not size or size > limit or start + size > end:
                break  # another frame, flags, empty, too large or cut: h2 judges it
            stream_id &= 0x7FFF_FFFF
            if not self._taken(stream_id, size):
                break
            payload = data[start : start + size]
            at = start + size
            if not on_data(stream_id, payload, size):
                return []
        if at < end:
            return super().receive_data(data[at:] if at else data)
        return []

    def _taken(self, stream_id: int, size: int) -> bool:
        """A DATA frame of ``size`` bytes for ``stream_id`` is read here: its windows taken.

        False (nothing changed) unless the stream is open for receiving and
        the frame within both windows: h2 reads it then, and ends the
        connection for one past a window (FLOW_CONTROL_ERROR).
        """
        stream = self.streams.get(stream_id)
        if (
            stream is None
            or stream.state_machine.state not in _RECEIVING
            or not stream.state_machine.headers_received
        ):
            return False
        connection, own = self._inbound_flow_control_window_manager, stream._inbound_window_manager
        if size > connection.current_window_size or size > own.current_window_size:
            return False
        # h2's window_consumed, which cannot fail here.
        connection.current_window_size -= size
        own.current_window_size -= size
        if stream._expected_content_length is not None:  # (a Websocket has none)
            try:
                stream._track_content_length(size, False)
            except h2.exceptions.ProtocolError as exc:
                self._terminate_connection(exc.error_code)  # as h2's receive_data does
                raise
        return True

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
    #: Bytes told and acknowledged, not yet given back to h2 (in steps: Http2Protocol._ack).
    acked: int = 0

    @property
    def unsent(self) -> bool:
        """Body bytes, or the END_STREAM after them, are still to go out."""
        return bool(self.body) or (self.fin and not self.sent_end)


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
