"""Actor threads that start only when a message has to wait for one.

A connection actor's messages are mostly handled inline by the threads
that tell them (the caller's, the I/O thread's), so its thread is started
only for what no teller may run: an ask, a crash to re-raise, a write
backlog to drain, what is left after a teller has helped ``_MAX_HELPED``
messages. A stop finding no thread is handled where it is handed over.
Connections are checked through real sockets (the embedded server);
``on_start`` and the pykka hooks this rests on through small test actors.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pykka.messages
import pytest

import tether
from tests.conftest import ConnectionTracker
from tests.events import inbox
from tether.actors import ConnectionActor, Supervised
from tether.actors import _messages as msg
from tether.actors._lazy import LazyThreadingActor, StopFlag
from tether.actors._mailbox import _MAX_HELPED, Reraise
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0


class Boom(Exception):
    """The crash the tests inject."""


def actor_threads(prefix: str = "ConnectionActor-") -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith(prefix)}


def upgraded(open_conn: ConnectionTracker, server: Server, **options: Any) -> tether.Connection:
    """An upgraded connection to the server's Websocket echo, with one echo done."""
    conn = open_conn(server.host, server.port, retry=0, **options)
    assert conn.await_up(WAIT) == "http"
    stream = conn.ws_upgrade("/ws")
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    echo(conn, "first")
    return conn


def echo(conn: tether.Connection, text: str) -> None:
    conn.ws_send(text)
    event = inbox(conn).receive(WAIT)
    assert isinstance(event, tether.Ws), event
    assert event.frame == tether.Text(text)


