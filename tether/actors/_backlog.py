"""The receive bound: what a connection told its owner that the owner has not taken yet.

An owner slower than the server must not make the client grow without
bound. A connection counts the events it told its owner that the owner has
not taken yet (:class:`Backlog`, in events and in payload bytes), and past
``max_queue`` events or ``max_queue_bytes`` bytes it stops reading its
socket (TCP then pushes back on the server) until the owner has taken
three quarters of them. Only events made of what was read count
(``Inform``, ``Response``, ``Data``, ``Trailers``, ``Ws``: :func:`weight`):
``Up``, ``Down`` and ``Error`` do not, as reading less would not make fewer
of them.

"Taken" means removed from the owner Inbox (``receive``, ``await_*``,
``flush``: the Inbox counts what it takes, :mod:`~tether.actors._inbox`), or
picked up by the owner actor's loop to be handled
(:mod:`~tether.actors._delivery`). A backlog's state changes under one lock:
the owner Inbox's for an Inbox owner (its receives and tells hold it
anyway), a lock of its own otherwise. The owner's side may hold an Inbox's
lock, so it never takes a socket's: :attr:`Backlog.on_change` asks the I/O
thread to look at the bound again.

**Selective receive.** An Inbox owner that waits for a message nothing
queued matches (``receive(match=...)``, ``await_*``) is not slow: it waits
for something that can only come by reading further (a ``Down`` behind
data, a response behind another stream's events). While it waits, the
Inbox *lifts* the bound of its full backlogs (:attr:`Backlog.lifted`), and
sets it again when the receive returns: as in Erlang, where a process in
a selective receive still gets its other messages, memory then grows with
what is read until the receive returns. Without the lift, such an owner
would wait for ever, since TCP itself holds the peer's close behind the
unread bytes.

This module is a leaf: the Inbox and the deliveries both import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

from tether._events import Data, Inform, Response, Trailers, Ws

__all__ = ["Backlog", "weigh", "weight"]


# Events the bound counts with no payload of their own (heads, trailers).
_HEADS = frozenset({Response, Inform, Trailers})


def weight(message: object) -> int | None:
    """Payload bytes of an event the receive bound counts; None for any other message.

    A Text's or Binary's data, a Data's; a control frame's payload is at most
    125 bytes and counts 0, as heads and trailers do. Type checks, not a
    table of functions: this runs for every event told and taken.
    """
    kind = type(message)
    if kind is Ws:
        return len(getattr(message.frame, "data", b""))  # type: ignore[attr-defined]
    if kind is Data:
        return len(message.data)  # type: ignore[attr-defined]
    return 0 if kind in _HEADS else None


def weigh(messages: Iterable[object]) -> tuple[int, int]:
    """How many of ``messages`` the bound counts, and their payload bytes (as ``weight``)."""
    count = size = 0
    for message in messages:
        kind = type(message)
        if kind is Ws:
            count += 1
            size += len(getattr(message.frame, "data", b""))  # type: ignore[attr-defined]
        elif kind is Data:
            count += 1
            size += len(message.data)  # type: ignore[attr-defined]
        elif kind in _HEADS:
            count += 1
    return count, size


def _nothing() -> None:
    pass


class Backlog:
    """What one connection told its owner that the owner has not taken yet.

    Args:
        max_events: events past which reading pauses.
        max_size: payload bytes past which reading pauses (None: no byte bound).
        lock: the lock its state changes under (see the module docstring).

    ``full`` turns True when either bound is passed and False once the
    owner has taken enough to be under a quarter of both; ``lifted`` is set
    while the owner waits in a selective receive. :attr:`holds` is what the
    connection's socket reads (any thread; plain attributes).
    """

    __slots__ = (
        "_low_events",
        "_low_size",
        "events",
        "full",
        "lifted",
        "lock",
        "max_events",
        "max_size",
        "on_change",
        "size",
    )

    def __init__(
        self, max_events: int, max_size: int | None, lock: AbstractContextManager[Any]
    ) -> None:
        self.max_events = max_events
        self.max_size = max_size
        self._low_events = max_events // 4
        self._low_size = None if max_size is None else max_size // 4
        self.lock = lock
        self.events = 0
        self.size = 0
        self.full = False
        self.lifted = False
        #: Called (the lock held) when ``full`` turns False or ``lifted``
        #: changes: the connection asks its I/O thread to look at the bound
        #: again. Set by the connection actor.
        self.on_change: Callable[[], None] = _nothing

    @property
    def holds(self) -> bool:
        """Whether the connection must not read now (any thread)."""
        return self.full and not self.lifted

    def __repr__(self) -> str:
        state = "full" if self.full else "open"
        return f"<Backlog {state}: {self.events}/{self.max_events} events, {self.size} bytes>"

    def told(self, messages: Iterable[object]) -> bool:
        """``messages`` were told (the lock held): those it counts count. True if now full."""
        count, size = weigh(messages)
        if not count:
            return False
        self.events += count
        self.size += size
        if not self.full and (
            self.events > self.max_events
            or (self.max_size is not None and self.size > self.max_size)
        ):
            self.full = True
            return True
        return False

    def taken(self, message: object) -> bool:
        """``message`` was taken (the lock held): ``take(weight(message))`` if it counts.

        True if no longer full. One call where there were three: this runs
        for every event taken (``weight`` and ``take``, inline).
        """
        kind = type(message)
        if kind is Ws:
            size = len(getattr(message.frame, "data", b""))  # type: ignore[attr-defined]
        elif kind is Data:
            size = len(message.data)  # type: ignore[attr-defined]
        elif kind in _HEADS:
            size = 0
        else:
            return False
        self.events -= 1
        self.size -= size
        if self.full and self.events <= self._low_events:
            return self._maybe_open()
        return False

    def _maybe_open(self) -> bool:
        if self._low_size is None or self.size <= self._low_size:
            self.full = False
            self.on_change()
            return True
        return False

    def take(self, size: int) -> bool:
        """One event of ``size`` payload bytes was taken (the lock held).

        Returns True if it is no longer full (``on_change`` was called).
        """
        self.events -= 1
        self.size -= size
        if self.full and self.events <= self._low_events:
            return self._maybe_open()
        return False
