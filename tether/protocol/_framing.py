"""Outgoing client data frames without wsproto's copies (RFC 6455 §5.2, §5.3).

wsproto's ``FrameProtocol._serialize_frame`` copies a payload four times
(into a ``bytearray``, again for the masker, header + key + masked payload,
and that into another ``bytearray``) and ``Connection.send`` a fifth time
(``b"" + frame``). On 1 MiB messages each copy is a fresh 1 MiB
allocation, and on this machine a fresh allocation is mostly page faults:
~1,000 of them per message, more than half the CPU time of sending it
(``docs/performance.md``). :func:`masked_frame` builds the same frame as two
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
"""

from __future__ import annotations

import os
import struct

from tether.protocol import _mask

__all__ = ["BINARY", "TEXT", "frame_header", "masked_frame"]

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


def frame_header(opcode: int, length: int, key: bytes) -> bytes:
    """The header of a final, masked frame: FIN, opcode, MASK, length, masking key."""
    first = _FIN | opcode
    if length <= _MAX_7BIT:
        return bytes((first, _MASK | length)) + key
    if length <= _MAX_16BIT:
        return _HEADER_16.pack(first, _MASK | 126, length, key)
    return _HEADER_64.pack(first, _MASK | 127, length, key)


def masked_frame(opcode: int, payload: bytes | bytearray | memoryview) -> list[bytes | bytearray]:
    """A whole client frame as ``[header + masking key, masked payload]``.

    The key is fresh from ``os.urandom`` for every frame, as RFC 6455 §5.3
    requires (and as wsproto does).
    """
    key = os.urandom(4)
    header = frame_header(opcode, len(payload), key)
    if not payload:
        return [header]
    return [header, _mask.mask(key, payload)]
