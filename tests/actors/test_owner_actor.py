"""A pykka actor as the owner of a connection (API.md's ``Chat`` example, for real).

The actor opens its connection in ``on_start`` with ``owner=self.actor_ref``
and reacts to events with ``match``; the test watches what it saw through a
thread-safe queue. Owner monitoring: once the actor is gone, the connection
shuts itself down.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest

import tether
from tests.actors.conftest import Recorder
from tests.conftest import ConnectionTracker
from tests.interop.aiohttp_server import AiohttpServer

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0


def take(seen: queue.Queue[Any], timeout: float = WAIT) -> Any:
    """The next thing an actor recorded (bounded wait)."""
    return seen.get(timeout=timeout)


class Chat(pykka.ThreadingActor):
    """API.md's owner actor: upgrade on Up, say hello on Upgrade, record everything."""

    def __init__(self, host: str, port: int, seen: queue.Queue[Any]) -> None:
        super().__init__()
        self.host, self.port, self.seen = host, port, seen

    def on_start(self) -> None:
        self.conn = tether.open(self.host, self.port, owner=self.actor_ref)
        self.seen.put(self.conn)

    def on_receive(self, message: Any) -> None:
        match message:
            case tether.Up(conn=conn):
                conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
            case tether.Upgrade(conn=conn):
                conn.ws_send(tether.Text("Hello!"))
            case tether.Ws(frame=tether.Text(data=_text)):
                pass
            case tether.Response(status=_status):
                pass  # the server refused the upgrade
            case tether.Error(reason=_reason):
                pass
        self.seen.put(message)


StartActor = Callable[..., pykka.ActorRef[Any]]


@pytest.fixture
def chat(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_actor: StartActor
) -> tuple[pykka.ActorRef[Any], tether.Connection, queue.Queue[Any]]:
    """A running ``Chat`` actor, its connection and what it saw so far."""
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(Chat, aiohttp_server.host, aiohttp_server.port, seen)
    conn = open_conn.track(take(seen))
    return ref, conn, seen


def test_actor_owner_sees_up_upgrade_then_ws(chat: Any) -> None:
    _, conn, seen = chat
    up, upgrade, ws = take(seen), take(seen), take(seen)
    assert up == tether.Up(conn, "http")
    assert isinstance(upgrade, tether.Upgrade)
    assert upgrade.protocols == ("websocket",)
    assert ("sec-websocket-protocol", "mychat") in upgrade.headers
    assert ws == tether.Ws(conn, upgrade.stream, tether.Text("Hello!"))
    assert seen.empty()


def test_connection_stops_when_owner_actor_stops(chat: Any, aiohttp_server: AiohttpServer) -> None:
    ref, conn, seen = chat
    for expected in (tether.Up, tether.Upgrade, tether.Ws):
        assert isinstance(take(seen), expected)
    ref.stop(block=True, timeout=WAIT)

    # The connection learns of it when it next has something to deliver: the
    # echo of this frame finds the owner dead. (Its periodic owner check may
    # have noticed first; then the send itself is refused.)
    with contextlib.suppress(tether.NotUpgradedError, tether.ConnectionStoppedError):
        conn.ws_send("anyone there?")
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert aiohttp_server.next_ws_end() is not None  # the server saw the socket go
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")
    assert seen.empty()  # a dead owner is told nothing


def test_idle_connection_stops_when_owner_actor_stops(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_actor: StartActor
) -> None:
    # An idle HTTP connection has nothing to tell its owner: its periodic
    # owner check notices the dead actor instead (every 2 s).
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(Recorder, seen)
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, owner=ref)
    assert take(seen) == tether.Up(conn, "http")
    ref.stop(block=True, timeout=WAIT)
    assert conn.wait_stopped(WAIT)


def test_await_functions_refuse_an_actor_owner(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker, start_actor: StartActor
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    ref = start_actor(Recorder, seen)
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, owner=ref)
    assert conn.inbox is None
    assert take(seen) == tether.Up(conn, "http")
    stream = conn.get("/")

    started = time.monotonic()
    with pytest.raises(tether.OwnerError):
        conn.await_up(timeout=30)
    with pytest.raises(tether.OwnerError):
        conn.await_(stream, timeout=30)
    with pytest.raises(tether.OwnerError):
        conn.await_body(stream, timeout=30)
    with pytest.raises(tether.OwnerError):
        conn.flush()
    assert time.monotonic() - started < WAIT  # at once, not after the 30 s timeouts

    # The events went to the actor, untouched by the refused calls.
    response = take(seen)
    assert isinstance(response, tether.Response)
    assert (response.stream, response.status) == (stream, 200)
    assert take(seen) == tether.Data(conn, stream, True, b"hello")
