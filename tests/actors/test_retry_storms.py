"""The retry count and servers that accept connections only to close them.

tether resets a connection's retry count only once the connection proved
useful: the server sent something on it, or it stayed up ``PROVEN_AFTER``
(10 s) (``tether.actors._connection.PROVEN_AFTER``). This deliberately
differs from Gun, which resets the count at every ``gun_up``
(``disconnect/2`` in gun.erl; ``/work/notes/gun_research.md`` section 2):
against a server that accepts and closes at once (or a proxy in front of a
dead backend), Gun cycles ``gun_up``/``gun_down`` for ever, every retry
immediate, while tether gives up with ``Error(conn, None, RetriesExhausted)``
after ``retry`` attempts, paced by ``retry_timeout``.

The servers here are a few lines of raw sockets (:class:`ScriptedServer`),
each accepted connection treated as the test's script says; the retry
timers and the owner check (which applies the ``PROVEN_AFTER`` rule) run
on a fake clock, so no test waits out a real delay.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Literal, TypeVar

import pytest

import tether
from tests.conftest import ConnectionTracker
from tests.events import expect, inbox
from tests.faults import FaultProxy
from tether.actors._connection import OWNER_CHECK_INTERVAL, PROVEN_AFTER
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
RETRY_TIMEOUT = 5.0  # tether's default, as Gun's
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

E = TypeVar("E")
Action = Literal["close", "answer", "hold", "garbage"]


class ScriptedServer:
    """A raw TCP server on 127.0.0.1 that treats its n-th connection as ``script[n]`` says.

    - ``"close"``: close it at once (nothing sent);
    - ``"answer"``: read one request head, answer ``200 ok``, then close;
    - ``"hold"``: keep it open, silent, until :meth:`drop_held`;
    - ``"garbage"``: read one request head, answer bytes that are no HTTP, then close.

    The last action repeats for every later connection. One thread accepts
    and serves, in order; :meth:`close` stops and joins it.
    """

    def __init__(self, *script: Action) -> None:
        self._script = script
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Woken every so often to look at _stop (a listener closed by another
        # thread does not wake accept() on Linux).
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._cond = threading.Condition()
        self._accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="scripted-server", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._cond:
            return self._accepted

    def wait_for(self, *, accepted: int = 0, held: int = 0) -> bool:
        """Wait (bounded) until at least that many were accepted and are held."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._accepted >= accepted and len(self._held) >= held, WAIT
            )

    def drop_held(self) -> int:
        """Close the connections held open; how many."""
        with self._cond:
            held, self._held = self._held, []
        for sock in held:
            sock.close()
        return len(held)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(WAIT)
            with self._cond:
                action = self._script[min(self._accepted, len(self._script) - 1)]
                self._accepted += 1
                if action == "hold":
                    self._held.append(client)
                self._cond.notify_all()
            if action in ("answer", "garbage"):
                with client, contextlib.suppress(OSError):
                    head = b""
                    while b"\r\n\r\n" not in head:
                        data = client.recv(65536)
                        if not data:
                            break
                        head += data
                    client.sendall(OK if action == "answer" else b"NOT HTTP AT ALL\r\n\r\n")
            elif action == "close":
                client.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        self._listener.close()
        self.drop_held()


Serve = Callable[..., ScriptedServer]


