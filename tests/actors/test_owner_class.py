"""tether.OwnerActor: a pykka owner actor whose thread reads its one connection itself.

Each test runs against a real aiohttp server on 127.0.0.1. What holds for
any owner actor is checked for a plain ``pykka.ThreadingActor``,
``tether.OwnerActor`` and ``tether.PooledOwnerActor`` alike (``BASES``):
events in order, owner monitoring, the receive bound, a stop that does
not wait behind a backlog. What only
the OwnerActor does, reading its socket on its own thread, is checked by
which thread reads the socket (``Watch.read`` is the borrower's read).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest

import tether
from tests.actors.test_backpressure import SlowOwner
from tests.conftest import ConnectionTracker
from tests.interop.aiohttp_server import AiohttpServer
from tether.actors._ioloop import Watch
from tether.actors._transport import READ_AHEAD

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
StartActor = Callable[..., pykka.ActorRef[Any]]


class Pooled(tether.PooledOwnerActor):
    """A PooledOwnerActor on a pool of its own, whose threads exit soon after (thread_baseline)."""

    actor_pool = tether.ActorPool(2, idle=0.1, name="test-pool")


BASES = [
    pytest.param(pykka.ThreadingActor, id="plain"),
    pytest.param(tether.OwnerActor, id="owner"),
    pytest.param(Pooled, id="pooled"),
]


def take(seen: queue.Queue[Any]) -> Any:
    return seen.get(timeout=WAIT)


def queued(ref: pykka.ActorRef[Any]) -> int:
    """How many messages wait in an owner actor's mailbox (pykka's queue or tether's)."""
    mailbox: Any = ref.actor_inbox
    if hasattr(mailbox, "qsize"):
        return int(mailbox.qsize())
    return len(getattr(mailbox, "inbox", mailbox))


def assert_handled_by_its_thread(ref: pykka.ActorRef[Any], seen: queue.Queue[Any]) -> None:
    """The actor's messages run on its own thread, or on one of its pool's."""
    thread = ref.ask("thread?", timeout=WAIT)
    assert thread == take(seen)[1]
    if isinstance(ref.actor_inbox, tether.actors._pooled.PooledMailbox):
        names = {t.ident: t.name for t in threading.enumerate()}
        assert names[thread].startswith("test-pool-")


def echoer(base: type[pykka.ThreadingActor]) -> type[pykka.ThreadingActor]:
    """An owner actor that opens its connections in on_start and echoes through them.

    ``paths``: one connection per path (a Websocket upgrade, or a GET for
    "/"). Each Websocket sends ``count`` numbered texts, the next one from
    ``on_receive`` when the previous one's echo arrives. Everything it is
    told goes to ``seen``, with the thread that handled it.
    """

    class Echoer(base):  # type: ignore[valid-type,misc]
        def __init__(
            self, host: str, port: int, paths: list[str], count: int, seen: queue.Queue[Any]
        ) -> None:
            super().__init__()
            self.host, self.port, self.paths = host, port, paths
            self.count, self.seen = count, seen
            self.sent: dict[tether.Connection, int] = {}

        def on_start(self) -> None:
            for path in self.paths:
                conn = tether.open(self.host, self.port, owner=self.actor_ref, retry=0)
                self.sent[conn] = 0
                self.seen.put((conn, path))

        def on_receive(self, message: Any) -> Any:
            match message:
                case "thread?":
                    self.seen.put((message, threading.get_ident()))
                    return threading.get_ident()
                case tether.Up(conn=conn):
                    path = self.paths[list(self.sent).index(conn)]
                    if path == "/":
                        conn.get("/")
                    else:
                        conn.ws_upgrade(path)
                case tether.Upgrade(conn=conn) | tether.Ws(conn=conn, frame=tether.Text()):
                    if self.sent[conn] < self.count:
                        conn.ws_send(tether.Text(str(self.sent[conn])))
                        self.sent[conn] += 1
            self.seen.put((message, threading.get_ident()))
            return None

    return Echoer


