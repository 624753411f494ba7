"""What a connection keeps, and what its owner is told, when a supervisor restarts it (issue 18).

F1: ``ws_opts`` ``reupgrade`` was forgotten by the restarted generation (a
crash, then ``Up`` and never an ``Upgrade`` again). F2: a sibling that
``one_for_all`` / ``rest_for_one`` restarted got a second ``Up`` with no
``Down``, its Websocket stream was never reported killed, and the handle
still thought it was upgraded. Against the aiohttp test server; crashes are
injected with an ``event_handler`` that raises once (it runs inside the
connection actor, as in Gun).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker
from tests.interop.aiohttp_server import AiohttpServer
from tests.supervision.conftest import WAIT, Boom, StartSup

pytestmark = pytest.mark.usefixtures("thread_baseline")


class CrashOnce:
    """An event handler that raises the first time it sees ``phase`` (after ``armed``)."""

    def __init__(self, phase: str, *, armed: bool = True) -> None:
        self.phase = phase
        self.armed = threading.Event()
        if armed:
            self.armed.set()
        self.crashed = threading.Event()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        if name == self.phase and self.armed.is_set() and not self.crashed.is_set():
            self.crashed.set()
            raise Boom(f"crash on {name}")


def next_event(conn: tether.Connection) -> object:
    assert conn.inbox is not None
    return conn.inbox.receive(timeout=WAIT)


def expect(conn: tether.Connection, kind: type) -> Any:
    event = next_event(conn)
    assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
    return event


def echo(conn: tether.Connection, text: str) -> None:
    stream = conn._ws_stream
    assert stream is not None
    conn.ws_send(text)
    event = expect(conn, tether.Ws)
    assert event.stream is stream
    assert event.frame == tether.Text(text)


def test_reupgrade_survives_a_restart_after_a_crash(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    # F1: market_feed.py's pattern (reupgrade) went silent after any crash.
    handler = CrashOnce("ws_recv_frame")
    conn = open_conn(
        aiohttp_server.host,
        aiohttp_server.port,
        ws_opts={"reupgrade": True},
        event_handler=handler,
    )
    assert expect(conn, tether.Up).protocol == "http"
    first = conn.ws_upgrade("/websocket-nocompress")
    assert expect(conn, tether.Upgrade).stream is first
    conn.ws_send("boom")  # its echo crashes the actor (the handler runs first)

    down = expect(conn, tether.Down)
    assert isinstance(down.reason, tether.Crashed)
    assert down.killed_streams == (first,)
    assert expect(conn, tether.Up).protocol == "http"
    again = expect(conn, tether.Upgrade)  # the restarted actor upgrades again
    assert again.stream is not first
    echo(conn, "after the restart")


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
def test_a_sibling_restarted_with_the_crashed_one_is_reported_down_then_up(
    strategy: str,
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    start_sup: StartSup,
) -> None:
    # F2: the sibling's owner got a second Up with no Down, its Websocket was
    # never reported killed, and the handle still refused requests
    # (UpgradedError) on what was now an HTTP connection.
    sup = start_sup(strategy=strategy, max_restarts=3, period=5.0)
    host, port = aiohttp_server.host, aiohttp_server.port
    handler = CrashOnce("request_start")
    crashing = open_conn(host, port, supervisor=sup, event_handler=handler)
    sibling = open_conn(host, port, supervisor=sup)  # after it: rest_for_one takes it too
    assert crashing.await_up(WAIT) == "http"
    assert expect(sibling, tether.Up).protocol == "http"
    ws = sibling.ws_upgrade("/websocket-nocompress")
    assert expect(sibling, tether.Upgrade).stream is ws
    echo(sibling, "before")

    crashing.get("/")  # crashes: the supervisor restarts both

    down = expect(sibling, tether.Down)
    assert down.protocol == "ws"
    assert isinstance(down.reason, tether.SupervisorStopped)
    assert down.killed_streams == (ws,)
    assert not sibling.upgraded  # the handle knows it speaks HTTP again
    assert expect(sibling, tether.Up).protocol == "http"
    assert sibling.await_body(sibling.get("/"), WAIT) == b"hello"
    again = sibling.ws_upgrade("/websocket-nocompress")
    assert expect(sibling, tether.Upgrade).stream is again
    echo(sibling, "after")
    assert sibling.inbox is not None
    assert sibling.inbox.flush() == []  # nothing else: no second Up, no stray Error
