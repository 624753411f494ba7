"""What tether's values become in another process: stable identities for pickle.

An owner in another process (a Ray actor, a worker of a process pool)
receives events pickled. Everything in an event pickles as a value
(frames, headers, errors: see ``tether._errors``) except two things that
are identities, not values:

- a ``StreamRef``: it pickles as ``(origin, id)``, where ``origin`` names
  the process that issued it. Unpickling *interns*: while a ``StreamRef``
  with that identity is alive in the process, it is returned itself, so a
  copy is the very object (``is`` and ``==`` hold), in the process that
  issued it and in any other. Nothing is done when a ``StreamRef`` is made
  (it is made per request): a ``StreamRef`` enters the table the first
  time it is pickled.
- a ``Connection``: a handle holding locks, threads and sockets, which no
  other process can use. It pickles as its *wire stand-in*:
  :attr:`Connection.wire <tether.Connection.wire>`, by default a
  :class:`ConnectionRef` (the process, a number). In the process that owns
  the connection a ``ConnectionRef`` unpickles to the live ``Connection``
  itself (while it is alive); elsewhere it stays a ``ConnectionRef``: a
  name, equal to every other copy of it, with no methods. Code that
  routes commands back to the process holding the connection (a Ray
  fleet's host) gives the connection a stand-in of its own with
  :meth:`Connection.set_wire <tether.Connection.set_wire>`: events then
  carry that handle, and compare equal to the one its ``open`` returned.

``origin`` is a random 64-bit number drawn at import and again in a
forked child (so parent and child never issue the same identity).
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import weakref
from dataclasses import dataclass
from typing import Any

__all__ = ["ConnectionRef", "as_is", "intern", "process_origin", "register_connection"]


def _draw() -> int:
    return secrets.randbits(64)


_origin = _draw()


def _forked() -> None:
    global _origin, _lock
    _origin = _draw()
    _lock = threading.Lock()  # another thread of the parent may have held it


def process_origin() -> int:
    """The number that names this process in the identities it issues (any thread)."""
    return _origin


_lock = threading.Lock()
# (origin, number) -> the live object with that identity: StreamRefs once
# pickled or unpickled, Connections once their ConnectionRef was made. Weak:
# an entry lasts as long as its object, so the table is bounded by what the
# program holds.
_interned: weakref.WeakValueDictionary[tuple[str, int, int], Any] = weakref.WeakValueDictionary()
_connection_numbers = itertools.count(1)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def intern(kind: str, origin: int, number: int, make: Any) -> Any:
    """The live object of ``kind`` with identity ``(origin, number)``, made by ``make()`` if none.

    Thread-safe. ``make`` is called under the table's lock, and must not
    pickle.
    """
    key = (kind, origin, number)
    with _lock:
        found = _interned.get(key)
        if found is None:
            found = make()
            _interned[key] = found
        return found


def as_is(value: object) -> object:
    """What a pickled ``Connection`` unpickles through: its stand-in, as the stand-in unpickled."""
    return value


def register_connection(conn: object) -> ConnectionRef:
    """A new identity for ``conn`` (a ``Connection``), known to this process's table."""
    ref = ConnectionRef(_origin, next(_connection_numbers))
    with _lock:
        _interned[("connection", ref.origin, ref.number)] = conn
    return ref


def _resolve_connection(origin: int, number: int) -> object:
    """Unpickling a :class:`ConnectionRef`: the live ``Connection`` if it is this process's."""
    with _lock:
        live = _interned.get(("connection", origin, number))
    return live if live is not None else ConnectionRef(origin, number)


@dataclass(frozen=True, slots=True)
class ConnectionRef:
    """A connection's name outside the process that holds it (the default wire stand-in).

    What a [`Connection`][tether.Connection] (an event's ``conn``) becomes
    when pickled: equal (and equal-hashing) to every other copy of itself;
    unpickled in the process that holds the connection, it is that live
    ``Connection`` again. It has no methods: to call a connection from
    another process, something must route the call back (a fleet's host,
    which gives its connections a stand-in of its own with
    [`Connection.set_wire`][tether.Connection.set_wire]). Thread-safe:
    immutable.

    Attributes:
        origin: the process that holds the connection (a random number it drew).
        number: the connection, in that process.
    """

    origin: int
    number: int

    def __reduce__(self) -> tuple[Any, ...]:
        return (_resolve_connection, (self.origin, self.number))

    def __repr__(self) -> str:
        return f"ConnectionRef({self.origin:016x}, {self.number})"
