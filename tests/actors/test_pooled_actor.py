"""tether.PooledOwnerActor: pykka actors run by a few shared threads (tether.ActorPool).

What any owner actor does (events in order, owner monitoring, the receive
bound, a stop that does not wait behind a backlog) is checked with the
other owner actors in ``test_owner_class.py``. Here: many owners on few
threads against a real aiohttp server on 127.0.0.1, and pykka's contract
on a pool (on_start first, ask, proxies, failures, stop, one message at a
time, order), fairness between actors, and a handler that blocks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import pykka
import pytest

import tether
from tests.interop.aiohttp_server import AiohttpServer

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
StartActor = Callable[..., pykka.ActorRef[Any]]


@pytest.fixture
def pool() -> tether.ActorPool:
    """A pool of 2 threads that exit soon after the test (thread_baseline)."""
    return tether.ActorPool(2, turn=4, idle=0.1, name="test-pool")


def on(pool: tether.ActorPool, body: type) -> type[tether.PooledOwnerActor]:
    """``body`` as a PooledOwnerActor run by ``pool``."""
    return type(body.__name__, (body, tether.PooledOwnerActor), {"actor_pool": pool})


class Echoing:
    """Opens a Websocket in on_start, echoes ``count`` texts, reports to ``seen``, stops."""

    actor_ref: Any
    stop: Any

    def __init__(self, port: int, count: int, seen: queue.Queue[Any]) -> None:
        super().__init__()
        self.port, self.count, self.seen = port, count, seen
        self.got: list[str] = []

    def on_start(self) -> None:
        self.conn = tether.open("127.0.0.1", self.port, owner=self.actor_ref, retry=0)

    def on_receive(self, message: Any) -> None:
        match message:
            case tether.Up():
                self.conn.ws_upgrade("/websocket")
            case tether.Upgrade():
                self.conn.ws_send(tether.Text("0"))
            case tether.Ws(frame=tether.Text(data=text)):
                self.got.append(text)
                if len(self.got) < self.count:
                    self.conn.ws_send(tether.Text(str(len(self.got))))
                else:
                    self.conn.shutdown()
            case tether.Ws(frame=tether.Close()):
                pass  # the server's answer to the shutdown
            case tether.Down():
                self.seen.put((self.got, threading.current_thread().name))
                self.stop()
            case _:
                self.seen.put((message, threading.current_thread().name))


def test_sixty_owner_actors_on_two_threads_each_echo_in_order(
    pool: tether.ActorPool, aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    refs = [start_actor(on(pool, Echoing), aiohttp_server.port, 5, seen) for _ in range(60)]
    results = [seen.get(timeout=WAIT) for _ in refs]
    assert [got for got, _ in results] == [["0", "1", "2", "3", "4"]] * 60
    assert {name for _, name in results} <= {"test-pool-1", "test-pool-2"}
    # No thread per actor (a pykka actor's would be named after its class): the pool's 2.
    assert pool.running <= 2
    assert not [t.name for t in threading.enumerate() if t.name.startswith("Echoing")]
    for ref in refs:
        assert ref.actor_stopped.wait(WAIT)


class Recorder:
    """Records what it handles; answers asks; fails on "fail", blocks on an Event."""

    def __init__(self, log: list[Any], name: str = "") -> None:
        super().__init__()
        self.log, self.name = log, name
        self.inside = 0

    def on_start(self) -> None:
        self.log.append((self.name, "started"))

    def on_receive(self, message: Any) -> Any:
        self.inside += 1
        try:
            assert self.inside == 1, "two messages handled at once"
            match message:
                case "fail":
                    raise RuntimeError("asked to fail")
                case threading.Event() as gate:
                    assert gate.wait(WAIT)
                case _:
                    self.log.append((self.name, message))
            return ("handled", message)
        finally:
            self.inside -= 1

    def twice(self, value: int) -> int:
        return 2 * value

    def on_stop(self) -> None:
        self.log.append((self.name, "stopped"))

    def on_failure(self, *exc_info: Any) -> None:
        self.log.append((self.name, "failed"))


def test_pykka_s_contract_holds_on_a_pool(pool: tether.ActorPool, start_actor: StartActor) -> None:
    log: list[Any] = []
    ref = start_actor(on(pool, Recorder), log, "a")
    ref.tell("told before any ask")
    assert ref.ask("asked", timeout=WAIT) == ("handled", "asked")
    assert ref.proxy().twice(21).get(timeout=WAIT) == 42
    ref.stop(timeout=WAIT)
    told = ["started", "told before any ask", "asked", "stopped"]
    assert log == [("a", what) for what in told]
    assert not ref.is_alive()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("too late")
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("too late", timeout=WAIT)


def test_a_failing_handler_stops_the_actor_through_on_failure(
    pool: tether.ActorPool, start_actor: StartActor
) -> None:
    log: list[Any] = []
    ref = start_actor(on(pool, Recorder), log, "a")
    with pytest.raises(RuntimeError, match="asked to fail"):
        ref.ask("fail", timeout=WAIT)  # an ask's failure goes back to the asker
    ref.tell("fail")  # a tell's stops the actor
    assert ref.actor_stopped.wait(WAIT)
    assert log[-1] == ("a", "failed")
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("after")


def test_one_message_at_a_time_in_the_order_told_from_many_threads(
    pool: tether.ActorPool, start_actor: StartActor
) -> None:
    log: list[Any] = []
    ref = start_actor(on(pool, Recorder), log)

    def teller(n: int) -> None:
        for i in range(200):
            ref.tell((n, i))

    tellers = [threading.Thread(target=teller, args=(n,)) for n in range(6)]
    for thread in tellers:
        thread.start()
    for thread in tellers:
        thread.join(WAIT)
    ref.ask("last", timeout=WAIT)  # the Recorder asserts no two handlers overlap
    handled = [message for _, message in log[1:-1]]
    assert len(handled) == 6 * 200
    for n in range(6):
        assert [i for m, i in handled if m == n] == list(range(200))


def test_a_busy_actor_does_not_keep_another_waiting(start_actor: StartActor) -> None:
    # One thread, turns of 4 messages: an actor told 400 messages first
    # lets one told a single message run long before its own last one.
    one = tether.ActorPool(1, turn=4, idle=0.1, name="test-pool")
    log: list[Any] = []
    gate = threading.Event()
    busy = start_actor(on(one, Recorder), log, "busy")
    busy.tell(gate)  # holds the only thread until all is told
    for i in range(400):
        busy.tell(i)
    other = start_actor(on(one, Recorder), log, "other")
    other.tell("hello")
    gate.set()
    busy.ask("done", timeout=WAIT)
    handled = [entry for entry in log if entry[1] != "started"]
    assert handled.index(("other", "hello")) < handled.index(("busy", 399)) - 300


def test_a_blocked_handler_holds_one_thread_and_the_others_go_on(
    pool: tether.ActorPool, start_actor: StartActor
) -> None:
    log: list[Any] = []
    gate = threading.Event()
    blocked = start_actor(on(pool, Recorder), log, "blocked")
    blocked.tell(gate)
    others = [start_actor(on(pool, Recorder), log, f"other{n}") for n in range(5)]
    assert [ref.ask("hi", timeout=WAIT) for ref in others] == [("handled", "hi")] * 5
    assert not gate.is_set()
    gate.set()
    assert blocked.ask("after", timeout=WAIT) == ("handled", "after")


def test_an_on_start_failure_stops_the_actor(
    pool: tether.ActorPool, start_actor: StartActor
) -> None:
    class Failing:
        def on_start(self) -> None:
            raise RuntimeError("cannot start")

    ref = start_actor(on(pool, Failing))
    assert ref.actor_stopped.wait(WAIT)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("anything", timeout=WAIT)


def test_idle_pool_threads_exit_and_come_back(
    pool: tether.ActorPool, start_actor: StartActor
) -> None:
    log: list[Any] = []
    ref = start_actor(on(pool, Recorder), log)
    assert ref.ask("one", timeout=WAIT) == ("handled", "one")
    names = {t.name for t in threading.enumerate()}
    assert names & {"test-pool-1", "test-pool-2"}
    for thread in threading.enumerate():
        if thread.name.startswith("test-pool-"):
            thread.join(WAIT)  # idle 0.1 s: it exits
    assert pool.running == 0
    assert ref.ask("two", timeout=WAIT) == ("handled", "two")  # a new thread runs it


@pytest.mark.parametrize("bad", [{"threads": 0}, {"turn": 0}, {"idle": 0}, {"idle": -1.0}])
def test_an_actor_pool_refuses_bad_sizes(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"threads|turn|idle"):
        tether.ActorPool(**bad)
