"""``tether.open(..., supervise=False)``: a connection under no supervisor (Gun's ``supervise``).

It connects, reconnects after a lost connection and closes as any other;
only a crash differs: nothing restarts it, so the owner sees the crash's
``Down`` and a final ``Error``, and the handle stops. The server is the
aiohttp test server; crashes come from an ``event_handler`` that raises.
"""

from __future__ import annotations

from typing import Any

import pykka
import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.interop.aiohttp_server import AiohttpServer
from tests.supervision.conftest import WAIT, Journal, StartSup, Worker
from tests.supervision.test_connections import Handler

pytestmark = pytest.mark.usefixtures("thread_baseline")


def children_for(server: AiohttpServer) -> list[str]:
    """Ids of the default supervisor's connection children that go to ``server``."""
    suffix = f"-{server.host}:{server.port}"
    children = tether.supervision.default_supervisor().which_children()
    return [child.id for child in children if child.id.endswith(suffix)]


def test_supervise_false(aiohttp_server: AiohttpServer, open_conn: ConnectionTracker) -> None:
    """gun_SUITE:supervise_false: it comes up, and no supervisor has it as a child."""
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervise=False)
    assert conn.await_up(WAIT) == "http"
    assert children_for(aiohttp_server) == []
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"

    supervised = open_conn(aiohttp_server.host, aiohttp_server.port)  # the default, to compare
    assert supervised.await_up(WAIT) == "http"
    assert len(children_for(aiohttp_server)) == 1


def test_a_crash_is_the_end_of_an_unsupervised_connection(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    handler = Handler("request_start", times=None)
    conn = open_conn(
        aiohttp_server.host, aiohttp_server.port, supervise=False, event_handler=handler
    )
    assert conn.await_up(WAIT) == "http"
    stream = conn.get("/")

    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.Crashed)
    assert down.reason.exception is handler.raised[0]
    assert stream in down.killed_streams
    final = inbox_of(conn).receive(WAIT)
    assert isinstance(final, tether.Error)
    assert final.stream is None
    assert isinstance(final.reason, tether.Crashed)
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert inbox_of(conn).flush() == []  # no Up: nothing restarted it
    assert handler.count("connect_start") == 1
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")


def test_an_unsupervised_connection_reconnects_after_a_lost_connection(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervise=False, retry_timeout=0.05)
    assert conn.await_up(WAIT) == "http"
    # Answered: the server has the connection (Up only says the kernel accepted it).
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"
    assert aiohttp_server.drop_connections() == 1
    assert isinstance(inbox_of(conn).receive(WAIT), tether.Down)
    assert conn.await_up(WAIT) == "http"
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"


def test_an_unsupervised_connection_closes(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, supervise=False)
    assert conn.await_up(WAIT) == "http"
    conn.close()
    assert conn.wait_stopped(WAIT)
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)


def test_opened_inside_a_start_function_it_does_not_take_the_childs_place(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_sup: StartSup
) -> None:
    """A start function that opens an unsupervised connection first still starts its own child."""
    journal = Journal()
    sup = start_sup()
    opened: list[tether.Connection] = []

    def start() -> pykka.ActorRef[Any]:
        opened.append(
            open_conn(aiohttp_server.host, aiohttp_server.port, supervise=False, retry=0)
        )
        return Worker.start(journal, "worker")

    ref = sup.start_child(tether.ChildSpec(id="worker", start=start))
    assert journal.take(1) == [("start", "worker")]
    [row] = sup.which_children()
    assert row.ref is ref
    [conn] = opened
    assert conn.await_up(WAIT) == "http"
    ref.tell("crash")  # the worker, not the connection, is the supervised child
    assert journal.take(2) == [("failure", "worker"), ("start", "worker")]
    assert conn.is_alive()


def test_supervise_false_with_a_supervisor_is_refused(
    aiohttp_server: AiohttpServer, start_sup: StartSup
) -> None:
    with pytest.raises(ValueError, match="supervise=False"):
        tether.open(
            aiohttp_server.host, aiohttp_server.port, supervise=False, supervisor=start_sup()
        )


@pytest.mark.parametrize("value", ["no", 0, None])
def test_supervise_must_be_a_bool(aiohttp_server: AiohttpServer, value: object) -> None:
    with pytest.raises(TypeError, match="supervise"):
        tether.open(aiohttp_server.host, aiohttp_server.port, supervise=value)  # type: ignore[arg-type]