class Watch:
    """Records which thread handles each connection message; holds or crashes on cue.

    A ``ws_send("hold")`` blocks the thread handling it (the caller's,
    inline) until ``release``; a ``ws_send("crash")`` raises :class:`Boom`.
    """

    def __init__(self) -> None:
        self.seen: list[tuple[object, str]] = []
        self.holder = ""  # the thread that handles "hold"
        self.holding = threading.Event()
        self.release = threading.Event()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Every handler of the actor's dispatch table, which both the actor
        # thread (on_receive) and a teller (_run_inline) run messages with;
        # and on_receive for what is not in it (a Reraise).
        original_receive = ConnectionActor.on_receive
        watch = self

        def observed(handle: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            def observe(actor: Any, message: Any) -> Any:
                watch._observe(message)
                return handle(actor, message)

            return observe

        def on_receive(actor: ConnectionActor, message: Any) -> Any:
            if isinstance(message, Reraise):
                watch._observe(message)
            return original_receive(actor, message)

        table = {kind: observed(handle) for kind, handle in ConnectionActor._DISPATCH.items()}
        monkeypatch.setattr(ConnectionActor, "_DISPATCH", table)
        monkeypatch.setattr(ConnectionActor, "on_receive", on_receive)

    def _observe(self, message: object) -> None:
        self.seen.append((message, threading.current_thread().name))
        if isinstance(message, msg.WsSend):
            if tether.Text("hold") in message.frames:
                self.holder = threading.current_thread().name
                self.holding.set()
                assert self.release.wait(WAIT)
            if tether.Text("crash") in message.frames:
                raise Boom("crash")

    @contextlib.contextmanager
    def held(self, conn: tether.Connection) -> Iterator[None]:
        """While another thread holds ``conn``'s turn (handling a "hold"), then released."""
        holder = threading.Thread(target=conn.ws_send, args=("hold",))
        holder.start()
        try:
            assert self.holding.wait(WAIT)
            yield
        finally:
            self.release.set()
            holder.join(WAIT)

    def threads_of(self, kind: type) -> list[str]:
        return [thread for message, thread in self.seen if isinstance(message, kind)]


@pytest.fixture
def watch(monkeypatch: pytest.MonkeyPatch) -> Watch:
    w = Watch()
    w.install(monkeypatch)
    return w


@pytest.fixture
def sup(thread_baseline: int) -> Iterator[tether.Supervisor]:
    supervisor = tether.Supervisor.start()
    yield supervisor
    supervisor.stop(timeout=WAIT)


# -- pykka's hooks ----------------------------------------------------------------------


def test_pykka_runs_an_actor_as_the_lazy_actor_assumes() -> None:
    # LazyThreadingActor (tether/actors/_lazy.py) overrides _start_actor_loop
    # and calls the three parts of pykka's loop itself. If a pykka upgrade
    # changes how start() and _actor_loop use them, this fails loudly.
    calls: list[tuple[str, str]] = []

    class Traced(pykka.ThreadingActor):
        def _start_actor_loop(self) -> None:
            calls.append(("start_actor_loop", threading.current_thread().name))
            super()._start_actor_loop()

        def _actor_loop_setup(self) -> None:
            calls.append(("setup", threading.current_thread().name))
            super()._actor_loop_setup()

        def _actor_loop_running(self) -> None:
            calls.append(("running", threading.current_thread().name))
            super()._actor_loop_running()

        def _actor_loop_teardown(self) -> None:
            calls.append(("teardown", threading.current_thread().name))
            super()._actor_loop_teardown()

        def on_start(self) -> None:
            calls.append(("on_start", threading.current_thread().name))

        def on_stop(self) -> None:
            calls.append(("on_stop", threading.current_thread().name))

    ref = Traced.start()
    assert ref.stop(timeout=WAIT)
    me = threading.current_thread().name
    [(first, where), *rest] = calls
    assert (first, where) == ("start_actor_loop", me)
    assert [name for name, _ in rest] == ["setup", "on_start", "running", "on_stop", "teardown"]
    assert len({thread for _, thread in rest}) == 1  # all on the actor thread
    assert rest[0][1] != me
    # What the mailbox takes for "a stop": handling it ends the loop.
    assert isinstance(pykka.messages._ActorStop(), tuple)


# -- on_start ---------------------------------------------------------------------------


class Starting(Supervised, LazyThreadingActor):
    """Logs on_start and its messages with their threads; tells (and asks) itself early."""

    def __init__(
        self,
        log: list[tuple[str, str]],
        early_asks: list[pykka.Future[Any]] | None = None,
        fail: bool = False,
    ) -> None:
        super().__init__()
        self.log = log
        self.fail = fail
        self._mailbox.bind(self._run_inline, self.actor_stopped)
        self.actor_ref.tell("tell")  # before on_start: it must wait for it
        if early_asks is not None:
            early_asks.append(self.actor_ref.ask("early ask", block=False))

    def _run_inline(self, message: object) -> bool:
        if message != "tell":
            return False  # asks, stops and the rest: the actor thread's
        self.on_receive(message)
        return True

    def on_start(self) -> None:
        self.log.append(("on_start", threading.current_thread().name))
        if self.fail:
            raise Boom("on_start fails")

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, Reraise):
            raise message.error  # the mailbox's contract
        self.log.append((message, threading.current_thread().name))
        return "answer"


def test_on_start_runs_once_on_the_starting_thread_before_any_message(
    sup: tether.Supervisor,
) -> None:
    log: list[tuple[str, str]] = []
    asks: list[pykka.Future[Any]] = []
    ref = sup.start_child(tether.ChildSpec(id="starting", start=lambda: Starting.start(log, asks)))
    # start_child returned once on_start had run: on the supervisor's thread,
    # once, before the messages told in __init__. The early ask needed the
    # thread; its answer comes from the actor thread.
    assert asks[0].get(timeout=WAIT) == "answer"
    [(first, start_thread), *messages] = log
    assert first == "on_start"
    assert not start_thread.startswith("Starting-")
    assert start_thread != threading.current_thread().name
    assert sorted(m for m, _ in messages) == ["early ask", "tell"]
    assert dict(messages)["early ask"].startswith("Starting-")
    assert len(actor_threads("Starting-")) == 1
    assert ref.ask("late ask", timeout=WAIT) == "answer"
    assert [m for m, _ in log].count("on_start") == 1


