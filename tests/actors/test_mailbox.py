"""The mailbox that lets a teller run an idle actor: still one message at a time, in order.

Driven through plain pykka actors that use :class:`Mailbox`, so the rules
are checked without a socket in the way: a connection actor's correctness
rests on them (its commands and I/O reports all go through this inbox).
Each rule is checked with the actor thread started by pykka (``eager``)
and started by the mailbox when first needed (``lazy``, as connections do).
"""

from __future__ import annotations

import threading
from typing import Any

import pykka
import pytest

from tether.actors._lazy import LazyThreadingActor
from tether.actors._mailbox import Mailbox, Reraise

WAIT = 5.0


class Recording(pykka.ThreadingActor):
    """Records what it handles, where, and whether two handlings ever overlapped."""

    use_daemon_thread = True

    @staticmethod
    def _create_actor_inbox() -> Mailbox:
        return Mailbox()

    def __init__(self, box: list[Recording]) -> None:
        super().__init__()
        box.append(self)  # the test looks at the actor's state through it
        self.seen: list[tuple[str, int]] = []
        self.threads: list[str] = []
        self.overlaps = 0
        self.failures: list[tuple[str, BaseException]] = []
        self.done = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()
        self.expected = 0
        self._inside = False
        mailbox = self.actor_inbox
        assert isinstance(mailbox, Mailbox)
        mailbox.bind(self._run_inline, self.actor_stopped)

    def _run_inline(self, message: object) -> bool:
        # The recorded messages (tuples) run inline; a Reraise, the rest of
        # pykka's and anything else go to the actor thread.
        if not isinstance(message, tuple):
            return False
        self.on_receive(message)
        return True

    def on_receive(self, message: Any) -> Any:
        if self._inside:
            self.overlaps += 1
        self._inside = True
        try:
            match message:
                case Reraise(error=error):
                    raise error
                case ("boom", _):
                    raise ValueError("boom")
                case ("hold", _):
                    self.holding.set()
                    assert self.release.wait(WAIT)
                case ("ask", _):
                    return threading.current_thread().name
                case (str() as sender, int() as n):
                    self.seen.append((sender, n))
                    self.threads.append(threading.current_thread().name)
                    if len(self.seen) == self.expected:
                        self.done.set()
            return None
        finally:
            self._inside = False

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.failures.append((threading.current_thread().name, exc_value))


class LazyRecording(Recording, LazyThreadingActor):
    """The same, with its thread started only when a message has to wait for it."""


_STATES: dict[str, Recording] = {}


class MailboxTells:
    """An actor's ref whose ``tell`` is the Mailbox's own (what connections use)."""

    def __init__(self, ref: pykka.ActorRef[Any]) -> None:
        self._ref = ref

    def tell(self, message: object) -> None:
        mailbox = self._ref.actor_inbox
        assert isinstance(mailbox, Mailbox)
        mailbox.tell(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ref, name)


@pytest.fixture(
    params=[
        (Recording, "ActorRef.tell"),
        (LazyRecording, "ActorRef.tell"),
        (Recording, "Mailbox.tell"),
        (LazyRecording, "Mailbox.tell"),
    ],
    ids=["eager", "lazy", "eager-mailbox-tell", "lazy-mailbox-tell"],
)
def actor(request: pytest.FixtureRequest) -> Any:
    # Every rule holds for both ways of telling: pykka's ActorRef.tell (an
    # envelope through Mailbox.put) and Mailbox.tell (no envelope unless queued).
    cls, via = request.param
    box: list[Recording] = []
    ref = cls.start(box)
    _STATES[ref.actor_urn] = box[0]
    yield ref if via == "ActorRef.tell" else MailboxTells(ref)
    del _STATES[ref.actor_urn]
    if ref.is_alive():
        ref.stop(timeout=WAIT)


def _actor(ref: Any) -> Recording:
    return _STATES[ref.actor_urn]


