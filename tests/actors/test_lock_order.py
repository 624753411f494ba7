"""The lock-order check (tether/_locks.py): off, plain locks; on, a wrong order raises.

The order itself is the table "Lock order" in docs/design.md; every test
of tests/actors and tests/gun runs with the check on (the autouse
``_lock_order`` fixture), so a change that takes tether's locks in the
wrong order fails them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import tether
from tether import _locks
from tether._locks import LockOrderError, Rank, check_lock_order, new_lock, new_rlock
from tether.actors._ioloop import Watch


@pytest.fixture
def watch() -> Iterator[Watch]:
    """A socket's Watch (not handed to a loop: only its lock is used here)."""
    a, b = socket.socketpair()
    with a, b:
        yield Watch(a, lambda data: None, None)


def test_a_watch_taken_while_an_inbox_is_held_raises_naming_both(watch: Watch) -> None:
    # The rule _lending.py relies on: a watch's lock is never taken with the
    # Inbox's held (the I/O thread takes them the other way round).
    inbox = tether.Inbox()
    with inbox._lock, pytest.raises(LockOrderError) as raised:
        watch.give_back()
    message = str(raised.value)
    assert "WATCH" in message, message
    assert "INBOX" in message, message
    assert _locks.violations() == [message]  # also kept, for a thread nobody watches
    # Nothing was taken: the watch's lock is free for the next thread.
    assert watch._lock.acquire(timeout=1.0)
    watch._lock.release()


def test_the_order_of_the_table_is_allowed(watch: Watch) -> None:
    inbox = tether.Inbox()
    with watch._lock, inbox._lock, watch._lock:  # reentrant: the same lock again
        inbox.tell("x")
    assert inbox.receive(timeout=1.0) == "x"
    assert _locks.violations() == []


def test_a_wait_lets_go_of_every_level_of_a_reentrant_lock() -> None:
    # Condition.wait on a checked RLock held twice: another thread takes the
    # lock meanwhile (it would block forever if one level stayed held), and
    # the waiter holds both levels again after it.
    cond = threading.Condition(new_rlock(Rank.INBOX))
    told = threading.Event()

    def tell() -> None:
        with cond:
            told.set()
            cond.notify()

    teller = threading.Thread(target=tell)
    with cond, cond:
        teller.start()
        assert cond.wait_for(told.is_set, timeout=5.0)
        later = new_lock(Rank.LOOP)
        with later:  # a higher rank, taken with both levels held: allowed
            pass
    teller.join(5.0)
    assert not teller.is_alive()
    assert _locks.violations() == []


def test_off_the_locks_are_plain_threading_locks() -> None:
    previous = check_lock_order(False)
    try:
        assert type(new_lock(Rank.MAILBOX)) is type(threading.Lock())
        assert type(new_rlock(Rank.WATCH)) is type(threading.RLock())
        assert type(tether.Inbox()._lock) is type(threading.RLock())
    finally:
        check_lock_order(previous)