@pytest.fixture
def serve(thread_baseline: int) -> Iterator[Serve]:
    """Start :class:`ScriptedServer` instances; each is stopped and joined at teardown."""
    servers: list[ScriptedServer] = []

    def start(*script: Action) -> ScriptedServer:
        server = ScriptedServer(*script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


# -- helpers -------------------------------------------------------------------------


def settle(conn: tether.Connection) -> tether.ConnectionInfo:
    """Ask the actor for its state: it answers after handling all it was told before."""
    return conn.info(timeout=WAIT)


def assert_no_events(conn: tether.Connection) -> None:
    settle(conn)
    assert inbox(conn).flush() == []


def up_and_closed(conn: tether.Connection) -> None:
    """``Up``, then ``Down``: the server closed the connection (nothing was in flight)."""
    assert expect(conn, tether.Up).protocol == "http"
    down = expect(conn, tether.Down)
    assert (down.protocol, down.killed_streams, down.unprocessed_streams) == ("http", (), ())
    assert isinstance(down.reason, tether.ConnectionClosed), down.reason


def waits_retry_timeout(conn: tether.Connection, fake: FakeTime) -> None:
    """The next attempt is ``retry_timeout`` away: nothing before it, then it is made."""
    assert settle(conn).state == "waiting"
    assert fake.scheduler.pending() == 2  # the retry timer, and the owner check
    fake.advance(RETRY_TIMEOUT - 0.1)
    assert_no_events(conn)
    fake.advance(0.1)


def gave_up(conn: tether.Connection, attempts: int) -> tether.RetriesExhausted:
    """The owner's next and last event: ``Error(conn, None, RetriesExhausted)``."""
    error = expect(conn, tether.Error)
    assert error.stream is None
    assert isinstance(error.reason, tether.RetriesExhausted), error.reason
    assert error.reason.attempts == attempts
    assert conn.wait_stopped(WAIT)
    assert inbox(conn).flush() == []
    return error.reason


# -- the tests -----------------------------------------------------------------------


def test_a_server_that_accepts_and_closes_at_once_ends_in_retries_exhausted(
    fake: FakeTime, serve: Serve, open_conn: ConnectionTracker
) -> None:
    """retry=3: four connections (the first and three retries), each Up then Down, then Error.

    Not Gun's behaviour: Gun resets the count at every Up, so it would
    reconnect for ever, each retry immediate. Here no connection proves
    useful, so the count runs down: the first retry is immediate, the next
    two wait ``retry_timeout``, and the last ``Down`` is followed by the
    final ``Error``.
    """
    server = serve("close")
    conn = open_conn("127.0.0.1", server.port, retry=3)
    up_and_closed(conn)  # the first connection
    up_and_closed(conn)  # retry 1, immediate
    waits_retry_timeout(conn, fake)
    up_and_closed(conn)  # retry 2
    waits_retry_timeout(conn, fake)
    up_and_closed(conn)  # retry 3, the last
    reason = gave_up(conn, attempts=4)
    assert isinstance(reason.last_reason, tether.ConnectionClosed)
    assert server.accepted == 3 + 1
    assert fake.scheduler.pending() == 0  # no timer left: nothing more will happen


def test_a_proxy_in_front_of_a_dead_backend_ends_in_retries_exhausted(
    fake: FakeTime, open_conn: ConnectionTracker, refused_port: int
) -> None:
    """The same storm through tests/faults.py's proxy, whose upstream refuses connections.

    The proxy accepts, fails to reach its backend, and closes: to tether
    each attempt is Up then Down. retry=2: three connections, then Error.
    """
    with FaultProxy(refused_port) as proxy:
        conn = open_conn("127.0.0.1", proxy.port, retry=2)
        up_and_closed(conn)
        up_and_closed(conn)  # retry 1, immediate
        waits_retry_timeout(conn, fake)
        up_and_closed(conn)  # retry 2, the last
        reason = gave_up(conn, attempts=3)
        assert isinstance(reason.last_reason, tether.ConnectionClosed)


def test_retry_zero_gives_up_after_the_first_close(
    fake: FakeTime, serve: Serve, open_conn: ConnectionTracker
) -> None:
    server = serve("close")
    conn = open_conn("127.0.0.1", server.port, retry=0)
    up_and_closed(conn)
    gave_up(conn, attempts=1)
    assert server.accepted == 1


def test_a_server_that_answers_on_each_connection_keeps_being_reconnected(
    fake: FakeTime, serve: Serve, open_conn: ConnectionTracker
) -> None:
    """Each connection proves useful (the server answers), so each resets the count.

    retry=1, and six connections in a row are closed by the server after
    one answer: each reconnect is the immediate first retry again (the
    fake clock never moves), and the connection never gives up.
    """
    server = serve("answer")
    conn = open_conn("127.0.0.1", server.port, retry=1)
    for _ in range(6):
        assert expect(conn, tether.Up).protocol == "http"
        assert conn.await_body(conn.get("/"), timeout=WAIT) == b"ok"
        down = expect(conn, tether.Down)
        assert isinstance(down.reason, tether.ConnectionClosed), down.reason
    assert expect(conn, tether.Up).protocol == "http"
    assert server.wait_for(accepted=7)
    assert conn.is_alive()
    assert fake.clock() == 0.0


def test_a_useful_connection_resets_the_count_but_not_for_the_next_storm(
    fake: FakeTime, serve: Serve, open_conn: ConnectionTracker
) -> None:
    """After a useful connection, a storm of closes gets ``retry`` attempts again, no more."""
    server = serve("answer", "close")
    conn = open_conn("127.0.0.1", server.port, retry=2)
    assert expect(conn, tether.Up).protocol == "http"
    assert conn.await_body(conn.get("/"), timeout=WAIT) == b"ok"
    assert isinstance(expect(conn, tether.Down).reason, tether.ConnectionClosed)
    up_and_closed(conn)  # retry 1, immediate: counted from the useful connection
    waits_retry_timeout(conn, fake)
    up_and_closed(conn)  # retry 2, the last
    gave_up(conn, attempts=2)  # counted since the useful connection
    assert server.accepted == 1 + 2


@pytest.mark.parametrize(
    ("idle", "proven"),
    [(PROVEN_AFTER, True), (PROVEN_AFTER - OWNER_CHECK_INTERVAL, False)],
    ids=["for PROVEN_AFTER", "for less"],
)
def test_a_connection_that_stays_up_for_proven_after_resets_the_count(
    idle: float,
    proven: bool,
    fake: FakeTime,
    serve: Serve,
    open_conn: ConnectionTracker,
) -> None:
    """A connection the server never sends on counts as useful once up ``PROVEN_AFTER`` (10 s).

    The owner check (every 2 s) applies the rule. retry=1: the first
    connection is closed at once (the one retry is spent), the second is
    held open and silent for ``idle`` seconds, then closed. Proven, it gave
    the count back: one more (immediate) attempt, closed at once, then the
    final Error. Not proven, the final Error comes right after its Down.
    """
    server = serve("close", "hold", "close")
    conn = open_conn("127.0.0.1", server.port, retry=1)
    up_and_closed(conn)
    assert expect(conn, tether.Up).protocol == "http"  # retry 1, immediate
    assert server.wait_for(accepted=2, held=1)
    for _ in range(round(idle / OWNER_CHECK_INTERVAL)):
        assert fake.wait_pending(1)  # the owner check
        fake.advance(OWNER_CHECK_INTERVAL)
        assert settle(conn).state == "up"
    assert_no_events(conn)
    assert server.drop_held() == 1
    down = expect(conn, tether.Down)
    assert isinstance(down.reason, tether.ConnectionClosed), down.reason

    if proven:
        up_and_closed(conn)  # the count was reset: an immediate first retry again
        gave_up(conn, attempts=1)
        assert server.accepted == 3
    else:
        gave_up(conn, attempts=2)
        assert server.accepted == 2


def test_bytes_that_fail_the_protocol_do_not_prove_a_connection(
    fake: FakeTime, serve: Serve, open_conn: ConnectionTracker
) -> None:
    """A server that answers every request with garbage still runs out of retries.

    Its bytes reach tether, but no response comes of them: the connection
    proves nothing (an abusive server sending endless fragments, with
    ``reupgrade``, made ten reconnects a second for ever when any byte
    counted).
    """
    server = serve("garbage")
    conn = open_conn("127.0.0.1", server.port, retry=1)
    for _ in range(2):  # the first connection, then retry 1 (immediate)
        assert expect(conn, tether.Up).protocol == "http"
        stream = conn.get("/")
        error = expect(conn, tether.Error)
        assert error.stream is stream
        assert isinstance(error.reason, tether.RemoteProtocolError)
        expect(conn, tether.Down)
    gave_up(conn, attempts=2)
    assert server.accepted == 2
