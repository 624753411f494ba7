"""Outgoing client data frames without wsproto's copies (RFC 6455 §5.2, §5.3).

wsproto's ``FrameProtocol._serialize_frame`` copies a payload four times
(into a ``bytearray``, again for the masker, header + key + masked payload,
and that into another ``bytearray``) and ``Connection.send`` a fifth time
(``b"" + frame``). On 1 MiB messages each copy is a fresh 1 MiB
allocation, and on this machine a fresh allocation is mostly page faults:
~1,000 of them per message, more than half the CPU time of sending it
(``bench/NOTES.md``). :func:`masked_frame` builds the same frame as two
pieces, the header with the masking key and the masked payload, the only
copy being the masking itself; the transport writes both with one
``sendmsg``.

It is used only where it cannot diverge from wsproto (see
:meth:`tether.protocol._ws.WsClient.send`): whole Text/Binary messages (FIN
set, never a continuation: tether does not send fragmented messages) on a
connection with no extension enabled, so there are no RSV bits and no
payload transformation, while wsproto's connection is OPEN. Sending such a
frame changes no wsproto state: ``Connection.send`` only changes state for a
close, and ``FrameProtocol.send_data`` only remembers the opcode of an
unfinished message, which a finished one leaves at ``None``.

Masking keys come from :class:`MaskingKeys`, one per connection: 64 keys
per ``os.urandom`` call instead of a system call per frame (RFC 6455 §5.3
asks for keys from a strong source of entropy, each unpredictable from the
ones before: they are still ``os.urandom``'s bytes, each used once, and
bytes of ``os.urandom`` tell nothing about the next ones).
"""

from __future__ import annotations

import struct
from os import urandom

from tether.protocol import _mask

__all__ = ["BINARY", "JOINED_MAX", "TEXT", "MaskingKeys", "frame_header", "masked_frame"]

# RFC 6455 §5.2: opcodes, and the FIN and MASK bits.
TEXT = 0x1
BINARY = 0x2
_FIN = 0x80
_MASK = 0x80
# Payload lengths up to 125 fit in the second byte; 126 announces a 16-bit
# length, 127 a 64-bit one (always the shortest form: wsproto's parser and
# RFC 6455 §5.2 require the minimal number of bytes).
_MAX_7BIT = 125
_MAX_16BIT = 0xFFFF
_HEADER_16 = struct.Struct("!BBH4s")
_HEADER_64 = struct.Struct("!BBQ4s")
_KEY = 4
_KEYS_PER_CALL = 64


class MaskingKeys:
    """Fresh masking keys for one connection, read from ``os.urandom`` 64 at a time.

    Not thread-safe: one thread at a time sends on a connection.
    """

    __slots__ = ("_next", "_pool")

    def __init__(self) -> None:
        self._pool = b""  # filled on the first frame: connections that never send pay nothing
        self._next = 0

    def take(self) -> bytes:
        """A 4-byte key no frame has used."""
        start = self._next
        if start >= len(self._pool):
            self._pool = urandom(_KEY * _KEYS_PER_CALL)
            start = 0
        self._next = start + _KEY
        return self._pool[start : start + _KEY]


#: The largest payload masked_frame returns joined to its header, in one piece.
JOINED_MAX = 1024


def frame_header(opcode: int, length: int, key: bytes) -> bytes:
    """The header of a final, masked frame: FIN, opcode, MASK, length, masking key."""
    first = _FIN | opcode
    if length <= _MAX_7BIT:
        return bytes((first, _MASK | length)) + key
    if length <= _MAX_16BIT:
        return _HEADER_16.pack(first, _MASK | 126, length, key)
    return _HEADER_64.pack(first, _MASK | 127, length, key)


def masked_frame(
    opcode: int, payload: bytes | bytearray | memoryview, keys: MaskingKeys
) -> list[bytes | bytearray]:
    """A whole client frame as ``[header + masking key, masked payload]``.

    The key is a fresh one from ``keys`` for every frame, as RFC 6455 §5.3
    requires (and as wsproto does). A frame of up to ``JOINED_MAX``
    payload bytes is one piece: copying it is cheaper than a piece more
    for the writer (and, over HTTP/2, than joining them into a DATA frame).
    """
    key = keys.take()
    header = frame_header(opcode, len(payload), key)
    if not payload:
        return [header]
    masked = _mask.mask(key, payload)
    if len(masked) <= JOINED_MAX:
        return [header + masked]
    return [header, masked]
