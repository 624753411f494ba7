"""tether.Inbox: the owner for plain threads, with Erlang-style selective receive."""

from __future__ import annotations

import math
import threading
import time
from typing import cast

import pytest

import tether

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0


def filled(*messages: object) -> tether.Inbox:
    inbox = tether.Inbox()
    for message in messages:
        inbox.tell(message)
    return inbox


def is_int(message: object) -> bool:
    return isinstance(message, int)


def test_receive_returns_messages_oldest_first() -> None:
    inbox = filled("a", "b", "c")
    assert [inbox.receive(timeout=WAIT) for _ in range(3)] == ["a", "b", "c"]
    assert len(inbox) == 0


def test_selective_receive_leaves_the_others_in_order() -> None:
    inbox = filled("a", 1, "b", 2, "c")
    assert inbox.receive(timeout=WAIT, match=is_int) == 1
    assert inbox.receive(timeout=WAIT, match=is_int) == 2
    assert [inbox.receive(timeout=WAIT) for _ in range(3)] == ["a", "b", "c"]


def test_receive_timeout_raises_receive_timeout() -> None:
    inbox = filled("not this one")
    with pytest.raises(tether.ReceiveTimeout):
        inbox.receive(timeout=0.05, match=is_int)
    with pytest.raises(TimeoutError):  # the contract: a TimeoutError too
        inbox.receive(timeout=0.05, match=is_int)
    assert inbox.receive(timeout=WAIT) == "not this one"  # left alone


def test_receive_waits_for_a_later_tell() -> None:
    inbox = tether.Inbox()
    teller = threading.Thread(target=inbox.tell, args=("late",))
    teller.start()
    assert inbox.receive(timeout=WAIT) == "late"
    teller.join(WAIT)


@pytest.mark.parametrize("timeout", [math.inf, 1e300], ids=["inf", "1e300"])
def test_receive_with_an_infinite_timeout_waits_without_limit(timeout: float) -> None:
    inbox = tether.Inbox()
    # Told from another thread a little later, so that the receive waits for it.
    teller = threading.Timer(0.05, inbox.tell, args=("late",))
    teller.start()
    try:
        assert inbox.receive(timeout=timeout) == "late"
    finally:
        teller.cancel()
        teller.join(WAIT)


def test_flush_without_match_empties_the_inbox() -> None:
    inbox = filled("a", 1, "b")
    assert inbox.flush() == ["a", 1, "b"]
    assert len(inbox) == 0


def test_flush_with_match_keeps_the_others_in_order() -> None:
    inbox = filled("a", 1, "b", 2)
    assert inbox.flush(is_int) == [1, 2]
    assert inbox.flush() == ["a", "b"]


def test_closed_inbox_refuses_tell_but_keeps_its_messages() -> None:
    inbox = filled("kept")
    inbox.close()
    assert inbox.closed
    with pytest.raises(tether.InboxClosedError):
        inbox.tell("refused")
    assert inbox.receive(timeout=WAIT) == "kept"
    with pytest.raises(tether.InboxClosedError):
        inbox.receive(timeout=WAIT)


def test_close_wakes_a_blocked_receive() -> None:
    inbox = filled("other")
    scanning = threading.Event()
    outcome: list[BaseException] = []

    def only_ints(message: object) -> bool:
        scanning.set()  # the receiver holds the lock now and will wait next
        return is_int(message)

    def receiver() -> None:
        try:
            inbox.receive(timeout=30, match=only_ints)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=receiver)
    thread.start()
    assert scanning.wait(WAIT)
    started = time.monotonic()
    inbox.close()  # takes the lock only once the receiver is waiting
    thread.join(WAIT)
    assert not thread.is_alive()
    assert time.monotonic() - started < WAIT  # woken, not timed out after 30 s
    assert len(outcome) == 1
    assert isinstance(outcome[0], tether.InboxClosedError)


def test_concurrent_tells_lose_nothing_and_keep_each_senders_order() -> None:
    senders, per_sender = 8, 500
    inbox = tether.Inbox()
    start = threading.Barrier(senders)

    def send(sender: int) -> None:
        start.wait(WAIT)
        for n in range(per_sender):
            inbox.tell((sender, n))

    threads = [threading.Thread(target=send, args=(s,)) for s in range(senders)]
    for thread in threads:
        thread.start()
    received = cast(
        "list[tuple[int, int]]", [inbox.receive(timeout=WAIT) for _ in range(senders * per_sender)]
    )
    for thread in threads:
        thread.join(WAIT)
    assert len(inbox) == 0
    for sender in range(senders):
        assert [n for s, n in received if s == sender] == list(range(per_sender))


def test_concurrent_selective_receivers_each_get_their_own() -> None:
    receivers, per_receiver = 4, 200
    inbox = tether.Inbox()
    got: dict[int, list[int]] = {}

    def receive(me: int) -> None:
        def mine(message: object) -> bool:
            return cast("tuple[int, int]", message)[0] == me

        got[me] = [
            cast("tuple[int, int]", inbox.receive(timeout=WAIT, match=mine))[1]
            for _ in range(per_receiver)
        ]

    threads = [threading.Thread(target=receive, args=(r,)) for r in range(receivers)]
    for thread in threads:
        thread.start()
    for n in range(per_receiver):
        for r in range(receivers):
            inbox.tell((r, n))
    for thread in threads:
        thread.join(WAIT)
    assert got == {r: list(range(per_receiver)) for r in range(receivers)}


def test_tell_all_adds_in_order_and_wakes_a_receiver_waiting_for_the_last() -> None:
    inbox = tether.Inbox()
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(inbox.receive(5.0, lambda m: m == 3)))
    waiter.start()
    inbox.tell_all([1, 2, 3])
    waiter.join(5.0)
    assert got == [3]
    assert inbox.flush() == [1, 2]


def test_tell_all_to_a_closed_inbox_raises_and_adds_nothing() -> None:
    inbox = tether.Inbox()
    inbox.close()
    with pytest.raises(tether.InboxClosedError):
        inbox.tell_all([1, 2])
    assert len(inbox) == 0


@pytest.mark.parametrize("bad", [-1e-6, float("nan"), float("inf")])
def test_busy_poll_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="busy_poll"):
        tether.Inbox(busy_poll=bad)


@pytest.mark.parametrize("bad", ["50e-6", True, None])
def test_busy_poll_must_be_a_number(bad: object) -> None:
    with pytest.raises(TypeError, match="busy_poll"):
        tether.Inbox(busy_poll=bad)  # type: ignore[arg-type]