def test_concurrent_tellers_keep_their_order_and_never_overlap(actor: Any) -> None:
    # Four threads tell at once: some messages are run by their teller, some
    # queued for the actor thread, some handled by whoever holds the turn.
    # Each thread's messages are handled in the order it told them, and
    # never two at the same time.
    state = _actor(actor)
    senders, count = 4, 500
    state.expected = senders * count
    start = threading.Barrier(senders)

    def send(name: str) -> None:
        start.wait(WAIT)
        for n in range(count):
            actor.tell((name, n))

    threads = [threading.Thread(target=send, args=(f"t{i}",)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert state.done.wait(WAIT)
    assert state.overlaps == 0
    for i in range(senders):
        assert [n for sender, n in state.seen if sender == f"t{i}"] == list(range(count))


def test_an_idle_actor_is_run_by_its_teller(actor: Any) -> None:
    state = _actor(actor)
    state.expected = 1
    actor.ask(("ask", 0), timeout=WAIT)  # the loop runs: on_start is over
    actor.tell(("main", 1))
    assert state.done.is_set()  # already handled when tell returned
    assert state.threads == [threading.current_thread().name]


def test_asks_are_answered_by_the_actor_thread(actor: Any) -> None:
    assert actor.ask(("ask", 0), timeout=WAIT).startswith(f"{actor.actor_class.__name__}-")


def test_a_message_told_behind_a_busy_turn_comes_after_the_one_being_handled(
    actor: Any,
) -> None:
    # The actor thread is busy with an ask; tells made meanwhile queue
    # behind it and are all handled, in order, without anybody being woken
    # twice for them.
    state = _actor(actor)
    state.expected = 100
    future = actor.ask(("ask", 0), block=False)
    for n in range(100):
        actor.tell(("main", n))
    future.get(timeout=WAIT)
    assert state.done.wait(WAIT)
    assert [n for _, n in state.seen] == list(range(100))


def test_a_teller_that_leaves_the_queue_to_the_actor_thread_is_not_overtaken(
    actor: Any,
) -> None:
    # Thread B runs a message inline and is held there while 40 more are
    # queued; released, B handles some of the queue and leaves the rest to
    # the actor thread. What is told right then must wait its turn behind
    # them, though nobody is handling a message at that instant.
    state = _actor(actor)
    state.expected = 60
    actor.ask(("ask", 0), timeout=WAIT)
    holder = threading.Thread(target=actor.tell, args=(("hold", 0),))
    holder.start()
    assert state.holding.wait(WAIT)
    for n in range(40):
        actor.tell(("main", n))
    state.release.set()
    for n in range(40, 60):
        actor.tell(("main", n))
    holder.join(WAIT)
    assert state.done.wait(WAIT)
    assert [n for _, n in state.seen] == list(range(60))
    assert state.overlaps == 0


def test_a_crash_in_a_message_run_by_its_teller_fails_the_actor_on_its_own_thread(
    actor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The teller's call returns normally; pykka's failure path (on_failure,
    # the actor stops) runs on the actor thread, as for any crash there.
    state = _actor(actor)
    actor.ask(("ask", 0), timeout=WAIT)
    actor.tell(("boom", 0))
    assert actor.actor_stopped.wait(WAIT)
    assert len(state.failures) == 1
    thread, error = state.failures[0]
    assert thread.startswith(f"{actor.actor_class.__name__}-")
    assert isinstance(error, ValueError)
    with pytest.raises(pykka.ActorDeadError):
        actor.tell(("main", 1))
    assert "boom" in caplog.text


def test_stop_is_handled_by_the_actor_thread_after_what_was_told_before(actor: Any) -> None:
    state = _actor(actor)
    state.expected = 50
    for n in range(50):
        actor.tell(("main", n))
    actor.stop(timeout=WAIT)
    assert [n for _, n in state.seen] == list(range(50))
    with pytest.raises(pykka.ActorDeadError):
        actor.tell(("main", 50))


def test_what_the_actor_does_not_accept_is_queued_for_its_thread() -> None:
    class Picky(Recording):
        def __init__(self, box: list[Recording]) -> None:
            super().__init__(box)
            mailbox = self.actor_inbox
            assert isinstance(mailbox, Mailbox)
            mailbox.bind(lambda m: False, self.actor_stopped)

    box: list[Recording] = []
    ref = Picky.start(box)
    try:
        state = box[0]
        state.expected = 1
        ref.tell(("main", 1))
        assert state.done.wait(WAIT)
        assert state.threads[0].startswith("Picky-")
    finally:
        ref.stop(timeout=WAIT)


@pytest.mark.parametrize("ending", ["stop", "crash"])
def test_nothing_runs_once_the_actor_has_stopped_not_even_a_message_that_raced_it(
    actor: Any, ending: str
) -> None:
    # A message that passed tell's check just before the actor stopped is
    # queued, never handled: the stopped actor's loop keeps the turn (the
    # connection actor relies on it, see ConnectionActor._run_inline).
    state = _actor(actor)
    state.expected = 1
    actor.tell(("main", 0))
    assert state.done.wait(WAIT)
    if ending == "stop":
        actor.stop(timeout=WAIT)
    else:
        actor.tell(("boom", 0))
    assert actor.actor_stopped.wait(WAIT)
    mailbox = actor.actor_inbox
    assert isinstance(mailbox, Mailbox)
    for n in range(1, 4):
        mailbox._enter(("main", n), None)  # past tell's check, as if it raced the stop
    assert [n for _, n in state.seen] == [0]
    assert not mailbox.empty()  # queued, for nobody
