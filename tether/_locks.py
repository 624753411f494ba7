"""tether's locks, and a debug mode that checks the order they are taken in.

Every lock of the concurrency core is made here, by :func:`new_lock` or
:func:`new_rlock`, with its :class:`Rank`. A thread may take a lock only
while every lock it already holds ranks lower (the same reentrant lock
again is fine): the lock-order table of ``docs/design.md``, which is what
rules out deadlocks between the I/O thread, a borrower, a teller and the
owner.

Off (the default), the factories return plain ``threading`` locks:
nothing is checked and nothing costs more than before. On
(``TETHER_DEBUG_LOCKS=1`` in the environment when tether is imported, or
:func:`check_lock_order` before the locks are made), each lock is a
:class:`CheckedLock` that keeps a per-thread stack of the locks held and
raises :class:`LockOrderError` naming both locks before a blocking
acquire that breaks the order (before, so that the mistake is an error
and not a deadlock). Violations are also kept (:func:`violations`), for
the test suite to fail on one raised in a thread whose exception nobody
sees (the I/O thread logs and goes on).

Thread-safe: every function and lock; :func:`check_lock_order` affects
the locks made after it.
"""

from __future__ import annotations

import enum
import os
import threading
from typing import Any

__all__ = [
    "CheckedLock",
    "LockOrderError",
    "Rank",
    "check_lock_order",
    "new_lock",
    "new_rlock",
    "violations",
]


class Rank(enum.IntEnum):
    """A lock's place in the order: a thread takes them in increasing rank.

    The values are the table of ``docs/design.md`` ("Lock order"); gaps
    leave room for a lock between two others.
    """

    WATCH = 10  # a socket's Watch: every read and its report (_ioloop.py)
    TRANSPORT = 20  # a connection's socket and its closing (_transport.py)
    HANDLE = 30  # a Connection handle: its actor's generations (_handle.py)
    INBOX = 40  # an owner Inbox, its Lending and the Backlogs counted under it (_inbox.py)
    BACKLOG = 50  # a Backlog with a lock of its own: an owner actor's (_delivery.py)
    MAILBOX = 60  # a connection actor's mailbox: whose turn it is (_mailbox.py)
    SEND_BUFFER = 70  # callers waiting for room in the send buffer (_sendbuffer.py)
    ACTOR_POOL = 75  # a pooled actor's turn, and its pool's queue (_pooled.py)
    SCHEDULER = 80  # the timer thread's queue (_scheduler.py)
    POOL = 85  # a pool's slots: taken in a connection's turn as a stream ends (tether/pool)
    LOOP = 90  # the I/O loop's requests and tickers (_ioloop.py)
    DEFAULT = 100  # making a process-wide default (default_loop, default_scheduler)


class LockOrderError(AssertionError):
    """A thread took a lock while holding one that must be taken after it."""


_checking = os.environ.get("TETHER_DEBUG_LOCKS", "") not in ("", "0")
_violations: list[str] = []
_violations_lock = threading.Lock()
_held = threading.local()  # .stack: the CheckedLocks this thread holds, oldest first


def check_lock_order(on: bool = True) -> bool:
    """Make the locks made from now on checked (``on``) or plain; returns the previous setting."""
    global _checking
    previous, _checking = _checking, on
    return previous


def violations() -> list[str]:
    """The lock-order violations seen so far (their messages), and forget them."""
    with _violations_lock:
        seen = list(_violations)
        _violations.clear()
        return seen


def new_lock(rank: Rank, name: str = "") -> Any:
    """A ``threading.Lock`` for a lock of ``rank`` (checked in the debug mode)."""
    if not _checking:
        return threading.Lock()
    return CheckedLock(threading.Lock(), rank, name)


def new_rlock(rank: Rank, name: str = "") -> Any:
    """A ``threading.RLock`` for a lock of ``rank`` (checked in the debug mode)."""
    if not _checking:
        return threading.RLock()
    return CheckedLock(threading.RLock(), rank, name)


def _stack() -> list[CheckedLock]:
    stack: list[CheckedLock] | None = getattr(_held, "stack", None)
    if stack is None:
        stack = _held.stack = []
    return stack


class CheckedLock:
    """A lock that checks the order it is taken in (the debug mode only).

    Works under ``threading.Condition`` (it has the hooks a Condition
    uses to let go of a reentrant lock entirely while it waits).
    """

    def __init__(self, lock: Any, rank: Rank, name: str) -> None:
        self._lock = lock
        self._reentrant = hasattr(lock, "_is_owned")  # an RLock
        self.rank = rank
        self.name = name or rank.name.lower()

    def __repr__(self) -> str:
        return f"<{self.name} lock ({self.rank.name}, rank {int(self.rank)}) at {id(self):#x}>"

    def _check(self) -> None:
        stack = _stack()
        if self in stack:
            if self._reentrant:
                return  # held already: taking it again cannot block
            self._violation(f"lock order: {self!r} taken twice by the same thread (a deadlock)")
        for held in stack:
            if held.rank >= self.rank:
                self._violation(
                    f"lock order: {self!r} taken while holding {held!r}"
                    f" ({held.rank.name} must not be held when taking {self.rank.name};"
                    " see 'Lock order' in docs/design.md)"
                )

    @staticmethod
    def _violation(message: str) -> None:
        with _violations_lock:
            _violations.append(message)
        raise LockOrderError(message)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking:
            self._check()  # a try-acquire cannot deadlock
        acquired: bool = self._lock.acquire(blocking, timeout)
        if acquired:
            _stack().append(self)
        return acquired

    def release(self) -> None:
        self._lock.release()
        stack = _stack()
        for index in range(len(stack) - 1, -1, -1):  # the latest taking of this lock
            if stack[index] is self:
                del stack[index]
                break

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    def locked(self) -> bool:
        return bool(self._lock.locked()) if hasattr(self._lock, "locked") else self._is_owned()

    # -- what threading.Condition uses ---------------------------------------------

    def _is_owned(self) -> bool:
        if hasattr(self._lock, "_is_owned"):
            return bool(self._lock._is_owned())
        return self in _stack()

    def _release_save(self) -> Any:
        """Let go entirely (a Condition's wait): every level of a reentrant lock."""
        stack = _stack()
        levels = stack.count(self)
        stack[:] = [held for held in stack if held is not self]
        if hasattr(self._lock, "_release_save"):
            return (self._lock._release_save(), levels)
        self._lock.release()
        return (None, levels)

    def _acquire_restore(self, saved: Any) -> None:
        """Take it back after a Condition's wait, as many levels as before."""
        state, levels = saved
        self._check()
        if hasattr(self._lock, "_acquire_restore"):
            self._lock._acquire_restore(state)
        else:
            self._lock.acquire()
        _stack().extend([self] * levels)
