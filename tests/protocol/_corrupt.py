"""Corrupting a byte stream for the protocol layer's property tests."""

from __future__ import annotations


def corrupt(raw: bytes, edits: list[tuple[float, bytes, int]]) -> bytes:
    """Apply (where, insert, how many bytes to replace) edits to ``raw``."""
    data = bytearray(raw)
    for where, insert, replace in edits:
        at = int(where * len(data))
        data[at : at + replace] = insert
    return bytes(data)
