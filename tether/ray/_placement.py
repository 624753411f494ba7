"""Where a connection lives: rendezvous hashing of its key over the host indices.

Pure (no Ray, no I/O). A key goes to the host index with the highest
score ``blake2b(index, key)``: the same key always lands on the same index
for a given number of hosts, whichever process computes it and however
often a host restarts (a restarted host keeps its index). Changing the
number of hosts moves only the keys whose best index is a new or removed
one (about 1/n of them), the property that makes rendezvous hashing the
simplest consistent hash.
"""

from __future__ import annotations

import hashlib

__all__ = ["host_index"]


def _score(index: int, key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8, person=index.to_bytes(16, "big"))
    return int.from_bytes(digest.digest(), "big")


def host_index(key: str, hosts: int) -> int:
    """The index (``0 <= i < hosts``) of the host that holds ``key``. Thread-safe: pure.

    Raises:
        TypeError: ``key`` is not a ``str``.
        ValueError: ``hosts`` is not a positive number.
    """
    if not isinstance(key, str):
        raise TypeError(f"a fleet key must be a str, not {key!r}")
    if isinstance(hosts, bool) or not isinstance(hosts, int) or hosts < 1:
        raise ValueError(f"hosts must be an int >= 1, not {hosts!r}")
    return max(range(hosts), key=lambda index: _score(index, key))