def test_an_actor_that_is_only_told_never_starts_a_thread() -> None:
    log: list[tuple[str, str]] = []
    ref = Starting.start(log)  # no supervisor: on_start runs right here
    ref.tell("tell")
    me = threading.current_thread().name
    assert log == [("on_start", me), ("tell", me), ("tell", me)]
    assert actor_threads("Starting-") == set()
    assert ref.stop(timeout=WAIT)  # handled here too: still no thread
    assert not ref.is_alive()
    assert actor_threads("Starting-") == set()
    with pytest.raises(pykka.ActorDeadError):
        ref.tell("tell")


def test_threads_waiting_for_actor_stopped_wake_when_the_actor_stops() -> None:
    # actor_stopped builds its Condition only for a waiter (StopFlag): the
    # waiters, started before the stop, must still be woken by it.
    ref = Starting.start([])
    assert not ref.actor_stopped.wait(0.01)
    woken: list[bool] = []
    waiters = [
        threading.Thread(target=lambda: woken.append(ref.actor_stopped.wait())) for _ in range(3)
    ]
    for waiter in waiters:
        waiter.start()
    # Stopped only once all three wait (its Condition lists them), so that
    # the stop has to wake them rather than be seen as they start waiting.
    flag = ref.actor_stopped
    assert isinstance(flag, StopFlag)
    for _ in range(500):  # bounded: they start at once
        if flag._waited is not None and len(flag._waited._waiters) == 3:  # type: ignore[attr-defined]
            break
        threading.Event().wait(0.01)
    assert ref.stop(timeout=WAIT)
    for waiter in waiters:
        waiter.join(WAIT)
        assert not waiter.is_alive()
    assert woken == [True, True, True]
    assert ref.actor_stopped.is_set()
    assert ref.actor_stopped.wait(0)  # set before the wait: returns at once


