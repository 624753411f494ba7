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
import threading
import time
from collections.abc import Callable

__all__ = ["Scheduler", "TimerHandle", "default_scheduler"]


class TimerHandle:
    """A pending call; :meth:`cancel` stops it from running. Thread-safe."""

    __slots__ = ("_cancelled",)

    def __init__(self) -> None:
        self._cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (no effect if it already ran)."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled


class Scheduler:
    """Runs callbacks at deadlines on one shared thread.

    Args:
        clock: monotonic seconds; ``time.monotonic`` unless a test gives another.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerHandle, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the timer thread after ``delay`` seconds. Thread-safe.

        The callback must be quick and must not raise (it is a ``tell``).
        """
        handle = TimerHandle()
        with self._cond:
            heapq.heappush(self._heap, (self._clock() + max(delay, 0.0), next(self._seq),
                                        handle, callback))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="tether-scheduler")
                self._thread.start()
            self._cond.notify()
        return handle

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        self._thread = None  # a new timer starts a new thread
                        return
                    deadline, _, handle, callback = self._heap[0]
                    wait = deadline - self._clock()
                    if handle.cancelled or wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
            if not handle.cancelled:
                callback()


_default: Scheduler | None = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process-wide scheduler, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default
