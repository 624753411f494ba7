"""Connections under supervision, as the owner sees them.

An ``event_handler`` that raises crashes the connection actor (as in Gun,
it runs inside it): that is how these tests inject crashes. The owner is
the connection's default ``Inbox``; the server is the aiohttp test server.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker
from tests.interop.aiohttp_server import AiohttpServer
from tests.supervision.conftest import WAIT, Boom, StartSup, eventually, final_error

pytestmark = pytest.mark.usefixtures("thread_baseline")


class Handler:
    """An event handler that records the phases and raises on ``phase``.

    ``times`` is how many times it raises (None: every time); with
    ``release``, it waits for that event before it raises, so that the test
    can queue more commands behind the one that crashes.
    """

    def __init__(
        self, phase: str, times: int | None = 1, release: threading.Event | None = None
    ) -> None:
        self.phase = phase
        self.times = times
        self.release = release
        self.raised: list[Boom] = []
        self.entered = threading.Event()  # set when it starts waiting for ``release``
        self._lock = threading.Lock()
        self._names: list[str] = []

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._names.append(name)
            if name != self.phase or (self.times is not None and len(self.raised) >= self.times):
                return
            error = Boom(f"handler refuses {name}")
            self.raised.append(error)
        if self.release is not None:
            self.entered.set()
            assert self.release.wait(WAIT)
        raise error

    def count(self, name: str) -> int:
        with self._lock:
            return self._names.count(name)


def receive(conn: tether.Connection) -> object:
    """The owner's next event."""
    assert conn.inbox is not None
    return conn.inbox.receive(timeout=WAIT)


def crash_on_request_and_recover(conn: tether.Connection, handler: Handler) -> None:
    """Crash the connection with a request, check the owner's view of the restart."""
    assert conn.await_up(timeout=WAIT) == "http"
    stream = conn.get("/")

    down = receive(conn)
    assert isinstance(down, tether.Down), down
    assert down.conn is conn
    assert down.protocol == "http"
    assert isinstance(down.reason, tether.Crashed)
    assert down.reason.exception is handler.raised[0]
    assert stream in down.killed_streams
    assert conn.await_up(timeout=WAIT) == "http"
    assert conn.is_alive()

    # The same handle serves the next request, on the new actor.
    assert conn.await_body(conn.get("/"), timeout=WAIT) == b"hello"
    assert conn.is_alive()
    assert handler.count("connect_start") == 2  # the restart reused the options