def test_a_failing_on_start_is_a_start_failure_and_queued_asks_fail(
    sup: tether.Supervisor, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[tuple[str, str]] = []
    asks: list[pykka.Future[Any]] = []
    with pytest.raises(RuntimeError, match="failed in on_start") as raised:
        sup.start_child(
            tether.ChildSpec(id="failing", start=lambda: Starting.start(log, asks, fail=True))
        )
    assert isinstance(raised.value.__cause__, Boom)
    assert [m for m, _ in log] == ["on_start"]  # once, and no message handled after it
    with pytest.raises(pykka.ActorDeadError):
        asks[0].get(timeout=WAIT)
    assert actor_threads("Starting-") == set()
    assert "on_start fails" in caplog.text  # pykka logged it, as for any on_start failure
    assert sup.which_children() == []


class NoThreads(Starting):
    """As if the process were out of threads: starting one fails."""

    def _start_thread(self) -> None:
        raise RuntimeError("can't start new thread")

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        self.log.append((f"on_failure {exc_value}", threading.current_thread().name))


def test_an_actor_whose_thread_cannot_start_crashes_instead_of_hanging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing could ever answer the ask: the actor crashes with the error
    # (pykka's failure path, run by the thread that needed the other one),
    # and the ask fails at once instead of waiting out its timeout.
    log: list[tuple[str, str]] = []
    ref = NoThreads.start(log)
    with pytest.raises(pykka.ActorDeadError):
        ref.ask("ask", timeout=WAIT)
    me = threading.current_thread().name
    assert log == [("on_start", me), ("tell", me), ("on_failure can't start new thread", me)]
    assert not ref.is_alive()
    assert "can't start new thread" in caplog.text


# -- connections ------------------------------------------------------------------------


def test_idle_upgraded_connections_have_no_actor_thread(
    server: Server, open_conn: ConnectionTracker
) -> None:
    before = actor_threads()
    conns = [upgraded(open_conn, server) for _ in range(10)]
    for conn in conns:
        echo(conn, "again")
    assert actor_threads() == before
    for conn in conns:
        conn.close()
    for conn in conns:
        assert conn.wait_stopped(WAIT)
        assert conn._ref is not None
        assert conn._ref.actor_stopped.wait(WAIT)
    assert actor_threads() == before  # stopping did not need one either


def test_info_starts_the_thread_once_and_it_ends_with_the_connection(
    server: Server, open_conn: ConnectionTracker
) -> None:
    conn = upgraded(open_conn, server)
    before = actor_threads()
    assert conn.info().state == "up"
    [thread] = actor_threads() - before
    assert conn.info().protocol == "ws"
    assert actor_threads() - before == {thread}  # once
    echo(conn, "still inline")
    conn.close()
    assert conn.wait_stopped(WAIT)
    thread.join(WAIT)
    assert not thread.is_alive()


def test_an_inline_crash_is_raised_on_the_actor_thread_and_the_connection_restarts(
    server: Server, open_conn: ConnectionTracker, sup: tether.Supervisor, watch: Watch
) -> None:
    conn = upgraded(open_conn, server, supervisor=sup)
    conn.ws_send("crash")  # handled inline (by this thread, or the I/O thread if busy)
    down = inbox(conn).receive(WAIT)
    assert isinstance(down, tether.Down), down
    assert isinstance(down.reason, tether.Crashed)
    assert isinstance(down.reason.exception, Boom)
    assert conn.await_up(WAIT) == "http"  # restarted by the supervisor
    [crashed_on] = watch.threads_of(msg.WsSend)[-1:]
    assert not crashed_on.startswith("ConnectionActor-")
    [reraised_on] = watch.threads_of(Reraise)
    assert reraised_on.startswith("ConnectionActor-")
    [child] = sup.which_children()
    assert child.restarts == 1
    # The new generation works, inline again.
    stream = conn.ws_upgrade("/ws")
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    echo(conn, "after the restart")
    assert not watch.threads_of(msg.WsSend)[-1].startswith("ConnectionActor-")


def test_a_stop_of_an_idle_connection_is_handled_by_the_thread_asking_for_it(
    server: Server, open_conn: ConnectionTracker
) -> None:
    conn = upgraded(open_conn, server)
    ref = conn._ref
    assert ref is not None
    before = actor_threads()
    assert ref.stop(timeout=WAIT)  # pykka's stop, as a supervisor or stop_all sends it
    assert not ref.is_alive()
    assert conn.wait_stopped(WAIT)  # on_stop ran: the handle is stopped
    assert actor_threads() == before
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")


def test_asks_queued_behind_a_stop_that_no_thread_handles_fail_with_actor_dead(
    server: Server, open_conn: ConnectionTracker, watch: Watch
) -> None:
    conn = upgraded(open_conn, server)
    ref = conn._ref
    assert ref is not None
    before = actor_threads()
    with watch.held(conn):
        stopped = ref.stop(block=False)  # queued behind the message being handled
        info = ref.ask(msg.InfoQuery(), block=False)  # and this behind the stop
    assert stopped.get(timeout=WAIT) is True
    with pytest.raises(pykka.ActorDeadError):
        info.get(timeout=WAIT)
    assert actor_threads() == before  # the holder handled the stop when it let go
    assert conn.wait_stopped(WAIT)


def test_an_ask_queued_before_a_stop_is_answered_by_the_thread_it_starts(
    server: Server, open_conn: ConnectionTracker, watch: Watch
) -> None:
    conn = upgraded(open_conn, server)
    ref = conn._ref
    assert ref is not None
    before = actor_threads()
    with watch.held(conn):
        info = ref.ask(msg.InfoQuery(), block=False)
        stopped = ref.stop(block=False)
    answer = info.get(timeout=WAIT)
    assert isinstance(answer, tether.ConnectionInfo)
    assert answer.protocol == "ws"
    assert stopped.get(timeout=WAIT) is True
    [asked_on] = watch.threads_of(msg.InfoQuery)
    assert asked_on.startswith("ConnectionActor-")
    assert asked_on not in {t.name for t in before}


def test_more_than_max_helped_queued_messages_are_left_to_the_thread(
    server: Server, open_conn: ConnectionTracker, watch: Watch
) -> None:
    conn = upgraded(open_conn, server)
    with watch.held(conn):
        for n in range(3 * _MAX_HELPED):
            conn.ws_send(f"m{n}")  # queued: the holder has the turn
    texts = []
    for _ in range(1 + 3 * _MAX_HELPED):
        event = inbox(conn).receive(WAIT)
        assert isinstance(event, tether.Ws), event
        assert isinstance(event.frame, tether.Text)
        texts.append(event.frame.data)
    assert texts == ["hold", *(f"m{n}" for n in range(3 * _MAX_HELPED))]  # in order
    # The thread that held the turn (the holder, or the I/O thread if it was
    # busy when the holder told) helped with what came next, up to
    # _MAX_HELPED messages, then handed the rest to the actor thread.
    sends = watch.threads_of(msg.WsSend)[-(1 + 3 * _MAX_HELPED) :]
    assert sends[0] == watch.holder
    assert not watch.holder.startswith("ConnectionActor-")
    assert any(thread.startswith("ConnectionActor-") for thread in sends)
    hold = next(
        i
        for i, (m, _) in enumerate(watch.seen)
        if isinstance(m, msg.WsSend) and tether.Text("hold") in m.frames
    )
    helped = 0  # messages the holder handled right after "hold", in its turn
    for _, thread in watch.seen[hold + 1 :]:
        if thread != watch.holder:
            break
        helped += 1
    assert helped <= _MAX_HELPED


def test_a_write_backlog_needs_no_actor_thread(open_conn: ConnectionTracker, watch: Watch) -> None:
    # A peer that does not read: the write is left in a backlog, which never
    # blocks anyone (the I/O thread says when the socket can take more), so
    # nothing has to wait for the actor thread; it ends in Down(WriteTimeout)
    # when the send_timeout timer finds bytes waiting that long.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = open_conn(
            "127.0.0.1", listener.getsockname()[1], retry=0, send_timeout=0.2, send_buffer=None
        )
        assert conn.await_up(WAIT) == "http"
        accepted, _ = listener.accept()
        with accepted:
            stream = conn.post("/upload", body=b"x" * (16 << 20))
            down = inbox(conn).receive(WAIT, lambda m: isinstance(m, tether.Down))
            assert isinstance(down, tether.Down)
            assert isinstance(down.reason, tether.WriteTimeout)
            assert stream in down.killed_streams
    # The request was written inline (by this thread, or by the I/O thread if
    # it still had the turn after telling Up), and so was everything else.
    [requested_on] = watch.threads_of(msg.RequestCmd)
    assert not requested_on.startswith("ConnectionActor-")
    assert not any(thread.startswith("ConnectionActor-") for _, thread in watch.seen)


