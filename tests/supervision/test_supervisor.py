"""Supervisors as their users see them: restart types, strategies, intensity, trees, bad input.

Every test drives a real ``tether.Supervisor`` through its public API with
small pykka test actors (see ``conftest.py``) that crash when told
``"crash"`` and write each start, stop and crash to a journal the test waits
on. A restart is observed, never slept for.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from typing import Any

import pykka
import pytest
from pykka.messages import _ActorStop

import tether
from tests.supervision.conftest import (
    WAIT,
    Boom,
    Journal,
    StartSup,
    Worker,
    child,
    eventually,
    ping,
    spec,
    worker,
)

pytestmark = pytest.mark.usefixtures("thread_baseline")


def urn(ref: pykka.ActorRef[Any] | None) -> str | None:
    return None if ref is None else ref.actor_urn


# -- restart types ---------------------------------------------------------------------


def test_a_permanent_child_is_restarted_after_a_crash(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()
    first = sup.start_child(spec(journal, "a"))
    assert journal.take(1) == [("start", "a")]
    assert child(sup, "a").ref is first

    first.tell("crash")

    assert journal.take(2) == [("failure", "a"), ("start", "a")]
    row = child(sup, "a")
    assert row.ref is not None
    assert row.ref.actor_urn != first.actor_urn
    assert row.restarts == 1
    assert row.restart == "permanent"
    assert not first.is_alive()
    assert ping(row.ref) == ("pong", row.ref.actor_urn)  # the new actor works
    assert sup.is_alive()


@pytest.mark.parametrize(
    ("restart", "ending", "restarted"),
    [
        ("permanent", "crash", True),
        ("permanent", "normal", True),
        ("transient", "crash", True),
        ("transient", "normal", False),
        ("temporary", "crash", False),
        ("temporary", "normal", False),
    ],
)
def test_restart_types(
    start_sup: StartSup,
    journal: Journal,
    restart: tether.supervision.Restart,
    ending: str,
    restarted: bool,
) -> None:
    sup = start_sup()
    first = sup.start_child(spec(journal, "a", restart))
    assert journal.take(1) == [("start", "a")]

    if ending == "crash":
        first.tell("crash")
        assert journal.take(1) == [("failure", "a")]
    else:
        assert first.stop(block=True, timeout=WAIT)  # a normal stop from outside
        assert journal.take(1) == [("stop", "a")]

    if restarted:
        assert journal.take(1) == [("start", "a")]
        row = child(sup, "a")
        assert row.restarts == 1
        assert ping(row.ref)[1] != first.actor_urn
    else:
        eventually(lambda: sup.which_children() == [])
        assert journal.pending() == []  # not started again
    assert sup.is_alive()


# -- strategies --------------------------------------------------------------------------


def start_abc(sup: tether.Supervisor, journal: Journal) -> dict[str, pykka.ActorRef[Any]]:
    refs = {name: sup.start_child(spec(journal, name)) for name in "abc"}
    assert journal.take(3) == [("start", "a"), ("start", "b"), ("start", "c")]
    return refs


def test_one_for_all_restarts_every_child_after_stopping_the_others_newest_first(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup("one_for_all")
    before = start_abc(sup, journal)

    before["b"].tell("crash")

    assert journal.take(6) == [
        ("failure", "b"),
        ("stop", "c"),  # the others stop in reverse start order...
        ("stop", "a"),
        ("start", "a"),  # ...then all start again in start order
        ("start", "b"),
        ("start", "c"),
    ]
    rows = sup.which_children()
    assert [r.id for r in rows] == ["a", "b", "c"]
    for row in rows:
        assert row.restarts == 1
        assert ping(row.ref)[1] != before[row.id].actor_urn
        assert not before[row.id].is_alive()
    # The stops the supervisor caused were not taken for crashes.
    assert journal.pending() == []


def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup("rest_for_one")
    before = start_abc(sup, journal)

    before["b"].tell("crash")

    assert journal.take(4) == [("failure", "b"), ("stop", "c"), ("start", "b"), ("start", "c")]
    rows = {r.id: r for r in sup.which_children()}
    assert rows["a"].ref is before["a"]  # untouched
    assert rows["a"].restarts == 0
    assert ping(rows["a"].ref) == ("pong", before["a"].actor_urn)
    for name in "bc":
        assert rows[name].restarts == 1
        assert ping(rows[name].ref)[1] != before[name].actor_urn
    assert journal.pending() == []


def test_one_for_one_leaves_the_siblings_alone(start_sup: StartSup, journal: Journal) -> None:
    sup = start_sup("one_for_one")
    before = start_abc(sup, journal)

    before["b"].tell("crash")

    assert journal.take(2) == [("failure", "b"), ("start", "b")]
    rows = {r.id: r for r in sup.which_children()}
    assert rows["a"].ref is before["a"]
    assert rows["c"].ref is before["c"]
    assert rows["b"].restarts == 1
    assert journal.pending() == []


# -- intensity ---------------------------------------------------------------------------


def test_too_many_restarts_make_the_supervisor_stop_its_children_and_give_up(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup(max_restarts=2, period=10)
    sup.start_child(spec(journal, "a"))
    sibling = sup.start_child(spec(journal, "b"))
    assert journal.take(2) == [("start", "a"), ("start", "b")]

    for _ in range(2):  # two restarts are allowed
        child(sup, "a").ref.tell("crash")  # type: ignore[union-attr]
        assert journal.take(2) == [("failure", "a"), ("start", "a")]
    last = child(sup, "a").ref
    assert last is not None
    last.tell("crash")  # the third within 10 s is one too many

    assert journal.take(2) == [("failure", "a"), ("stop", "b")]
    assert sup.actor_ref.actor_stopped.wait(WAIT)
    assert not sup.is_alive()
    assert not last.is_alive()
    assert not sibling.is_alive()
    assert journal.pending() == []  # nothing was restarted
    with pytest.raises(tether.SupervisorStopped):
        sup.which_children()


def test_restarts_older_than_the_period_do_not_count(
    start_sup: StartSup, journal: Journal
) -> None:
    now = [100.0]
    sup = start_sup(max_restarts=1, period=5, clock=lambda: now[0])
    sup.start_child(spec(journal, "a"))
    assert journal.take(1) == [("start", "a")]

    child(sup, "a").ref.tell("crash")  # type: ignore[union-attr]
    assert journal.take(2) == [("failure", "a"), ("start", "a")]
    now[0] += 6  # the first restart has left the window
    child(sup, "a").ref.tell("crash")  # type: ignore[union-attr]
    assert journal.take(2) == [("failure", "a"), ("start", "a")]
    assert child(sup, "a").restarts == 2
    assert sup.is_alive()

    now[0] += 1  # two restarts within 5 s: one too many
    child(sup, "a").ref.tell("crash")  # type: ignore[union-attr]
    assert sup.actor_ref.actor_stopped.wait(WAIT)
    assert not sup.is_alive()


# -- trees -------------------------------------------------------------------------------


def test_a_nested_supervisor_that_gives_up_is_dropped_by_its_parent(
    start_sup: StartSup, journal: Journal
) -> None:
    parent = start_sup()
    first = parent.start_child(spec(journal, "p1"))
    child_sup = start_sup(max_restarts=0, period=5, parent=parent)
    last = parent.start_child(spec(journal, "p2"))
    leaf = child_sup.start_child(spec(journal, "leaf"))
    assert journal.take(3) == [("start", "p1"), ("start", "p2"), ("start", "leaf")]
    sub_rows = [r for r in parent.which_children() if urn(r.ref) == child_sup.actor_ref.actor_urn]
    assert len(sub_rows) == 1
    assert sub_rows[0].restart == "temporary"

    leaf.tell("crash")  # max_restarts=0: the child supervisor gives up at once

    assert journal.take(1) == [("failure", "leaf")]
    assert child_sup.actor_ref.actor_stopped.wait(WAIT)
    assert not child_sup.is_alive()
    eventually(lambda: [r.id for r in parent.which_children()] == ["p1", "p2"])
    assert parent.is_alive()
    rows = {r.id: r for r in parent.which_children()}
    assert rows["p1"].ref is first
    assert rows["p2"].ref is last
    assert rows["p1"].restarts == rows["p2"].restarts == 0
    assert journal.pending() == []


def test_a_nested_supervisor_stops_with_its_parent_in_reverse_start_order(
    start_sup: StartSup, journal: Journal
) -> None:
    parent = start_sup()
    parent.start_child(spec(journal, "p1"))
    child_sup = start_sup(parent=parent)
    child_sup.start_child(spec(journal, "leaf1"))
    child_sup.start_child(spec(journal, "leaf2"))
    parent.start_child(spec(journal, "p2"))
    assert len(journal.take(4)) == 4

    assert parent.stop(timeout=WAIT)

    assert journal.take(4) == [
        ("stop", "p2"),
        ("stop", "leaf2"),
        ("stop", "leaf1"),
        ("stop", "p1"),
    ]
    assert not child_sup.is_alive()
    assert not parent.stop()  # already stopped


def test_a_sub_tree_built_by_a_child_spec_is_restarted_when_it_gives_up(
    start_sup: StartSup, journal: Journal
) -> None:
    subs: queue.Queue[tether.Supervisor] = queue.Queue()

    def start_subtree() -> pykka.ActorRef[Any]:
        sub = tether.Supervisor.start(max_restarts=0, period=5)
        sub.start_child(spec(journal, "leaf"))
        subs.put(sub)
        return sub.actor_ref

    parent = start_sup()
    parent.start_child(tether.ChildSpec(id="subtree", start=start_subtree))
    sibling = parent.start_child(spec(journal, "sibling"))
    assert journal.take(2) == [("start", "leaf"), ("start", "sibling")]
    sub1 = subs.get(timeout=WAIT)

    child(sub1, "leaf").ref.tell("crash")  # type: ignore[union-attr]

    assert journal.take(2) == [("failure", "leaf"), ("start", "leaf")]
    sub2 = subs.get(timeout=WAIT)
    assert sub1.actor_ref.actor_stopped.wait(WAIT)
    assert not sub1.is_alive()
    assert sub2.is_alive()
    row = child(parent, "subtree")
    assert urn(row.ref) == sub2.actor_ref.actor_urn
    assert row.restarts == 1
    assert ping(child(sub2, "leaf").ref)[0] == "pong"
    assert child(parent, "sibling").ref is sibling
    assert parent.is_alive()


# -- how exits are noticed ---------------------------------------------------------------


class Plain(pykka.ThreadingActor):
    """A pykka actor that is not a tether.Supervised: it reports nothing."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def on_start(self) -> None:
        self.journal.note("start", "plain", self.actor_urn)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise Boom("plain was told to crash")
        return ("pong", self.actor_urn)


