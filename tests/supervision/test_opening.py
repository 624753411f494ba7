"""``tether.open`` returns before the connection actor exists, as the owner sees it.

``open()`` only tells the supervisor to start the actor; the handle keeps
the commands given before the actor exists and the actor takes them first.
These tests give commands right after ``open()`` (most of them reach the
handle before the actor does), start children that cannot start, and stop
supervisors whose children are still starting. The server is the aiohttp
test server.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.interop.aiohttp_server import AiohttpServer
from tests.supervision.conftest import WAIT, StartSup, eventually, final_error
from tether.actors import ConnectionActor

pytestmark = pytest.mark.usefixtures("thread_baseline")

WS_HEADERS = [("sec-websocket-protocol", "mychat")]


def next_event(conn: tether.Connection) -> object:
    return inbox_of(conn).receive(timeout=WAIT)


def body_or_loss(conn: tether.Connection, stream: tether.StreamRef) -> bytes | BaseException:
    """The body of ``stream``, or the reason it was lost (in a Down, or its own Error)."""
    try:
        return conn.await_body(stream, timeout=WAIT)
    except tether.StreamLost as lost:
        return lost.reason
    except tether.SupervisorStopped as stopped:  # refused: it was still to be sent
        return stopped


def stream_lost_by_close(conn: tether.Connection, stream: tether.StreamRef) -> bool:
    """True if ``stream`` ended because of ``close()`` (refused before Up, or killed after)."""
    try:
        event = conn.await_(stream, timeout=WAIT)
    except tether.StreamLost as lost:
        return isinstance(lost.reason, tether.ClosedByUser)
    return isinstance(event, tether.Error) and isinstance(event.reason, tether.ClosedByUser)


# -- commands right after open() -------------------------------------------------------------


def test_a_websocket_upgrade_given_at_once_is_made_after_up(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    conn = open_conn(aiohttp_server.host, aiohttp_server.port)
    stream = conn.ws_upgrade("/websocket", WS_HEADERS)

    assert next_event(conn) == tether.Up(conn, "http")
    upgrade = next_event(conn)
    assert isinstance(upgrade, tether.Upgrade)
    assert upgrade.stream is stream
    conn.ws_send(tether.Text("first"))
    assert next_event(conn) == tether.Ws(conn, stream, tether.Text("first"))


def test_a_request_then_an_upgrade_given_at_once_are_made_in_that_order(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    conn = open_conn(aiohttp_server.host, aiohttp_server.port)
    get = conn.get("/")
    upgrade = conn.ws_upgrade("/websocket", WS_HEADERS)

    assert conn.await_body(get, timeout=WAIT) == b"hello"
    event = conn.await_(upgrade, timeout=WAIT)
    assert isinstance(event, tether.Upgrade)
    assert [aiohttp_server.next_request().path for _ in range(2)] == ["/", "/websocket"]


@pytest.mark.parametrize("then", ["close", "shutdown"])
def test_close_or_shutdown_given_at_once_stops_the_connection(
    then: str, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup)
    getattr(conn, then)()

    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert conn.info().state == "stopped"
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")
    eventually(lambda: sup.which_children() == [])  # a normal exit: not restarted


def test_a_request_then_close_given_at_once_ends_the_request_with_the_close(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    conn = open_conn(aiohttp_server.host, aiohttp_server.port)
    stream = conn.get("/")
    conn.close()

    assert conn.wait_stopped(WAIT)
    assert stream_lost_by_close(conn, stream)


def test_the_handle_is_usable_before_the_actor_exists(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup)

    assert conn.is_alive()
    assert conn.info().state in ("connecting", "up")  # not "stopped": it has not started
    assert not conn.wait_stopped(0.01)
    assert conn.await_up(timeout=WAIT) == "http"
    # The supervisor handles its messages in order: the start came first.
    [row] = sup.which_children()
    assert row.id.startswith("connection-")
    assert row.ref is not None
    assert row.ref.is_alive()


def open_while_threads_give_requests(
    open_conn: ConnectionTracker,
    host: str,
    port: int,
    sup: tether.Supervisor,
    threads: int,
    requests: int,
) -> tuple[tether.Connection, list[list[tether.StreamRef]]]:
    """Open a connection while ``threads`` threads each give it ``requests`` GETs.

    The threads are waiting when ``open()`` is called and start as it
    returns, so that their requests race the supervisor building the actor.
    """
    holder: list[tether.Connection] = []
    ready = threading.Barrier(threads + 1, timeout=WAIT)
    given: list[list[tether.StreamRef]] = [[] for _ in range(threads)]

    def give(streams: list[tether.StreamRef]) -> None:
        ready.wait()
        streams.extend(holder[0].get("/") for _ in range(requests))

    workers = [threading.Thread(target=give, args=(streams,)) for streams in given]
    for worker in workers:
        worker.start()
    holder.append(open_conn(host, port, supervisor=sup))
    ready.wait()
    for worker in workers:
        worker.join(WAIT)
        assert not worker.is_alive()
    return holder[0], given


def test_commands_told_while_the_actor_starts_arrive_once_and_in_order(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    # Some requests are kept by the handle, some go to the actor as it takes
    # over, some after. Each must reach the server once, and responses come
    # back in request order (HTTP/1.1), so each thread's streams must be
    # answered in the order that thread gave them.
    threads, requests = 4, 10
    sup = start_sup()
    for _ in range(10):
        conn, given = open_while_threads_give_requests(
            open_conn, aiohttp_server.host, aiohttp_server.port, sup, threads, requests
        )
        answered = []
        for _ in range(threads * requests):
            event = inbox_of(conn).receive(
                timeout=WAIT, match=lambda m: isinstance(m, tether.Response)
            )
            assert isinstance(event, tether.Response)
            assert event.status == 200
            answered.append(event.stream)
        for streams in given:
            assert [s for s in answered if s in streams] == streams
        conn.close()
        assert conn.wait_stopped(WAIT)


# -- starts that fail (open under a stopped supervisor: test_connections.py) ----------------


def test_a_start_that_fails_ends_the_handle_with_an_error(
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    start_sup: StartSup,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()

    def cannot_start(conn: tether.Connection) -> Any:
        # As when the process cannot start one more thread; held until the
        # test has given a request, so that the request is kept for the actor.
        assert release.wait(WAIT)
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(ConnectionActor, "start", cannot_start)
    # On the supervisor's thread, as when it is busy as open() tells it (an
    # idle one lets the opening thread start the connection: the next test).
    monkeypatch.setattr(
        tether.Supervisor, "_start_connection_later", tether.Supervisor.start_child_later
    )
    sup = start_sup()
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup)
    stream = conn.get("/")
    release.set()

    with pytest.raises(tether.ConnectionDownError) as down:
        conn.await_up(timeout=WAIT)  # not a hang
    assert isinstance(down.value.reason, tether.Crashed)
    assert str(down.value.reason.exception) == "can't start new thread"
    # The kept request is not dropped silently: it ends with the same reason.
    refused = conn.await_(stream, timeout=WAIT)
    assert refused == tether.Error(conn, stream, down.value.reason)
    assert inbox_of(conn).flush() == []
    assert not conn.is_alive()
    assert conn.info().state == "stopped"
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")
    assert sup.is_alive()
    assert sup.which_children() == []


def test_a_start_that_fails_on_the_opening_thread_ends_the_handle_with_an_error(
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    start_sup: StartSup,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opening = threading.current_thread()
    started_on: list[threading.Thread] = []

    def cannot_start(conn: tether.Connection) -> Any:
        started_on.append(threading.current_thread())
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(ConnectionActor, "start", cannot_start)
    sup = start_sup()
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup)
    # The supervisor was idle: open() started the connection itself.
    assert started_on == [opening]
    with pytest.raises(tether.ConnectionDownError) as down:
        conn.await_up(timeout=WAIT)
    assert isinstance(down.value.reason, tether.Crashed)
    assert str(down.value.reason.exception) == "can't start new thread"
    assert not conn.is_alive()
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")
    assert sup.is_alive()
    assert sup.which_children() == []


def test_stopping_a_supervisor_whose_connections_are_starting_stops_them_all(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    # Some are started and then stopped, the rest never start: every handle
    # ends with the same Error, and no thread is left (thread_baseline).
    sup = start_sup()
    conns = [
        open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup) for _ in range(30)
    ]
    streams = [conn.get("/") for conn in conns]

    assert sup.stop(timeout=WAIT)

    for conn, stream in zip(conns, streams, strict=True):
        # Answered before the stop, or lost because of it.
        outcome = body_or_loss(conn, stream)
        assert outcome == b"hello" or isinstance(outcome, tether.SupervisorStopped), outcome
        error = final_error(conn, last=False)
        assert isinstance(error.reason, tether.SupervisorStopped)
        assert not error.reason.gave_up
        with pytest.raises(tether.ConnectionStoppedError):
            conn.get("/")


def test_a_connection_terminated_right_after_open_ends_with_an_error(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    sup = start_sup()
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervisor=sup)
    stream = conn.get("/")
    [row] = sup.which_children()

    sup.terminate_child(row.id)

    outcome = body_or_loss(conn, stream)
    assert outcome == b"hello" or isinstance(outcome, tether.SupervisorStopped), outcome
    error = final_error(conn, last=False)
    assert isinstance(error.reason, tether.SupervisorStopped)
    assert sup.which_children() == []
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")