def test_a_connection_that_may_not_run_inline_starts_its_thread_at_once(
    server: Server, open_conn: ConnectionTracker, watch: Watch
) -> None:
    # An event handler is user code: it must run on the actor thread, so
    # every message goes there, as in plain pykka, from the first connect.
    phases: list[tuple[str, str]] = []

    def handler(name: str, data: dict[str, Any]) -> None:
        phases.append((name, threading.current_thread().name))

    conn = open_conn(server.host, server.port, retry=0, event_handler=handler)
    assert conn.await_up(WAIT) == "http"
    assert conn.await_body(conn.get("/"), WAIT) == b"hello from tether\n"
    assert phases
    assert all(thread.startswith("ConnectionActor-") for _, thread in phases)
    assert all(thread.startswith("ConnectionActor-") for _, thread in watch.seen)


def test_stopping_a_supervisor_stops_idle_connections_without_threads(
    server: Server, open_conn: ConnectionTracker, sup: tether.Supervisor
) -> None:
    before = actor_threads()
    conns = [upgraded(open_conn, server, supervisor=sup) for _ in range(3)]
    assert sup.stop(timeout=WAIT)
    for conn in conns:
        error = inbox(conn).receive(WAIT, lambda m: isinstance(m, tether.Error))
        assert isinstance(error, tether.Error)
        assert isinstance(error.reason, tether.SupervisorStopped)
        assert not conn.is_alive()
    assert actor_threads() == before