@pytest.fixture
def readers(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The threads that read a lent socket (``Watch.read``: only a borrower calls it)."""
    seen: list[int] = []
    read = Watch.read

    def recorded(self: Watch) -> bool:
        seen.append(threading.get_ident())
        return read(self)

    monkeypatch.setattr(Watch, "read", recorded)
    return seen


@pytest.mark.parametrize("base", BASES)
def test_an_owner_actor_gets_every_event_in_order(
    base: type[pykka.ThreadingActor], aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(
        echoer(base), aiohttp_server.host, aiohttp_server.port, ["/", "/websocket"], 50, seen
    )
    (http, _), (ws, _) = take(seen), take(seen)
    events = [take(seen)[0] for _ in range(2 + 2 + 1 + 50)]  # Ups, Response, Data, Upgrade, Ws
    for_http = [e for e in events if e.conn is http]
    assert for_http[0] == tether.Up(http, "http")
    assert isinstance(for_http[1], tether.Response)
    assert for_http[1].status == 200
    assert for_http[2] == tether.Data(http, for_http[1].stream, True, b"hello")
    for_ws = [e for e in events if e.conn is ws]
    assert for_ws[0] == tether.Up(ws, "http")
    assert isinstance(for_ws[1], tether.Upgrade)
    assert [e.frame for e in for_ws[2:]] == [tether.Text(str(n)) for n in range(50)]
    assert_handled_by_its_thread(ref, seen)
    assert seen.empty()


def test_an_owner_actor_with_one_connection_reads_it_on_its_own_thread(
    readers: list[int], aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(
        echoer(tether.OwnerActor),
        aiohttp_server.host,
        aiohttp_server.port,
        ["/websocket"],
        50,
        seen,
    )
    take(seen)
    for _ in range(2 + 50):
        take(seen)
    owner = ref.ask("thread?", timeout=WAIT)
    # Its thread borrowed the socket and read the echoes itself (the I/O
    # thread may have read a few, those that came before it waited).
    assert owner in readers
    assert set(readers) == {owner}


def test_a_plain_owner_actor_is_told_by_the_io_thread(
    readers: list[int], aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    start_actor(
        echoer(pykka.ThreadingActor),
        aiohttp_server.host,
        aiohttp_server.port,
        ["/websocket"],
        20,
        seen,
    )
    for _ in range(1 + 2 + 20):
        take(seen)
    assert readers == []  # nothing lent to a plain actor's thread


def test_an_owner_actor_owning_two_connections_gets_both(
    aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    # Once both are lent, neither is borrowed (the I/O thread reads both);
    # until the second one is, the first may be: no assertion on who reads.
    seen: queue.Queue[Any] = queue.Queue()
    start_actor(
        echoer(tether.OwnerActor),
        aiohttp_server.host,
        aiohttp_server.port,
        ["/websocket", "/websocket"],
        20,
        seen,
    )
    (one, _), (two, _) = take(seen), take(seen)
    events = [take(seen)[0] for _ in range(2 * (2 + 20))]
    for conn in (one, two):
        frames = [e.frame for e in events if isinstance(e, tether.Ws) and e.conn is conn]
        assert frames == [tether.Text(str(n)) for n in range(20)]


def test_a_message_told_to_an_owner_actor_wakes_it_while_it_reads_its_socket(
    aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    # Idle, with its Websocket up: its thread waits in poll on the borrowed
    # socket. An ask must interrupt that wait, not wait for the next frame.
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(
        echoer(tether.OwnerActor),
        aiohttp_server.host,
        aiohttp_server.port,
        ["/websocket"],
        1,
        seen,
    )
    for _ in range(1 + 2 + 1):
        take(seen)
    for _ in range(3):
        assert ref.ask("thread?", timeout=WAIT) == take(seen)[1]


@pytest.mark.parametrize("base", BASES)
def test_the_connection_stops_when_its_owner_actor_stops(
    base: type[pykka.ThreadingActor], aiohttp_server: AiohttpServer, start_actor: StartActor
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(
        echoer(base), aiohttp_server.host, aiohttp_server.port, ["/websocket"], 3, seen
    )
    conn, _ = take(seen)
    for _ in range(2 + 3):
        take(seen)
    ref.stop(timeout=WAIT)
    # The next frame finds the owner gone (or the owner check did, first).
    with contextlib.suppress(tether.NotUpgradedError, tether.ConnectionStoppedError):
        conn.ws_send("anyone there?")
    assert conn.wait_stopped(WAIT)
    assert aiohttp_server.next_ws_end().close_code == 1001  # Gun's owner_down: a graceful close
    assert seen.empty()


class SlowOwnerActor(SlowOwner, tether.OwnerActor):
    """The same, as an OwnerActor."""


class SlowPooledOwner(SlowOwner, Pooled):
    """The same, as a PooledOwnerActor (its handler holds a pool thread while it waits)."""


def _paused(conn: tether.Connection) -> bool:
    return conn.info(timeout=WAIT).reading_paused


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state no event announces (polled, bounded by WAIT)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.002)


@pytest.mark.parametrize(
    "kind", [SlowOwner, SlowOwnerActor, SlowPooledOwner], ids=["plain", "owner", "pooled"]
)
def test_a_slow_owner_actor_pauses_the_reads_and_its_stop_does_not_wait_for_the_rest(
    kind: type[SlowOwner],
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    start_actor: StartActor,
) -> None:
    gate, got = threading.Event(), queue.Queue[object]()
    owner = start_actor(kind, gate, got)
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, owner=owner, retry=0, max_queue=64)
    assert isinstance(got.get(timeout=WAIT), tether.Up)
    conn.ws_upgrade("/push?count=5000&size=1024")
    assert isinstance(got.get(timeout=WAIT), tether.Upgrade)
    _until(lambda: queued(owner) > 64, "the bound crossed")
    _until(lambda: _paused(conn), "the reads paused")
    held = queued(owner)
    # What waits in its mailbox is bounded (one is being handled).
    assert held <= 64 + (64 * 1024 + READ_AHEAD) // 1024 + 1
    stopped = owner.stop(block=False)  # behind what it holds, not behind all 5,000
    gate.set()
    stopped.get(timeout=WAIT)
    ws = 0
    while not got.empty():
        ws += isinstance(got.get_nowait(), tether.Ws)
    assert ws <= held + 1
    assert conn.wait_stopped(WAIT)  # owner gone: the connection stops (owner monitoring)
