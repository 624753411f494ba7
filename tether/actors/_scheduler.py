"""One timer thread for every connection (retry delays, closing timeouts).

``threading.Timer`` would cost a thread per timer; here a single daemon
thread sleeps on a condition until the earliest deadline, runs the callback
(a ``tell``, which never blocks) and goes back to sleep. The thread exits
when no timer is left and starts again with the next one, so an idle
process keeps no extra thread. The clock is injectable for tests.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from tether._locks import Rank, new_lock, new_rlock

__all__ = [
    "Scheduler",
    "TimerHandle",
    "VirtualClock",
    "default_scheduler",
    "set_default_scheduler",
]

log = logging.getLogger("tether.scheduler")


# Cancelled entries the heap keeps before it drops them (when they are half of it).
_PRUNE_AFTER = 64


class TimerHandle:
    """A pending call; :meth:`cancel` stops it from running. Thread-safe."""

    __slots__ = ("_cancelled", "_done", "_scheduler")

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._cancelled = False
        self._done = False

    def cancel(self) -> None:
        """Do not run the callback (no effect if it already ran)."""
        if not self._done:
            self._cancelled = self._done = True
            self._scheduler._on_cancel(self)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled

    @property
    def done(self) -> bool:
        """True once the callback ran or was cancelled."""
        return self._done


class VirtualClock(Protocol):
    """A clock that only moves when told to (``tether.testing.FakeClock``)."""

    def __call__(self) -> float:
        """The current virtual time, in seconds."""
        ...

    def attach(self, scheduler: Scheduler) -> None:
        """Remember ``scheduler``, to :meth:`Scheduler.poke` it when time moves."""
        ...


class Scheduler:
    """Runs callbacks at deadlines on one shared thread.

    Args:
        clock: monotonic seconds; ``time.monotonic`` unless a test gives a
            virtual clock, whose time moves only when the test advances it
            (the scheduler then waits for a poke instead of a timeout).
    """

    def __init__(self, clock: Callable[[], float] | VirtualClock = time.monotonic) -> None:
        self._clock = clock
        self._virtual = hasattr(clock, "attach")
        self._cond = threading.Condition(new_rlock(Rank.SCHEDULER))
        self._heap: list[tuple[float, int, TimerHandle, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        # Cancelled entries stay in the heap until they reach its top (or
        # until they are half of it): removing each one at once would cost
        # a scan of every timer per cancel, with 10,000 connections.
        self._cancelled = 0
        if self._virtual:
            clock.attach(self)  # type: ignore[union-attr]

    def now(self) -> float:
        """The scheduler's clock, in seconds (virtual under a test's fake clock). Thread-safe."""
        return self._clock()

    def poke(self) -> None:
        """Re-check the deadlines now (a virtual clock moved). Thread-safe."""
        with self._cond:
            self._cond.notify_all()

    def _on_cancel(self, handle: TimerHandle) -> None:
        with self._cond:
            self._cancelled += 1
            # The thread waits for the earliest deadline only. It is woken when
            # no live timer is left (to end: an idle process keeps no thread),
            # or to drop the cancelled entries once they are half of the heap;
            # not for every cancel, nor when the earliest one is cancelled and
            # others are left: it wakes at that deadline, finds it cancelled and
            # waits for the next (each cancel of the earliest woke it, once or
            # twice per connection in a fan-out: a cancelled connect deadline,
            # then closing timeout, and the GIL handed to this thread each time).
            heap = self._heap
            if (
                self._virtual
                or self._cancelled >= len(heap)
                or (self._cancelled > _PRUNE_AFTER and self._cancelled * 2 > len(heap))
            ):
                self._cond.notify_all()

    def pending(self) -> int:
        """How many timers wait to run (cancelled ones excluded). Thread-safe."""
        with self._cond:
            return sum(not entry[2].cancelled for entry in self._heap)

    def wait_pending(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` timers are pending; False on timeout.

        For tests on a virtual clock: wait until the connection has
        scheduled its retry, then advance the clock past it.
        """
        with self._cond:
            return self._cond.wait_for(
                lambda: sum(not e[2].cancelled for e in self._heap) >= count, timeout
            )

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the timer thread after ``delay`` seconds. Thread-safe.

        The callback must be quick (it is a ``tell``); one that raises is
        logged (logger ``tether.scheduler``) and the other timers run on.
        A delay of ``math.inf`` never runs.
        """
        handle = TimerHandle(self)
        with self._cond:
            entry = (self._clock() + max(delay, 0.0), next(self._seq), handle, callback)
            heapq.heappush(self._heap, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, daemon=True, name="tether-scheduler"
                )
                self._thread.start()
            # Wake the thread only for a new earliest deadline (it must wait
            # less), not for every timer; a test in wait_pending is always woken.
            if self._virtual or self._heap[0] is entry:
                self._cond.notify_all()
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._cancelled > _PRUNE_AFTER and self._cancelled * 2 > len(self._heap):
                        self._heap = [e for e in self._heap if not e[2].cancelled]
                        heapq.heapify(self._heap)
                        self._cancelled = 0
                    while self._heap and self._heap[0][2].cancelled:
                        heapq.heappop(self._heap)
                        self._cancelled = max(self._cancelled - 1, 0)
                    if not self._heap:
                        self._thread = None  # a new timer starts a new thread
                        return
                    deadline, _, handle, callback = self._heap[0]
                    wait = deadline - self._clock()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        handle._done = True
                        break
                    # Condition.wait overflows past TIMEOUT_MAX (292 years on
                    # Linux): wait in steps, each one re-checks the deadline.
                    self._cond.wait(None if self._virtual else min(wait, threading.TIMEOUT_MAX))
            try:
                callback()
            except Exception:
                # One broken timer must not stop the thread every connection's timers run on.
                log.exception("a timer callback raised")


_default: Scheduler | None = None
_default_lock = new_lock(Rank.DEFAULT)


def default_scheduler() -> Scheduler:
    """The process-wide scheduler, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default


def set_default_scheduler(scheduler: Scheduler | None) -> Scheduler | None:
    """Replace the process-wide scheduler (``None``: a fresh real-time one on next use).

    Returns the previous one. Connections pick the scheduler up each time
    they set a timer. Meant for tests (``tether.testing.FakeClock``).
    """
    global _default
    with _default_lock:
        previous, _default = _default, scheduler
        return previous
