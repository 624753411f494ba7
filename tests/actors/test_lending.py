"""A thread waiting in an Inbox reads its only connection's socket itself (tether.actors._lending).

Whoever reads (that thread or the I/O thread, which take turns), every
byte is reported once and in order, what other threads tell the Inbox
still wakes the waiter, and a socket nobody waits for is read by the I/O
thread again.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.server import Server as SyncServer
from websockets.sync.server import ServerConnection, serve

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tether.actors import _lending, _transport
from tether.actors._ioloop import IoLoop, Watch, default_loop
from tether.actors._lending import Loan
from tether.server import Server

WAIT = 5.0


def _upgraded(open_conn: ConnectionTracker, port: int, **options: Any) -> tether.Connection:
    conn = open_conn("127.0.0.1", port, **options)
    assert conn.await_up(WAIT) == "http"
    assert isinstance(conn.await_(conn.ws_upgrade("/websocket"), WAIT), tether.Upgrade)
    return conn


def _reading(
    inbox: tether.Inbox, match: Callable[[object], bool] | None = None
) -> tuple[threading.Thread, queue.Queue[object]]:
    """A thread in ``inbox.receive(match=...)``, once it polls the borrowed socket."""
    got: queue.Queue[object] = queue.Queue()
    waiter = threading.Thread(target=lambda: got.put(inbox.receive(timeout=WAIT, match=match)))
    waiter.start()
    _until(lambda: inbox._lending.loan is Loan.POLLING, "the waiter never borrowed the socket")
    return waiter, got


def _until(condition: Callable[[], bool], failure: str) -> None:
    """Wait for internal state that no event announces: poll it, bounded by WAIT."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.001)


def _given_back(inbox: tether.Inbox) -> None:
    """Wait until the I/O thread has taken back the socket held since the last receive."""
    lending = inbox._lending
    _until(
        lambda: lending.loan is Loan.FREE,
        "the held socket was never taken back",
    )


def _next_ws(inbox: tether.Inbox) -> tether.Frame:
    event = inbox.receive(timeout=WAIT)
    assert isinstance(event, tether.Ws), event
    return event.frame


