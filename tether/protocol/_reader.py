"""Incoming server message frames without wsproto's per-frame work and copies (RFC 6455 §5.2).

wsproto reads a frame in ~70 Python calls (``Connection.events`` ->
``FrameProtocol.received_frames`` -> ``_parse_more_gen`` ->
``FrameDecoder.process_buffer`` -> ``parse_header``, twice per frame, each
through its ``Buffer``), the largest single cost of a small message's round
trip (``bench/NOTES.md``), and copies every payload three times
(``buffer += data``, a slice of the buffer, ``bytes()`` of that slice), a
1 MiB message once per 64 KiB read. :class:`FrameReader` parses the common
frames itself, next to wsproto: a whole Text or Binary message in one frame
(FIN set, no RSV bit, unmasked, its length in the shortest form), however
many reads it spans. Its payload is a slice of the read, or for a frame
over several reads ``memoryview`` pieces of the reads that the message
layer joins once (``WsClient._on_message_part``).

It cannot diverge from wsproto because it only ever reads such a frame
where wsproto is *idle*: nothing buffered, no frame begun, no message begun
(``FrameDecoder.buffer`` empty, ``FrameDecoder.header`` and
``MessageDecoder.opcode`` ``None``; ``WsClient`` checks this before each
read once wsproto has had bytes). Reading such a frame from idle, wsproto
ends idle again and changes nothing else: the frame decoder consumes the
frame and resets its per-frame fields, the message decoder starts and
finishes the message (its opcode and UTF-8 decoder back to ``None``), the
``_parse_more`` generator goes on looping (it ends only after a Close frame
or a parse failure), the connection state changes only on a Close frame or
end of input, and ``_outbound_opcode`` belongs to the send side. So leaving
such a frame out of wsproto's input leaves wsproto exactly as it would have
been after reading it. What wsproto would have produced from it, the
reader produces: one message part per read the frame spans, each with the
payload bytes that read carried (none for a read that ends inside the
header), the last one finished; for Text, the parts decoded by a fresh
incremental UTF-8 decoder fed those same pieces (a whole frame in one read:
``bytes.decode``, the same C decoder with the same errors as an empty
incremental decoder with ``final=True``), and on invalid UTF-8 the same
failure: close code 1007 with the decoder's message. The parts go through
the same message layer as wsproto's events (the ``max_message_size`` check
after each part, as data arrives; the failing-Websocket linger).

Everything else goes to wsproto unchanged and in order, from idle: a whole
control frame on its own (wsproto reads it and is idle again, or the
connection ends: a Close, or a failure), and anything else (a fragment, a
continuation, a reserved bit, a mask, a non-minimal length, an unknown
opcode) with the rest of the read, after which wsproto keeps the stream
until it is idle again. The start of a frame that the read cut short is
held back until the next read only where wsproto, given it, would wait
without an event or an error: a header prefix of a Text, Binary or control
frame whose bytes so far are valid (``parse_header`` checks the opcode,
fragmentation and a control frame's length on the first two bytes, and
rolls back, changing nothing, while the rest of the header is missing),
or a control frame whose payload is incomplete (wsproto waits for the
whole payload of a control frame).

Used only on connections without extensions (``WsClient._plain``): with
permessage-deflate, RSV1 and the payload transformation are wsproto's.
Not thread-safe: the connection's one thread at a time drives it.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable

from wsproto.connection import Connection as WsConnection

__all__ = ["FrameReader", "MessagePart", "wsproto_is_idle"]

# RFC 6455 §5.2: the first byte of a final frame with no RSV bit set, by opcode.
_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_CONTROL = frozenset({0x88, 0x89, 0x8A})  # close, ping, pong (always final)
_MESSAGE = frozenset({_FIN_TEXT, _FIN_BINARY})
_MAX_7BIT = 125  # also the largest control frame payload
_LENGTH_16 = 126
_LENGTH_64 = 127
_MAX_16BIT = 0xFFFF
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
_INVALID_UTF8 = 1007  # RFC 6455 §7.4.1, the code wsproto fails invalid text with
# What FrameReader._message and _control return instead of where the next frame starts.
_STOP = -1  # this read is done: held back, continued in the next one, or reading must stop
_HAND = -2  # wsproto reads the rest, from FrameReader._handed_at

MessagePart = Callable[[str | bytes | memoryview, bool], bool]
"""``part(data, finished)``: a part of a message (``str``: Text); False once reading must stop."""


def wsproto_is_idle(conn: WsConnection) -> bool | None:
    """True if a wsproto ``Connection`` holds no input and is between messages.

    None when this wsproto keeps its state elsewhere than 1.2/1.3 do: then
    nothing may be read past it.
    """
    try:
        proto = conn._proto
        frames = proto._frame_decoder
        return (
            frames.header is None
            and not len(frames.buffer)
            and proto._message_decoder.opcode is None
        )
    except AttributeError:
        return None


class FrameReader:
    """Reads whole-message frames of an idle wsproto connection's input; see the module doc.

    Args:
        part: gets every message part, in order.
        wsproto: gets every other byte, in order (``wsproto(data)`` feeds
            and processes it); False once reading must stop.
        fail: ``fail(code, reason)``: invalid UTF-8, as wsproto would report it.

    Not thread-safe: one thread at a time drives a connection.
    """

    __slots__ = (
        "_decoder",
        "_fail",
        "_handed_at",
        "_held",
        "_left",
        "_part",
        "_wsproto",
        "handed",
    )

    def __init__(
        self,
        part: MessagePart,
        wsproto: Callable[[bytes], bool],
        fail: Callable[[int, str], None],
    ) -> None:
        self._part = part
        self._wsproto = wsproto
        self._fail = fail
        self._held = b""  # the start of a frame the last read cut short
        self._left = 0  # payload bytes of the frame being read still to come
        self._decoder: codecs.IncrementalDecoder | None = None  # that frame's, for Text
        self._handed_at = 0
        #: True once wsproto was given bytes past a whole control frame: it
        #: reads the stream until it is idle again (the caller checks).
        self.handed = False

    def feed(self, data: bytes) -> None:
        """Read one read's bytes; wsproto must be idle (or have been given only whole frames)."""
        if self._held:
            data = self._held + data
            self._held = b""
        end = len(data)
        pos = self._frame_rest(data, end) if self._left else 0
        while 0 <= pos < end:
            first = data[pos]
            if first in _MESSAGE:
                pos = self._message(data, pos, end, first)
            elif first in _CONTROL:
                pos = self._control(data, pos, end)
            else:
                pos = self._hand(pos)  # a fragment, a continuation, a reserved bit, ...
        if pos == _HAND:
            self.handed = True
            self._wsproto(data[self._handed_at :])

    def _message(self, data: bytes, pos: int, end: int, first: int) -> int:
        """Read the Text/Binary frame at ``pos``: where the next frame starts, or _STOP/_HAND."""
        if end - pos < 2:
            return self._hold(data, pos)
        second = data[pos + 1]
        if second <= _MAX_7BIT:  # a small message: no call (the 32 B round trip's)
            start = pos + 2
            stop = start + second
        else:
            start, stop = self._extended(data, pos, end, second)
            if start < 0:
                return stop  # _STOP or _HAND
        if stop > end:
            self._frame_start(data, start, stop - end, text=first == _FIN_TEXT)
            return _STOP
        payload = data[start:stop]
        if first == _FIN_TEXT:
            try:
                text = payload.decode()
            except UnicodeDecodeError as exc:
                self._fail(_INVALID_UTF8, str(exc))
                return _STOP
            return stop if self._part(text, True) else _STOP
        return stop if self._part(payload, True) else _STOP

    def _extended(self, data: bytes, pos: int, end: int, second: int) -> tuple[int, int]:
        """Where the payload of a frame with a 16 or 64-bit length starts and stops.

        ``(-1, _STOP)`` if the length is not all there yet (held for the
        next read), ``(-1, _HAND)`` if wsproto must read it (its error).
        """
        if second == _LENGTH_16:
            if end - pos < 4:
                return -1, self._hold(data, pos)
            (length,) = _U16.unpack_from(data, pos + 2)
            if length <= _MAX_7BIT:
                return -1, self._hand(pos)  # not the shortest form: wsproto's error
            return pos + 4, pos + 4 + length
        if second == _LENGTH_64:
            if end - pos < 10:
                return -1, self._hold(data, pos)
            (length,) = _U64.unpack_from(data, pos + 2)
            if length <= _MAX_16BIT or length >> 63:
                return -1, self._hand(pos)  # not the shortest form, or the top bit: wsproto's
            return pos + 10, pos + 10 + length
        return -1, self._hand(pos)  # masked: wsproto's error

    def _control(self, data: bytes, pos: int, end: int) -> int:
        """Give wsproto the control frame at ``pos`` once it is whole (see _message)."""
        if end - pos < 2:
            return self._hold(data, pos)
        length = data[pos + 1]
        if length > _MAX_7BIT:
            return self._hand(pos)  # masked, or too long for a control frame: wsproto's error
        stop = pos + 2 + length
        if stop > end:
            return self._hold(data, pos)
        return stop if self._wsproto(data[pos:stop]) else _STOP

    def _hold(self, data: bytes, pos: int) -> int:
        self._held = data[pos:]
        return _STOP

    def _hand(self, pos: int) -> int:
        self._handed_at = pos
        return _HAND

    def _frame_start(self, data: bytes, start: int, left: int, *, text: bool) -> None:
        """A frame continues in later reads: deliver what this read has of it."""
        self._left = left
        self._decoder = codecs.getincrementaldecoder("utf-8")() if text else None
        if start < len(data):
            self._piece(memoryview(data)[start:], finished=False)

    def _frame_rest(self, data: bytes, end: int) -> int:
        """Deliver this read's part of the frame begun earlier; where it ends, or _STOP."""
        left = self._left
        if end <= left:
            self._left = left - end
            finished = end == left
            piece: bytes | memoryview = data
            pos = end
        else:
            self._left = 0
            finished = True
            piece = memoryview(data)[:left]
            pos = left
        return pos if self._piece(piece, finished=finished) else _STOP

    def _piece(self, piece: bytes | memoryview, *, finished: bool) -> bool:
        decoder = self._decoder
        if decoder is None:
            return self._part(piece, finished)
        try:
            text = decoder.decode(piece, finished)
        except UnicodeDecodeError as exc:
            self._fail(_INVALID_UTF8, str(exc))
            return False
        if finished:
            self._decoder = None
        return self._part(text, finished)
