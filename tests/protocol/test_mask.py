"""Websocket masking: wsaccel's C masker when installed, wsproto's otherwise, same bytes."""

from __future__ import annotations

import importlib.util

import pytest
import wsproto.frame_protocol
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import _mask

HAS_WSACCEL = importlib.util.find_spec("wsaccel") is not None


def test_wsproto_masks_in_c_exactly_when_wsaccel_is_installed() -> None:
    # tether.protocol installs the masker at import: nothing to call.
    assert _mask.accelerated() is HAS_WSACCEL
    assert (wsproto.frame_protocol.XorMaskerSimple is _mask.PURE_MASKER) is not HAS_WSACCEL


@pytest.mark.skipif(not HAS_WSACCEL, reason="wsaccel is not installed")
@given(
    key=st.binary(min_size=4, max_size=4),
    parts=st.lists(st.binary(max_size=64), max_size=6),
)
def test_the_c_masker_gives_wsprotos_bytes(key: bytes, parts: list[bytes]) -> None:
    # The key rotation carries on from one call to the next, as in wsproto.
    fast = wsproto.frame_protocol.XorMaskerSimple(bytearray(key))
    pure = _mask.PURE_MASKER(bytearray(key))
    for part in parts:
        assert bytes(fast.process(bytearray(part))) == bytes(pure.process(bytearray(part)))