def test_a_crashed_connection_is_restarted_by_its_supervisor(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    handler = Handler("request_start")
    conn = open_conn(
        aiohttp_server.host, aiohttp_server.port, supervisor=sup, event_handler=handler
    )
    [before] = sup.which_children()

    crash_on_request_and_recover(conn, handler)

    [after] = sup.which_children()
    assert after.id == before.id
    assert after.restarts == 1
    assert after.ref is not None
    assert after.ref is not before.ref
    assert before.ref is not None
    assert not before.ref.is_alive()


def test_a_crashed_connection_is_restarted_by_the_default_supervisor(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    handler = Handler("request_start")
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, event_handler=handler)

    crash_on_request_and_recover(conn, handler)

    assert tether.supervision.default_supervisor().is_alive()


def test_a_request_queued_behind_the_crash_is_served_after_the_restart(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    release = threading.Event()
    handler = Handler("request_start", release=release)
    conn = open_conn(
        aiohttp_server.host, aiohttp_server.port, supervisor=start_sup(), event_handler=handler
    )
    assert conn.await_up(timeout=WAIT) == "http"

    crashing = conn.get("/")
    queued = conn.get("/")  # waits in the mailbox of the actor that is about to crash
    release.set()

    down = receive(conn)
    assert isinstance(down, tether.Down)
    assert down.killed_streams == (crashing,)
    assert conn.await_up(timeout=WAIT) == "http"
    assert conn.await_body(queued, timeout=WAIT) == b"hello"  # not silently dropped


def test_a_close_queued_behind_the_crash_still_stops_the_connection(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    release = threading.Event()
    handler = Handler("request_start", release=release)
    conn = open_conn(
        aiohttp_server.host, aiohttp_server.port, supervisor=sup, event_handler=handler
    )
    assert conn.await_up(timeout=WAIT) == "http"

    conn.get("/")
    assert handler.entered.wait(WAIT)  # the request is being handled: the close waits
    conn.close()  # in front of the mailbox of the actor that is about to crash
    release.set()

    down = receive(conn)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.Crashed)
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    eventually(lambda: sup.which_children() == [])  # a normal exit: not restarted
    assert conn.inbox is not None
    assert conn.inbox.flush() == []  # no Up: it did not come back


def test_a_crash_before_the_first_connect_is_restarted_and_the_handle_works(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    # The first generation crashes at once, possibly before open() returns:
    # the handle must end up on the restarted generation, not the dead one.
    for _ in range(50):
        handler = Handler("connect_start")
        conn = open_conn(aiohttp_server.host, aiohttp_server.port, event_handler=handler)

        assert receive(conn) == tether.Up(conn, "http")  # no Down: it was never up
        assert conn.await_body(conn.get("/"), timeout=WAIT) == b"hello"
        assert handler.count("connect_start") == 2
        conn.close()
        assert conn.wait_stopped(WAIT)


def test_a_crash_loop_spends_the_connection_budget_of_the_default_supervisor(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    bystander = open_conn(aiohttp_server.host, aiohttp_server.port)
    assert bystander.await_up(timeout=WAIT) == "http"
    handler = Handler("connect_start", times=None)

    conn = open_conn(aiohttp_server.host, aiohttp_server.port, event_handler=handler)

    error = final_error(conn)
    assert not conn.is_alive()
    assert isinstance(error.reason, tether.Crashed)
    assert error.reason.exception is handler.raised[-1]
    assert handler.count("connect_start") == 6  # the first start and 5 restarts
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")
    # Another connection under the same default supervisor goes on.
    assert tether.supervision.default_supervisor().is_alive()
    assert bystander.is_alive()
    assert bystander.await_body(bystander.get("/"), timeout=WAIT) == b"hello"


def test_a_crash_loop_makes_an_explicit_supervisor_give_up(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup(max_restarts=0, period=5)
    handler = Handler("request_start")
    conn = open_conn(
        aiohttp_server.host, aiohttp_server.port, supervisor=sup, event_handler=handler
    )
    assert conn.await_up(timeout=WAIT) == "http"
    conn.get("/")

    down = receive(conn)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.Crashed)
    error = final_error(conn)
    assert isinstance(error.reason, tether.SupervisorStopped)
    assert error.reason.gave_up
    assert sup.actor_ref.actor_stopped.wait(WAIT)
    assert not sup.is_alive()


def test_close_is_a_normal_exit_that_is_not_restarted(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    handler = Handler("never")
    conn = open_conn(
        aiohttp_server.host, aiohttp_server.port, supervisor=sup, event_handler=handler
    )
    assert conn.await_up(timeout=WAIT) == "http"
    assert len(sup.which_children()) == 1

    conn.close()

    down = receive(conn)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)
    assert conn.wait_stopped(WAIT)
    eventually(lambda: sup.which_children() == [])
    assert not conn.is_alive()
    assert handler.count("connect_start") == 1  # never started again
    assert conn.inbox is not None
    assert conn.inbox.flush() == []


def test_stopping_a_supervisor_stops_its_connections(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    conns = [open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup) for _ in range(2)]
    for conn in conns:
        assert conn.await_up(timeout=WAIT) == "http"

    assert sup.stop(timeout=WAIT)

    for conn in conns:
        # Up and idle: it is lost (Down), and will not come back (Error).
        down = receive(conn)
        assert isinstance(down, tether.Down)
        assert isinstance(down.reason, tether.SupervisorStopped)
        error = final_error(conn)
        assert isinstance(error.reason, tether.SupervisorStopped)
        assert not error.reason.gave_up
        assert not conn.is_alive()
        with pytest.raises(tether.ConnectionStoppedError):
            conn.get("/")


def test_open_under_a_stopped_supervisor_raises(
    aiohttp_server: AiohttpServer, start_sup: StartSup
) -> None:
    sup = start_sup()
    sup.stop(timeout=WAIT)

    with pytest.raises(tether.SupervisorStopped):
        tether.open(aiohttp_server.host, aiohttp_server.port, supervisor=sup)


def test_open_rejects_a_supervisor_that_is_not_one(aiohttp_server: AiohttpServer) -> None:
    with pytest.raises(TypeError, match="supervisor"):
        tether.open(aiohttp_server.host, aiohttp_server.port, supervisor="gun_sup")  # type: ignore[arg-type]
