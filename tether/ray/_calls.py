"""Waiting for Ray calls, typed for tether's checks.

Ray's stubs give the result of a call to an untyped actor method a type
that no value has, which makes mypy treat the code after it as dead; this
one wrapper says what it is: any value, checked where it is used.
"""

from __future__ import annotations

from typing import Any

import ray

__all__ = ["actor", "get"]


def get(refs: Any, timeout: float | None = None) -> Any:
    """``ray.get(refs, timeout=timeout)``. Thread-safe (Ray's)."""
    return ray.get(refs, timeout=timeout)


def actor(name: str, namespace: str | None) -> Any:
    """``ray.get_actor(name, namespace=namespace)``. Thread-safe (Ray's).

    Raises:
        ValueError: no live actor has that name.
    """
    return ray.get_actor(name, namespace=namespace)
