"""A virtual clock for tether's timer scheduler, so tests never wait out real delays.

Retry delays (5 s by default), closing timeouts (15 s), keepalive pings and
the owner check (every 2 s) all run on :class:`tether.actors._scheduler.Scheduler`.
With a :class:`FakeClock` its time stands still until the test calls
:meth:`FakeClock.advance`::

    with use_fake_clock() as fake:
        conn = tether.open(host, port)
        ...                                  # the connection is lost
        assert fake.scheduler.wait_pending(1, timeout=5.0)  # the retry timer is set
        fake.clock.advance(5.0)              # the retry happens now
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from tether.actors._scheduler import Scheduler, set_default_scheduler

__all__ = ["FakeClock", "FakeTime", "use_fake_clock"]

_ADVANCE_TIMEOUT = 5.0


class FakeClock:
    """Virtual monotonic seconds for a :class:`~tether.actors._scheduler.Scheduler`.

    ``Scheduler(FakeClock())`` attaches itself to the clock; from then on its
    timers fire only when :meth:`advance` moves the time past their deadline.
    Thread-safe.

    Args:
        start: the initial time, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._now = float(start)
        self._schedulers: list[Scheduler] = []

    def __repr__(self) -> str:
        return f"<tether.testing.FakeClock at {self()} s>"

    def __call__(self) -> float:
        """The current virtual time, in seconds."""
        with self._lock:
            return self._now

    def attach(self, scheduler: Scheduler) -> None:
        """Remember ``scheduler``, to wake it whenever the time moves.

        ``Scheduler(clock)`` calls this itself.
        """
        with self._lock:
            if scheduler not in self._schedulers:
                self._schedulers.append(scheduler)

    def advance(self, seconds: float, *, timeout: float = _ADVANCE_TIMEOUT) -> None:
        """Move the time forward and run every timer that is now due.

        Returns once the callback of every timer due by the new time has run
        (on the scheduler's thread, in deadline order). For tether's timers
        the callback *tells* the connection actor; a test that needs the actor
        to have handled that message can then ask it something (e.g.
        ``conn.info()``), which the actor answers only after what it was told
        before.

        Call it from a test thread, never from a timer callback.

        Args:
            seconds: how far to move, ``>= 0``.
            timeout: how long to wait for the due callbacks to run.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
            TimeoutError: a scheduler did not run its due timers in time.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a clock only moves forward: cannot advance by {seconds!r}")
        with self._lock:
            self._now += seconds
            schedulers = list(self._schedulers)
        for scheduler in schedulers:
            # A zero-delay timer set now sorts after every timer due by now
            # (same or earlier deadline, earlier sequence number), and the
            # scheduler runs callbacks one by one: when it has run, they all have.
            ran = threading.Event()
            scheduler.call_later(0.0, ran.set)
            if not ran.wait(timeout):
                raise TimeoutError(f"the scheduler did not run its due timers within {timeout} s")


@dataclass(frozen=True, slots=True)
class FakeTime:
    """What :func:`use_fake_clock` yields: the clock and the scheduler it drives.

    Attributes:
        clock: advance it to make timers fire.
        scheduler: the process-wide scheduler while the block runs; its
            ``wait_pending(count, timeout)`` waits until timers are set.
    """

    clock: FakeClock
    scheduler: Scheduler

    def advance(self, seconds: float) -> None:
        """Shorthand for ``clock.advance(seconds)``."""
        self.clock.advance(seconds)

    def wait_pending(self, count: int, timeout: float = _ADVANCE_TIMEOUT) -> bool:
        """Shorthand for ``scheduler.wait_pending(count, timeout)``."""
        return self.scheduler.wait_pending(count, timeout)


@contextmanager
def use_fake_clock(start: float = 0.0) -> Iterator[FakeTime]:
    """Make ``Scheduler(FakeClock(start))`` the process-wide scheduler for the block.

    Connections pick the scheduler up each time they set a timer, so the
    timers set inside the block run on virtual time. The previous scheduler
    is restored on exit; timers still pending on the virtual one never fire
    (connections cancel theirs when they close).
    """
    clock = FakeClock(start)
    scheduler = Scheduler(clock)
    previous = set_default_scheduler(scheduler)
    try:
        yield FakeTime(clock, scheduler)
    finally:
        set_default_scheduler(previous)
