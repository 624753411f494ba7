"""Websocket masking in C when ``tether[speedups]`` is installed (websockets', wsaccel's).

A client masks every byte it sends (RFC 6455 §5.3). wsproto does it in
pure Python (``bytes.translate`` on four strided slices): about 0.8 ms per
MiB here, a quarter of tether's CPU time on a 1 MiB echo
(``bench/NOTES.md``). ``wsaccel``'s masker does the same in C, with the
same interface (a ``process`` method that continues the key rotation from
one call to the next) and the same output. When it is importable, wsproto's
frame layer is pointed at it; otherwise nothing changes. This affects every
wsproto connection in the process, identically in output.

:func:`mask` masks a whole payload at once, for the frames tether builds
itself (:mod:`tether.protocol._framing`), with the fastest masker
installed, measured per MiB on this machine:

- ``websockets.speedups.apply_mask`` (websockets' C extension, word-wide
  XOR): ~20 µs. websockets is in ``tether[speedups]``; only this function
  of it is used, loaded on the first upgrade (:func:`load`) because
  importing websockets takes ~30 ms;
- wsaccel's masker (a byte loop in C): 0.43-0.9 ms;
- wsproto's pure-Python one: ~0.77 ms. The other pure-Python way, XOR of
  the payload and the repeated key as two big integers
  (``int.from_bytes``), takes 1.9 ms, so it is not used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import wsproto.frame_protocol

__all__ = ["PURE_MASKER", "accelerated", "install", "load", "mask"]

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


ApplyMask = Callable[[bytes | bytearray | memoryview, bytes], bytes]
"""``apply_mask(payload, key)``: the payload masked from its first byte on."""

_apply_mask: ApplyMask | None = None
_loaded = False


def load() -> ApplyMask | None:
    """Find websockets' C masker once (idempotent); None when it is not installed."""
    global _apply_mask, _loaded  # a process-wide, load-once choice
    if not _loaded:
        try:
            speedups = importlib.import_module("websockets.speedups")
        except ImportError:
            _apply_mask = None
        else:
            _apply_mask = speedups.apply_mask
        _loaded = True
    return _apply_mask


def mask(key: bytes, payload: bytes | bytearray | memoryview) -> bytes | bytearray:
    """``payload`` masked with the 4-byte ``key`` from its first byte on (a new object)."""
    apply_mask = _apply_mask if _loaded else load()
    if apply_mask is not None:
        return apply_mask(payload, key)
    return wsproto_mask(key, payload)


def wsproto_mask(key: bytes, payload: bytes | bytearray | memoryview) -> bytes | bytearray:
    """``payload`` masked by the masker wsproto uses (wsaccel's, or wsproto's own)."""
    # Both take any bytes-like object (wsproto's copies it into a bytearray
    # first, wsaccel's reads it as a buffer); wsproto's is typed for
    # bytearray only, hence Any.
    masker: Any = wsproto.frame_protocol.XorMaskerSimple(key)
    masked: bytes | bytearray = masker.process(payload)
    return masked