def test_a_crash_of_a_plain_pykka_actor_is_noticed_and_restarted(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()
    first = sup.start_child(tether.ChildSpec(id="plain", start=lambda: Plain.start(journal)))
    assert journal.take(1) == [("start", "plain")]

    first.tell("crash")

    assert journal.take(1) == [("start", "plain")]
    row = child(sup, "plain")
    assert row.restarts == 1
    assert ping(row.ref) == ("pong", row.ref.actor_urn)  # type: ignore[union-attr]
    assert not first.is_alive()


class Forgetful(tether.Supervised):
    """Overrides on_stop and on_failure without calling super()."""

    def __init__(self, journal: Journal) -> None:
        super().__init__()
        self.journal = journal

    def on_start(self) -> None:
        self.journal.note("start", "forgetful", self.actor_urn)

    def on_stop(self) -> None:
        self.journal.note("stop", "forgetful", self.actor_urn)

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.journal.note("failure", "forgetful", self.actor_urn)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise Boom("forgetful was told to crash")
        return None


def test_a_crash_is_reported_even_if_on_failure_forgets_super(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()
    sup.start_child(tether.ChildSpec(id="f", start=lambda: Forgetful.start(journal)))
    assert journal.take(1) == [("start", "forgetful")]

    child(sup, "f").ref.tell("crash")  # type: ignore[union-attr]

    assert journal.take(2) == [("failure", "forgetful"), ("start", "forgetful")]
    assert child(sup, "f").restarts == 1


def test_a_normal_exit_is_reported_even_if_on_stop_forgets_super(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()
    ref = sup.start_child(
        tether.ChildSpec(id="f", start=lambda: Forgetful.start(journal), restart="transient")
    )
    assert journal.take(1) == [("start", "forgetful")]

    assert ref.stop(block=True, timeout=WAIT)

    assert journal.take(1) == [("stop", "forgetful")]
    # Reported as a normal exit: a transient child is dropped, not restarted.
    eventually(lambda: sup.which_children() == [])
    assert journal.pending() == []


class FailsToStart(tether.Supervised):
    def on_start(self) -> None:
        raise Boom("on_start failed")


def test_a_child_whose_on_start_raises_makes_start_child_raise(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()

    with pytest.raises(RuntimeError, match="on_start") as raised:
        sup.start_child(tether.ChildSpec(id="x", start=FailsToStart.start))
    assert isinstance(raised.value.__cause__, Boom)  # the traceback shows why

    assert sup.is_alive()
    assert sup.which_children() == []
    sup.start_child(spec(journal, "x"))  # the id was not taken by the failed child
    assert journal.take(1) == [("start", "x")]


def test_a_terminated_child_is_not_restarted(start_sup: StartSup, journal: Journal) -> None:
    sup = start_sup()
    first = sup.start_child(spec(journal, "a"))
    assert journal.take(1) == [("start", "a")]

    sup.terminate_child("a")

    assert journal.take(1) == [("stop", "a")]
    assert not first.is_alive()
    assert sup.which_children() == []
    # Its exit report reached the supervisor before this call: it was ignored,
    # also once a new child with the same id exists.
    again = sup.start_child(spec(journal, "a"))
    assert journal.take(1) == [("start", "a")]
    row = child(sup, "a")
    assert row.ref is again
    assert row.restarts == 0
    assert journal.pending() == []


def test_a_restart_that_fails_to_start_is_retried_without_duplicating_siblings(
    start_sup: StartSup, journal: Journal
) -> None:
    calls = [0]

    def start_b() -> pykka.ActorRef[Any]:
        calls[0] += 1
        if calls[0] == 2:  # the first restart of b fails, the next one works
            raise Boom("b cannot start right now")
        return Worker.start(journal, "b")

    sup = start_sup("one_for_all", max_restarts=5, period=10)
    sup.start_child(spec(journal, "a"))
    b = sup.start_child(tether.ChildSpec(id="b", start=start_b))
    sup.start_child(spec(journal, "c"))
    assert len(journal.take(3)) == 3

    b.tell("crash")

    assert journal.take(8) == [
        ("failure", "b"),
        ("stop", "c"),
        ("stop", "a"),
        ("start", "a"),  # then b fails to start: a new round
        ("stop", "a"),
        ("start", "a"),
        ("start", "b"),
        ("start", "c"),
    ]
    rows = sup.which_children()  # answered once the whole restart is done
    assert [r.id for r in rows] == ["a", "b", "c"]
    for row in rows:
        # Exactly one live generation of each child, and it is the listed one.
        assert journal.alive(row.id) == {row.ref.actor_urn}  # type: ignore[union-attr]
        assert ping(row.ref)[0] == "pong"
    assert journal.starts("c") == 2  # started once, restarted once
    assert sup.is_alive()


# -- bad input -----------------------------------------------------------------------------


def test_an_unknown_strategy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="strategy"):
        tether.Supervisor.start("one_for_some")  # type: ignore[arg-type]


def test_an_unknown_restart_type_is_a_value_error(journal: Journal) -> None:
    with pytest.raises(ValueError, match="restart"):
        tether.ChildSpec(id="a", start=worker(journal, "a"), restart="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize("max_restarts", [-1, -10])
def test_a_negative_max_restarts_is_a_value_error(max_restarts: int) -> None:
    with pytest.raises(ValueError, match="max_restarts"):
        tether.Supervisor.start(max_restarts=max_restarts)


def test_infinite_seconds_are_a_value_error(journal: Journal) -> None:
    # Finite, as every seconds option (an Event.wait of inf overflows).
    with pytest.raises(ValueError, match="period must be finite"):
        tether.Supervisor.start(period=math.inf)
    with pytest.raises(ValueError, match="ChildSpec shutdown must be finite"):
        tether.ChildSpec(id="a", start=worker(journal, "a"), shutdown=math.inf)


def test_a_duplicate_child_id_is_a_value_error(start_sup: StartSup, journal: Journal) -> None:
    sup = start_sup()
    first = sup.start_child(spec(journal, "a"))
    assert journal.take(1) == [("start", "a")]

    with pytest.raises(ValueError, match="'a'"):
        sup.start_child(spec(journal, "a"))

    assert sup.is_alive()
    assert journal.pending() == []  # the second one was never started
    assert [(r.id, r.ref) for r in sup.which_children()] == [("a", first)]
    assert ping(first)[0] == "pong"


def test_a_start_function_that_raises_makes_start_child_raise_it(start_sup: StartSup) -> None:
    sup = start_sup()

    def start() -> pykka.ActorRef[Any]:
        raise Boom("no can do")

    with pytest.raises(Boom, match="no can do"):
        sup.start_child(tether.ChildSpec(id="a", start=start))

    assert sup.is_alive()
    assert sup.which_children() == []


def test_a_start_function_returning_no_actor_ref_is_a_type_error(start_sup: StartSup) -> None:
    sup = start_sup()

    with pytest.raises(TypeError, match="ActorRef"):
        sup.start_child(tether.ChildSpec(id="a", start=lambda: "not a ref"))  # type: ignore[arg-type,return-value]

    assert sup.is_alive()
    assert sup.which_children() == []


def test_terminating_an_unknown_child_is_a_key_error(start_sup: StartSup) -> None:
    sup = start_sup()

    with pytest.raises(KeyError, match="nobody"):
        sup.terminate_child("nobody")

    assert sup.is_alive()


# -- stopping ------------------------------------------------------------------------------


def test_stop_ends_every_child_and_leaves_no_thread_behind(
    start_sup: StartSup, journal: Journal
) -> None:
    baseline = set(threading.enumerate())
    sup = start_sup()
    refs = [sup.start_child(spec(journal, name)) for name in ("a", "b")]
    refs.append(sup.start_child(tether.ChildSpec(id="plain", start=lambda: Plain.start(journal))))
    nested = start_sup(parent=sup)
    refs.append(nested.start_child(spec(journal, "leaf")))
    assert len(journal.take(4)) == 4

    assert sup.stop(timeout=WAIT)

    assert journal.take(3) == [("stop", "leaf"), ("stop", "b"), ("stop", "a")]
    assert not sup.is_alive()
    assert not nested.is_alive()
    assert not any(ref.is_alive() for ref in refs)
    deadline = time.monotonic() + WAIT
    for thread in set(threading.enumerate()) - baseline:
        thread.join(max(deadline - time.monotonic(), 0))
    assert [t.name for t in set(threading.enumerate()) - baseline] == []


class _FailsAfterFirstStart(tether.Supervised):
    """Starts once, then every restart fails in on_start."""

    starts = 0

    def on_start(self) -> None:
        type(self).starts += 1
        if type(self).starts > 1:
            raise RuntimeError("cannot start again")

    def on_receive(self, message: Any) -> Any:
        raise RuntimeError("crash")


def test_restarts_that_keep_failing_end_in_giving_up_not_in_a_recursion_error(
    start_sup: StartSup,
) -> None:
    # Each failed restart counts as another crash; 2000 of them must be
    # retried in a loop until the intensity is exceeded.
    sup = start_sup(max_restarts=2000, period=3600)
    ref = sup.start_child(tether.ChildSpec(id="flaky", start=_FailsAfterFirstStart.start))
    ref.tell("crash")
    assert sup.actor_ref.actor_stopped.wait(WAIT * 4)
    assert not sup.is_alive()
    # The first start, then 2000 restarts; the 2001st exceeds the intensity.
    assert _FailsAfterFirstStart.starts == 2001


# -- starting without waiting (start_child_later) ------------------------------------------


class Exits:
    """An ``on_exit`` that records every call (it must come exactly once)."""

    def __init__(self) -> None:
        self.reasons: queue.Queue[BaseException | None] = queue.Queue()

    def __call__(self, reason: BaseException | None) -> None:
        self.reasons.put(reason)

    def only(self) -> BaseException | None:
        """The one reason on_exit was called with (fails if it was not called, or again)."""
        try:
            reason = self.reasons.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"on_exit was not called within {WAIT} s")
        assert self.reasons.empty(), "on_exit was called more than once"
        return reason


class HeldStart:
    """A start function for a :class:`Worker` that waits until ``release`` is set.

    It keeps the supervisor busy starting this child meanwhile.
    """

    def __init__(self, journal: Journal, name: str) -> None:
        self.journal = journal
        self.name = name
        self.release = threading.Event()

    def __call__(self) -> pykka.ActorRef[Any]:
        assert self.release.wait(WAIT)
        return Worker.start(self.journal, self.name)


def test_start_child_later_returns_before_the_child_is_started(
    start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()
    held = HeldStart(journal, "slow")

    assert sup.start_child_later(tether.ChildSpec(id="slow", start=held)) is None
    assert journal.pending() == []  # returned while the supervisor is still starting it
    held.release.set()

    [row] = sup.which_children()  # asked after the start: answered after it
    assert row.id == "slow"
    assert ping(row.ref)[0] == "pong"
    assert journal.take(1) == [("start", "slow")]


def _raises() -> pykka.ActorRef[Any]:
    raise Boom("no can do")


@pytest.mark.parametrize(
    ("start", "error"),
    [
        (_raises, Boom),
        (lambda: "not a ref", TypeError),
        (FailsToStart.start, RuntimeError),  # on_start raised (the cause is Boom)
        (None, ValueError),  # the id is taken
    ],
    ids=["start-raises", "no-actor-ref", "on-start-raises", "duplicate-id"],
)
def test_a_later_start_that_fails_is_reported_to_on_exit_once(
    start: Any, error: type[Exception], start_sup: StartSup, journal: Journal
) -> None:
    sup = start_sup()
    existing = sup.start_child(spec(journal, "a"))
    exits = Exits()

    sup.start_child_later(
        tether.ChildSpec(
            id="a" if start is None else "b", start=start or Worker.start, on_exit=exits
        )
    )

    assert isinstance(exits.only(), error)
    assert sup.is_alive()
    assert [(r.id, r.ref) for r in sup.which_children()] == [("a", existing)]


def test_start_child_later_on_a_stopped_supervisor_raises(start_sup: StartSup) -> None:
    sup = start_sup()
    sup.stop(timeout=WAIT)
    exits = Exits()

    with pytest.raises(tether.SupervisorStopped):
        sup.start_child_later(tether.ChildSpec(id="a", start=_raises, on_exit=exits))

    assert exits.reasons.empty()


def test_later_starts_still_queued_when_the_supervisor_stops_end_with_it(
    start_sup: StartSup, journal: Journal
) -> None:
    # The supervisor is busy starting "a" when a stop and then two more
    # starts are queued: it stops after "a", and "b" and "c" never start.
    sup = start_sup()
    held = HeldStart(journal, "a")

    sup.start_child_later(tether.ChildSpec(id="a", start=held))
    stopper = threading.Thread(target=sup.stop, kwargs={"timeout": WAIT})
    stopper.start()
    mailbox = sup.actor_ref.actor_inbox
    assert mailbox.wait_queued(lambda m: isinstance(m, _ActorStop), WAIT)  # the stop is queued
    exits = {name: Exits() for name in "bc"}
    for name, on_exit in exits.items():
        sup.start_child_later(
            tether.ChildSpec(id=name, start=worker(journal, name), on_exit=on_exit)
        )
    held.release.set()
    stopper.join(WAIT)

    assert not sup.is_alive()
    for on_exit in exits.values():
        reason = on_exit.only()
        assert isinstance(reason, tether.SupervisorStopped)
    assert journal.take(2) == [("start", "a"), ("stop", "a")]
    assert journal.pending() == []  # b and c never started
