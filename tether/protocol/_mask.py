"""Websocket masking in C when ``wsaccel`` is installed (``pip install tether[speedups]``).

A client masks every byte it sends (RFC 6455 §5.3). wsproto does it in
pure Python (``bytes.translate`` on four strided slices): about 0.8 ms per
MiB here, a quarter of tether's CPU time on a 1 MiB echo
(``docs/performance.md``). ``wsaccel``'s masker does the same in C, with the
same interface (a ``process`` method that continues the key rotation from
one call to the next) and the same output. When it is importable, wsproto's
frame layer is pointed at it; otherwise nothing changes. This affects every
wsproto connection in the process, identically in output.

:func:`mask` masks a whole payload with whichever masker is installed, for
the frames tether builds itself (:mod:`tether.protocol._framing`).
Without wsaccel it stays wsproto's ``bytes.translate`` masker: the other
pure-Python way, XOR of the payload and the repeated key as two big
integers (``int.from_bytes``), measured 1.9 ms per MiB against 0.77 ms for
wsproto's and 0.43 ms for wsaccel's.
"""

from __future__ import annotations

import importlib
from typing import Any

import wsproto.frame_protocol

__all__ = ["PURE_MASKER", "accelerated", "install", "mask"]

PURE_MASKER = wsproto.frame_protocol.XorMaskerSimple
"""wsproto's own masker, kept to compare against (tests)."""


def install() -> bool:
    """Use wsaccel's masker in wsproto if wsaccel is installed; True if it is."""
    try:
        xormask = importlib.import_module("wsaccel.xormask")
    except ImportError:
        return False
    wsproto.frame_protocol.XorMaskerSimple = xormask.XorMaskerSimple  # type: ignore[misc]
    return True


def accelerated() -> bool:
    """True when wsproto masks with wsaccel's C masker."""
    return wsproto.frame_protocol.XorMaskerSimple is not PURE_MASKER


def mask(key: bytes, payload: bytes | bytearray | memoryview) -> bytes | bytearray:
    """``payload`` masked with the 4-byte ``key`` from its first byte on (a new object)."""
    # Both maskers take any bytes-like object (wsproto's copies it into a
    # bytearray first, wsaccel's reads it as a buffer); wsproto's is typed
    # for bytearray only, hence Any.
    masker: Any = wsproto.frame_protocol.XorMaskerSimple(key)
    masked: bytes | bytearray = masker.process(payload)
    return masked
