"""Pool behaviour against a real aiohttp server on 127.0.0.1 (Gun's gun_pool rules).

Capacity (HTTP/1.1: one request per connection at a time), waiting for a
connection and failing at the call when none comes, where events go,
Websocket upgrades, a lost request, a connection replaced, stopping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tether
from tests.interop.aiohttp_server import AiohttpServer

pytestmark = pytest.mark.usefixtures("thread_baseline", "checked_lock_order")

Start = Callable[..., tether.Pool]


@pytest.fixture
def start(aiohttp_server: AiohttpServer) -> Iterator[Start]:
    """Start pools to the aiohttp server; each is stopped at teardown, before the server."""
    pools: list[tether.Pool] = []

    def _start(size: int = 2, **opts: Any) -> tether.Pool:
        pool = tether.start_pool(aiohttp_server.host, aiohttp_server.port, size=size, **opts)
        pools.append(pool)
        return pool

    yield _start
    for pool in pools:
        pool.stop()


def test_a_request_before_any_connection_is_up_waits_for_one(start: Start):
    pool = start(size=2)
    stream = pool.get("/")  # no await_up: the checkout waits for an Up
    assert pool.await_body(stream) == b"hello"
    assert pool.connection_of(stream) in pool.connections


def test_http11_takes_one_request_per_connection_then_fails_at_the_call(
    start: Start, aiohttp_server: AiohttpServer
):
    pool = start(size=1, checkout_timeout=0.2)
    busy = pool.get("/slow?delay=1.0")
    assert aiohttp_server.next_request().path == "/slow"  # it is in flight
    info = pool.info().connections[0]
    assert (info.state, info.protocol, info.streams, info.capacity) == ("up", "http", 1, 1)
    with pytest.raises(tether.NoConnectionAvailable, match="up \\(1 stream\\)") as caught:
        pool.get("/")
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.timeout == 0.2
    assert pool.await_body(busy) == b"late"
    # Its stream ended: the connection takes the next request.
    assert pool.await_body(pool.get("/")) == b"hello"
    assert pool.info().connections[0].streams == 0


def test_no_connection_up_fails_at_the_call_after_checkout_timeout(refused_port: int):
    pool = tether.start_pool("127.0.0.1", refused_port, size=2, checkout_timeout=0.2)
    try:
        with pytest.raises(tether.NoConnectionAvailable, match="down, down"):
            pool.get("/")
        assert pool.info().state == "degraded"
    finally:
        pool.stop()


def test_events_go_to_the_owner_or_to_reply_to(start: Start):
    owner = tether.Inbox()
    pool = start(size=2, owner=owner)
    assert pool.inbox is owner
    stream = pool.get("/")
    response = owner.receive(5.0, lambda m: getattr(m, "stream", None) is stream)
    assert isinstance(response, tether.Response)
    assert response.conn is pool.connection_of(stream)
    other = tether.Inbox()
    elsewhere = pool.get("/", reply_to=other)
    assert pool.await_body(elsewhere) == b"hello"  # awaited where its events went
    assert owner.flush(lambda m: getattr(m, "stream", None) is elsewhere) == []


def test_a_websocket_keeps_its_connection_and_requests_go_to_the_others(start: Start):
    pool = start(size=2)
    pool.await_up()
    ws = pool.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    assert isinstance(pool.await_(ws), tether.Upgrade)
    ws_conn = pool.connection_of(ws)
    streams = [pool.get("/") for _ in range(4)]
    assert {pool.connection_of(s) for s in streams} == {
        c for c in pool.connections if c is not ws_conn
    }
    assert [pool.await_body(s) for s in streams] == [b"hello"] * 4
    pool.ws_send("hi", ws)
    echo = pool.await_(ws)
    assert isinstance(echo, tether.Ws)
    assert echo.frame == tether.Text("hi")
    capacities = {c.conn: c.capacity for c in pool.info().connections}
    assert capacities[ws_conn] == 0


def test_a_request_lost_with_its_connection_fails_and_the_pool_recovers(
    start: Start, aiohttp_server: AiohttpServer
):
    pool = start(size=1, retry_timeout=0.05)
    stream = pool.get("/slow?delay=30")
    assert aiohttp_server.next_request().path == "/slow"
    conn = pool.connection_of(stream)
    assert aiohttp_server.drop_connections() == 1
    with pytest.raises((tether.ConnectionClosed, ConnectionError)):
        pool.await_body(stream)
    assert pool.await_body(pool.get("/")) == b"hello"  # the same connection, reconnected
    assert pool.connections == (conn,)


def test_a_connection_that_stops_for_good_is_replaced(start: Start, aiohttp_server: AiohttpServer):
    pool = start(size=1, retry=0)
    assert pool.await_body(pool.get("/")) == b"hello"  # the server has accepted it
    (first,) = pool.connections
    assert aiohttp_server.drop_connections() == 1
    first.wait_stopped(5.0)  # retry=0: no reconnect, the connection stops
    assert not first.is_alive()
    # Gun's manager opens a new connection in its place.
    assert pool.await_body(pool.get("/")) == b"hello"
    (second,) = pool.connections
    assert second is not first
    assert second.is_alive()


def test_a_cancelled_stream_frees_its_connection(start: Start, aiohttp_server: AiohttpServer):
    pool = start(size=1, checkout_timeout=5.0)
    slow = pool.get("/slow?delay=0.2")
    assert aiohttp_server.next_request().path == "/slow"
    pool.cancel(slow)
    assert pool.info().connections[0].streams == 0
    # Sent on the same connection behind the cancelled response (read and dropped).
    assert pool.await_body(pool.get("/")) == b"hello"
    assert pool.flush(slow) == 0


def test_stop_closes_every_connection_and_refuses_requests(start: Start):
    pool = start(size=3)
    pool.await_up()
    conns = pool.connections
    pool.stop()
    assert not pool.is_alive()
    assert not any(c.is_alive() for c in conns)
    with pytest.raises(tether.PoolStopped):
        pool.get("/")
    with pytest.raises(tether.PoolStopped):
        pool.await_up()
    pool.stop()  # idempotent


def test_a_pool_under_a_supervisor_stops_with_it(aiohttp_server: AiohttpServer):
    sup = tether.Supervisor.start()
    pool = tether.start_pool(aiohttp_server.host, aiohttp_server.port, size=2, supervisor=sup)
    try:
        pool.await_up()
        conns = pool.connections
        sup.stop()
        for conn in conns:
            assert conn.wait_stopped(5.0)
        with pytest.raises(tether.PoolStopped):
            pool.get("/")
    finally:
        pool.stop()


def test_streams_of_other_pools_are_refused(start: Start):
    pool = start(size=1)
    with pytest.raises(ValueError, match="not a stream of this pool"):
        pool.await_(tether.StreamRef())
    with pytest.raises(TypeError):
        pool.cancel("stream")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"size": 0}, ValueError, "size"),
        ({"size": True}, TypeError, "size"),
        ({"checkout_timeout": 0}, ValueError, "checkout_timeout"),
        ({"supervise": False}, TypeError, "supervise"),
        ({"retry": "many"}, TypeError, "retry"),
        ({"owner": object()}, TypeError, "owner"),
    ],
)
def test_bad_arguments_raise_and_leave_nothing_running(
    aiohttp_server: AiohttpServer, kwargs: dict[str, Any], error: type[Exception], match: str
):
    with pytest.raises(error, match=match):
        tether.start_pool(aiohttp_server.host, aiohttp_server.port, **kwargs)


def test_a_request_waiting_for_a_connection_fails_when_the_pool_stops(refused_port: int):
    # Nothing ever comes up: only stop() can end the wait before its 60 s.
    pool = tether.start_pool("127.0.0.1", refused_port, size=1, checkout_timeout=60.0)
    outcome: list[BaseException] = []

    def waiter() -> None:
        try:
            pool.get("/")  # waits (or, if stop came first, fails at once)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    pool.stop()
    thread.join(10.0)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], tether.PoolStopped)


def test_stop_ends_the_streams_in_flight_as_closed_by_user(
    start: Start, aiohttp_server: AiohttpServer
):
    pool = start(size=1)
    busy = pool.get("/slow?delay=30")
    assert aiohttp_server.next_request().path == "/slow"
    pool.stop()
    with pytest.raises(tether.ClosedByUser):  # the stream's Error, told to its reply_to
        pool.await_body(busy)


def test_a_streamed_body_goes_on_the_stream_s_connection(start: Start):
    pool = start(size=2)
    stream = pool.headers("POST", "/echo", [("content-type", "text/plain")])
    info = pool.stream_info(stream)
    assert info is not None
    assert info.reply_to is pool.inbox
    pool.data(stream, False, b"hello ")
    pool.data(stream, True, b"pool")
    assert pool.await_body(stream) == b"hello pool"


def test_an_async_inbox_awaits_pool_streams_with_their_connection(start: Start):
    pool = start(size=2)

    async def main() -> list[bytes]:
        inbox = tether.AsyncInbox()
        streams = [pool.get("/", reply_to=inbox) for _ in range(2)]
        return [await inbox.await_body(pool.connection_of(s), s) for s in streams]

    assert asyncio.run(main()) == [b"hello", b"hello"]