@pytest.fixture
def reading_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads that reported each read of a socket, in order."""
    names: list[str] = []
    on_read = _transport.TcpTransport._on_read

    def recording(self: _transport.TcpTransport, data: bytes | None, end: Any) -> None:
        names.append(threading.current_thread().name)
        on_read(self, data, end)

    monkeypatch.setattr(_transport.TcpTransport, "_on_read", recording)
    return names


GatedServer = tuple[int, queue.Queue[None]]


@pytest.fixture
def gated_server(thread_baseline: int) -> Iterator[GatedServer]:
    """A websockets server that echoes each message once the test lets it: (port, gate).

    One ``None`` put in the gate lets one echo go (:func:`_echo_once_polled`).
    """
    gate: queue.Queue[None] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        for message in ws:  # until the client closes
            gate.get(timeout=WAIT)
            ws.send(message)

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield srv.socket.getsockname()[1], gate
        srv.shutdown()
        thread.join(WAIT)


def _echo_once_polled(inbox: tether.Inbox, gate: queue.Queue[None]) -> threading.Thread:
    """Let the gated server echo once a receive polls ``inbox``'s borrowed socket.

    So the echo arrives while the waiting thread polls: who reads it is then
    decided by the design, not by timing. (After WAIT it is let go anyway:
    the test's assertion on who read it says what went wrong.)
    """

    def release() -> None:
        deadline = time.monotonic() + WAIT
        while inbox._lending.loan is not Loan.POLLING and time.monotonic() < deadline:
            time.sleep(0.001)
        gate.put(None)

    releaser = threading.Thread(target=release)
    releaser.start()
    return releaser


@pytest.mark.parametrize("busy_poll", [None, 0.0], ids=["default", "no-spin"])
def test_the_thread_waiting_for_an_echo_reads_it_itself(
    gated_server: GatedServer,
    open_conn: ConnectionTracker,
    reading_threads: list[str],
    busy_poll: float | None,
) -> None:
    # A blocking client's round trip wakes one thread: the one waiting,
    # whether it polls briefly before it sleeps or not.
    port, gate = gated_server
    owner = {} if busy_poll is None else {"owner": tether.Inbox(busy_poll=busy_poll)}
    conn = _upgraded(open_conn, port, **owner)
    inbox = inbox_of(conn)
    me = threading.current_thread().name
    for n in range(3):
        reading_threads.clear()
        conn.ws_send(tether.Text(f"m{n}"))
        releaser = _echo_once_polled(inbox, gate)
        assert _next_ws(inbox) == tether.Text(f"m{n}")
        releaser.join(WAIT)
        assert reading_threads == [me]  # read by this thread, not by tether-io


def test_reads_stay_in_order_whoever_makes_them(
    server: Server, open_conn: ConnectionTracker, reading_threads: list[str]
) -> None:
    # Bursts of echoes, received partly while waiting (this thread reads)
    # and partly after they arrived (the I/O thread read them, once it took
    # the socket back from this thread, which was away): all of them, once
    # each, in the order sent.
    conn = _upgraded(open_conn, server.port)
    inbox = inbox_of(conn)
    sent = [f"{burst}.{k}" for burst in range(30) for k in range(10)]
    got = []
    for burst in range(30):
        conn.ws_send([tether.Text(f"{burst}.{k}") for k in range(10)])
        got += [_next_ws(inbox) for _ in range(3)]
        _given_back(inbox)  # the I/O thread reads what is left of the burst
        conn.ws_send(tether.Binary(b"x" * 200_000))  # many reads, while this thread waits
        got += [_next_ws(inbox) for _ in range(8)]
    assert [f.data for f in got if isinstance(f, tether.Text)] == sent
    assert [len(f.data) for f in got if isinstance(f, tether.Binary)] == [200_000] * 30
    assert {threading.current_thread().name, "tether-io"} <= set(reading_threads)


def test_a_tell_from_another_thread_wakes_the_waiting_reader(
    server: Server, open_conn: ConnectionTracker
) -> None:
    conn = _upgraded(open_conn, server.port)
    inbox = inbox_of(conn)
    waiter, got = _reading(inbox, lambda m: m == "from afar")
    inbox.tell("from afar")
    assert got.get(timeout=WAIT) == "from afar"
    waiter.join(WAIT)
    conn.ws_send("still read")
    assert _next_ws(inbox) == tether.Text("still read")


def test_one_thread_reads_the_sockets_of_two_inboxes_in_turn(
    gated_server: GatedServer, open_conn: ConnectionTracker, reading_threads: list[str]
) -> None:
    # The thread's poll keeps the last socket it waited for registered: when
    # it waits in the other Inbox, for the other socket, that one is polled.
    port, gate = gated_server
    conns = [_upgraded(open_conn, port, owner=tether.Inbox()) for _ in range(2)]
    me = threading.current_thread().name
    for n in range(3):
        reading_threads.clear()
        for conn in conns:
            conn.ws_send(f"{id(conn)}.{n}")
            releaser = _echo_once_polled(inbox_of(conn), gate)
            assert _next_ws(inbox_of(conn)) == tether.Text(f"{id(conn)}.{n}")
            releaser.join(WAIT)
        assert reading_threads == [me, me], "this thread did not read both sockets"


def test_a_server_drop_seen_by_the_waiting_reader_reconnects(
    server: Server, open_conn: ConnectionTracker, reading_threads: list[str]
) -> None:
    conn = _upgraded(open_conn, server.port, retry=1, retry_timeout=0.01)
    inbox = inbox_of(conn)
    conn.ws_send("!drop")
    down = inbox.receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ConnectionClosed)
    assert down.protocol == "ws"
    assert conn.await_up(WAIT) == "http"
    assert conn.await_body(conn.get("/"), WAIT) == b"hello from tether\n"


def test_close_from_another_thread_ends_the_wait_of_the_reader(
    server: Server, open_conn: ConnectionTracker
) -> None:
    conn = _upgraded(open_conn, server.port)
    inbox = inbox_of(conn)
    waiter, got = _reading(inbox)
    conn.close()
    down = got.get(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)
    waiter.join(WAIT)
    assert conn.wait_stopped(WAIT)


def test_a_receive_that_times_out_gives_the_socket_back(
    server: Server, open_conn: ConnectionTracker
) -> None:
    conn = _upgraded(open_conn, server.port)
    inbox = inbox_of(conn)
    with pytest.raises(tether.ReceiveTimeout):
        inbox.receive(timeout=0.05)
    conn.ws_send("after the timeout")
    assert _next_ws(inbox) == tether.Text("after the timeout")


@pytest.mark.parametrize("busy_poll", [0.0, 50e-6, 0.01])
def test_a_waiting_reader_sleeps_through_a_long_wait(
    server: Server, open_conn: ConnectionTracker, busy_poll: float
) -> None:
    # The reader polls briefly before it sleeps (busy_poll), but a wait that
    # lasts costs no CPU: 0.3 s of waiting use a few ms at most, whether the
    # spin is off, the default or long; then the socket still works.
    conn = _upgraded(open_conn, server.port, owner=tether.Inbox(busy_poll=busy_poll))
    inbox = inbox_of(conn)
    conn.ws_send("warm")
    assert _next_ws(inbox) == tether.Text("warm")
    _lending._waker()._short = True  # as if the last wait was short: this one spins first
    cpu = time.thread_time()
    for _ in range(3):
        with pytest.raises(tether.ReceiveTimeout):
            inbox.receive(timeout=0.1)
    assert time.thread_time() - cpu < 0.03 + busy_poll
    conn.ws_send("after the waits")
    assert _next_ws(inbox) == tether.Text("after the waits")


def test_an_inbox_owning_two_connections_gets_the_events_of_both(
    server: Server, open_conn: ConnectionTracker
) -> None:
    inbox = tether.Inbox()
    conns = [open_conn("127.0.0.1", server.port, owner=inbox) for _ in range(2)]
    for conn in conns:
        assert conn.await_up(WAIT) == "http"
    streams = {conn: conn.get("/") for conn in conns}
    for conn, stream in streams.items():
        assert conn.await_body(stream, WAIT) == b"hello from tether\n"


PingingServer = tuple[SyncServer, threading.Event, queue.Queue[bool]]


@pytest.fixture
def pinging_server(thread_baseline: int) -> Iterator[PingingServer]:
    """A websockets server: echoes one message, pings when told, says if the pong came."""
    ping = threading.Event()
    pongs: queue.Queue[bool] = queue.Queue()

    def handler(ws: ServerConnection) -> None:
        ws.send(ws.recv(timeout=WAIT))
        assert ping.wait(WAIT)
        pongs.put(ws.ping().wait(timeout=WAIT))
        ws.recv(timeout=WAIT)  # until the client closes

    with serve(handler, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield srv, ping, pongs
        srv.shutdown()
        thread.join(WAIT)


def test_a_connection_nobody_waits_for_is_still_read(
    pinging_server: PingingServer, open_conn: ConnectionTracker
) -> None:
    # After the echo the owner stops receiving, though it still holds the
    # socket (kept for its next receive): the I/O thread takes the socket
    # back and reads it, so the server's ping, sent only then, is answered
    # all the same, and the I/O thread stops ticking once it has.
    srv, ping, pongs = pinging_server
    conn = _upgraded(open_conn, srv.socket.getsockname()[1])
    conn.ws_send("hi")
    inbox = inbox_of(conn)
    assert _next_ws(inbox) == tether.Text("hi")
    ping.set()
    assert pongs.get(timeout=WAIT) is True
    _given_back(inbox)
    _stops_ticking()


def test_a_new_owner_gets_the_events_of_a_socket_the_old_one_kept(
    server: Server,
    open_conn: ConnectionTracker,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    # After a receive the owner's Inbox keeps the socket for its next one;
    # set_owner must give it back to the I/O thread (the new owner's events
    # were never read before). The I/O thread's tick that would take it back
    # anyway, 5-10 ms later, is held off during the test (the I/O loop keeps
    # the ticker it was given: it goes back to the real one after).
    holding = threading.Event()
    holding.set()
    reclaim = _lending.Lending._reclaim
    monkeypatch.setattr(
        _lending.Lending, "_reclaim", lambda self: holding.is_set() or reclaim(self)
    )
    request.addfinalizer(holding.clear)
    conn = _upgraded(open_conn, server.port)
    old = inbox_of(conn)
    conn.ws_send("one")
    assert _next_ws(old) == tether.Text("one")
    assert old._lending.loan is Loan.HELD
    new = tether.Inbox()
    conn.set_owner(new)
    conn.ws_send("two")
    assert _next_ws(new) == tether.Text("two")
    assert old.flush() == []


def _stops_ticking() -> None:
    loop = default_loop()
    _until(lambda: not loop._tickers, "the I/O thread went on ticking")


def test_a_receive_that_waits_long_does_not_keep_the_io_thread_ticking(
    server: Server, open_conn: ConnectionTracker
) -> None:
    # An owner that waits for hours in receive() (a subscriber) costs the
    # I/O thread no wake-ups: the ticks that take a kept socket back stop
    # while the socket is being read, and start again when it is kept.
    conn = _upgraded(open_conn, server.port)
    inbox = inbox_of(conn)
    conn.ws_send("kept")
    assert _next_ws(inbox) == tether.Text("kept")  # kept: the I/O thread ticks
    waiter, got = _reading(inbox)
    _stops_ticking()
    assert waiter.is_alive()  # still waiting
    conn.ws_send("at last")
    assert got.get(timeout=WAIT) == tether.Ws(conn, conn._ws_stream, tether.Text("at last"))
    waiter.join(WAIT)


@pytest.mark.parametrize("borrowable", [True, False])
def test_a_tell_made_while_the_receiver_borrows_is_not_missed(borrowable: bool) -> None:
    # Borrowing lets go of the Inbox's lock (a watch's lock is never taken
    # with it held): a message told in that instant notified nobody, so the
    # receiver, waiting with no timeout, must look again before it waits.
    loop = IoLoop()
    local, peer = socket.socketpair()
    ended = threading.Event()
    inbox = tether.Inbox()

    class TellWhileBorrowing(Watch):
        __slots__ = ()

        def borrow(self) -> bool:
            teller = threading.Thread(target=inbox.tell, args=("told meanwhile",))
            teller.start()
            teller.join(WAIT)  # told, while the receiver holds no lock
            return super().borrow()

    watch = TellWhileBorrowing(
        local, lambda data, end: ended.set() if data is None else None, None
    )
    loop._request(watch, "add")
    if not borrowable:
        peer.close()  # its reads end: borrow() says no
        assert ended.wait(WAIT)
    inbox._lending.lend(watch)
    got: queue.Queue[object] = queue.Queue()
    receiver = threading.Thread(target=lambda: got.put(inbox.receive()), daemon=True)
    receiver.start()
    try:
        assert got.get(timeout=WAIT) == "told meanwhile"
    finally:
        inbox.close()
        receiver.join(WAIT)
        loop.close(watch)
        peer.close()


def test_wait_stopped_reads_the_socket_its_last_receive_kept(
    server: Server, open_conn: ConnectionTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # shutdown() and wait_stopped() right after a receive (as a thread that
    # closes its connection does): the socket that receive kept is read
    # while the thread waits for the close handshake, not only once the I/O
    # thread's tick takes it back (5-10 ms later; here, never until the end).
    reclaim = _lending.Lending._reclaim
    holding = [True]
    monkeypatch.setattr(
        _lending.Lending, "_reclaim", lambda self: True if holding[0] else reclaim(self)
    )
    try:
        conn = _upgraded(open_conn, server.port)
        inbox = inbox_of(conn)
        # A receive keeps the socket it read (HELD) for the next one; the I/O
        # thread may have read the echo first (then it delivered it, and the
        # socket stays FREE), so round trips until one was read by the receive.
        for _ in range(50):
            conn.ws_send("kept")
            assert _next_ws(inbox) == tether.Text("kept")
            if inbox._lending.loan in (Loan.HELD, Loan.STALE):
                break
        assert inbox._lending.loan in (Loan.HELD, Loan.STALE)  # kept for the next receive
        conn.shutdown()
        assert conn.wait_stopped(WAIT)
    finally:
        holding[0] = False  # the next tick (if any) drops the ticker
