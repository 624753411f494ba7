"""Websocket masking: wsaccel's C masker when installed, wsproto's otherwise, same bytes."""

from __future__ import annotations

import importlib.util
import os

import pytest
import wsproto.frame_protocol
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import _mask

HAS_WSACCEL = importlib.util.find_spec("wsaccel") is not None
HAS_WEBSOCKETS = importlib.util.find_spec("websockets") is not None


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


def pure(key: bytes, payload: bytes) -> bytes:
    return bytes(_mask.PURE_MASKER(bytearray(key)).process(bytearray(payload)))


def test_websockets_c_masker_is_used_exactly_when_websockets_is_installed() -> None:
    assert (_mask.load() is not None) is HAS_WEBSOCKETS


@given(key=st.binary(min_size=4, max_size=4), payload=st.binary(max_size=300))
def test_every_whole_payload_masker_gives_wsprotos_bytes(key: bytes, payload: bytes) -> None:
    assert bytes(_mask.mask(key, payload)) == pure(key, payload)
    assert bytes(_mask.wsproto_mask(key, payload)) == pure(key, payload)
    apply_mask = _mask.load()
    if apply_mask is not None:
        assert apply_mask(memoryview(payload), key) == pure(key, payload)
        assert apply_mask(bytearray(payload), key) == pure(key, payload)


def test_a_mib_is_masked_as_wsproto_masks_it() -> None:
    key, payload = os.urandom(4), os.urandom((1 << 20) + 3)  # not a multiple of 4
    assert bytes(_mask.mask(key, payload)) == pure(key, payload)


def test_without_websockets_frames_are_masked_by_wsprotos_masker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_mask, "_apply_mask", None)
    monkeypatch.setattr(_mask, "_loaded", True)  # as if websockets was not importable
    key, payload = b"\x0f\xf0\xaa\x55", os.urandom(70_001)
    assert _mask.mask(key, payload) == _mask.wsproto_mask(key, payload)
    assert bytes(_mask.mask(key, payload)) == pure(key, payload)
