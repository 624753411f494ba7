"""Fixtures and test actors for the supervision tests.

The test actors record what happens to them (start, stop, crash) in a
:class:`Journal`, a thread-safe queue the test waits on with a timeout: a
restart is observed as a new ``start`` entry, never guessed with a sleep.
Every supervisor a test starts through :func:`start_sup` is stopped at
teardown, before ``thread_baseline`` checks that no thread is left over.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pykka
import pytest

import tether
from tests.conftest import ConnectionTracker

WAIT = 5.0


class Boom(Exception):
    """What a test actor raises when told ``"crash"``."""


@dataclass(frozen=True, slots=True)
class Note:
    """One thing that happened to a test actor."""

    kind: str  # "start", "stop" or "failure"
    name: str
    urn: str


class Journal:
    """A thread-safe record of test actor lives, in the order they happened."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Note] = queue.Queue()
        self._lock = threading.Lock()
        self._all: list[Note] = []

    def note(self, kind: str, name: str, urn: str) -> None:
        with self._lock:
            self._all.append(Note(kind, name, urn))
        self._queue.put(Note(kind, name, urn))

    def next(self, timeout: float = WAIT) -> Note:
        """The next entry not yet taken; fails the test if none comes in time."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no journal entry within {timeout} s")

    def take(self, count: int, timeout: float = WAIT) -> list[tuple[str, str]]:
        """The next ``count`` entries as ``(kind, name)`` pairs."""
        return [(n.kind, n.name) for n in (self.next(timeout) for _ in range(count))]

    def pending(self) -> list[Note]:
        """The entries not taken yet (without waiting)."""
        notes = []
        with contextlib.suppress(queue.Empty):
            while True:
                notes.append(self._queue.get_nowait())
        return notes

    def alive(self, name: str) -> set[str]:
        """URNs of the generations of ``name`` that started and did not end."""
        with self._lock:
            started = {n.urn for n in self._all if n.name == name and n.kind == "start"}
            ended = {n.urn for n in self._all if n.name == name and n.kind != "start"}
        return started - ended

    def starts(self, name: str) -> int:
        with self._lock:
            return sum(1 for n in self._all if n.name == name and n.kind == "start")


class Worker(tether.Supervised):
    """A well-behaved supervised test actor.

    Told ``"crash"`` it raises :class:`Boom` (a crash); told ``"exit"`` it
    stops normally; asked ``"ping"`` it answers ``("pong", its urn)``.
    """

    def __init__(self, journal: Journal, name: str) -> None:
        super().__init__()
        self.journal = journal
        self.name = name

    def on_start(self) -> None:
        self.journal.note("start", self.name, self.actor_urn)

    def on_stop(self) -> None:
        self.journal.note("stop", self.name, self.actor_urn)
        super().on_stop()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.journal.note("failure", self.name, self.actor_urn)
        super().on_failure(exc_type, exc_value, traceback)

    def on_receive(self, message: Any) -> Any:
        if message == "crash":
            raise Boom(f"{self.name} was told to crash")
        if message == "exit":
            self.stop()
            return None
        if message == "ping":
            return ("pong", self.actor_urn)
        return super().on_receive(message)


def worker(journal: Journal, name: str) -> Callable[[], pykka.ActorRef[Any]]:
    """A ChildSpec start function for a :class:`Worker` called ``name``."""

    def start() -> pykka.ActorRef[Any]:
        return Worker.start(journal, name)

    return start


def spec(
    journal: Journal, name: str, restart: tether.supervision.Restart = "permanent"
) -> tether.ChildSpec:
    """A ChildSpec for a :class:`Worker` whose id is its name."""
    return tether.ChildSpec(id=name, start=worker(journal, name), restart=restart)


def ping(ref: pykka.ActorRef[Any] | None) -> tuple[str, str]:
    """Ask a test actor for its urn (proves it processes messages)."""
    assert ref is not None
    return cast("tuple[str, str]", ref.ask("ping", timeout=WAIT))


def child(sup: tether.Supervisor, child_id: str) -> tether.supervision.ChildInfo:
    """The ``which_children`` row of ``child_id`` (fails if there is none)."""
    rows = [c for c in sup.which_children() if c.id == child_id]
    assert rows, f"{child_id!r} is not a child of {sup!r}"
    return rows[0]


def eventually(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout`` seconds.

    Only for state that announces nothing (what a supervisor did with a
    report it was told); everything else is awaited on an event.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition still false after {timeout} s")
        time.sleep(0.005)


def final_error(conn: tether.Connection, *, last: bool = True) -> tether.Error:
    """Wait until the connection has stopped; return its final connection-wide ``Error``.

    With ``last``, it must also be the only event left in the owner's inbox
    (take the others first).
    """
    assert conn.wait_stopped(WAIT)
    assert conn.inbox is not None
    event = conn.inbox.receive(
        timeout=WAIT, match=lambda m: isinstance(m, tether.Error) and m.stream is None
    )
    if last:
        assert conn.inbox.flush() == []  # nothing after it
    assert isinstance(event, tether.Error)
    assert event.conn is conn
    return event


@pytest.fixture
def journal() -> Journal:
    return Journal()


StartSup = Callable[..., tether.Supervisor]


@pytest.fixture
def start_sup(open_conn: ConnectionTracker) -> Iterator[StartSup]:
    """``tether.Supervisor.start(...)``; every supervisor started is stopped at teardown.

    Depends on ``open_conn`` (hence ``thread_baseline``): supervisors stop
    first, then connections are closed, then the thread count is checked.
    """
    started: list[tether.Supervisor] = []

    def start(*args: Any, **kwargs: Any) -> tether.Supervisor:
        sup = tether.Supervisor.start(*args, **kwargs)
        started.append(sup)
        return sup

    yield start
    for sup in reversed(started):
        sup.stop(timeout=WAIT)
        assert not sup.is_alive()
