"""The timer thread every connection shares: one bad timer must not stop the others.

Each test runs its own real-time ``Scheduler`` (not the process-wide one),
and cancels what is left so that its thread ends (``thread_baseline``).
"""

from __future__ import annotations

import logging
import math
import threading

import pytest

from tether.actors._scheduler import Scheduler

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0


@pytest.mark.parametrize("delay", [math.inf, 1e300, threading.TIMEOUT_MAX * 2])
def test_a_timer_too_far_away_to_wait_on_does_not_stop_the_others(delay: float) -> None:
    scheduler = Scheduler()
    never_ran = threading.Event()
    far = scheduler.call_later(delay, never_ran.set)
    try:
        # The timer thread now waits on ``far``; it must still run the next ones.
        for _ in range(2):
            ran = threading.Event()
            scheduler.call_later(0.01, ran.set)
            assert ran.wait(WAIT)
        assert not never_ran.is_set()
        assert scheduler.pending() == 1
    finally:
        far.cancel()


def test_a_callback_that_raises_is_logged_and_the_next_timers_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken() -> None:
        raise RuntimeError("a broken timer")

    scheduler = Scheduler()
    ran = threading.Event()
    with caplog.at_level(logging.ERROR, logger="tether.scheduler"):
        scheduler.call_later(0.0, broken)
        scheduler.call_later(0.01, ran.set)
        assert ran.wait(WAIT)
    [record] = [r for r in caplog.records if r.name == "tether.scheduler"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


@pytest.mark.parametrize("order", ["earliest first", "latest first"])
def test_the_thread_ends_once_every_timer_is_cancelled(order: str) -> None:
    # Only the cancel of the timer the thread waits for (the earliest) wakes
    # it: cancelled in either order, far-off timers must not keep it alive.
    scheduler = Scheduler()
    timers = [scheduler.call_later(delay, lambda: None) for delay in (1000.0, math.inf, 2000.0)]
    thread = scheduler._thread
    assert thread is not None
    for timer in sorted(timers, key=timers.index, reverse=order == "latest first"):
        timer.cancel()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert scheduler.pending() == 0


def test_the_next_timer_runs_on_time_after_the_earliest_is_cancelled() -> None:
    # The thread is not woken for that cancel (others are left): it wakes at
    # the cancelled deadline, drops it and waits for the next one.
    scheduler = Scheduler()
    cancelled_ran, next_ran = threading.Event(), threading.Event()
    earliest = scheduler.call_later(0.05, cancelled_ran.set)
    scheduler.call_later(0.1, next_ran.set)
    far = scheduler.call_later(1000.0, lambda: None)
    try:
        earliest.cancel()
        assert next_ran.wait(WAIT)
        assert not cancelled_ran.is_set()
        assert scheduler.pending() == 1
    finally:
        far.cancel()
