"""Gun's ``gun_SUITE`` (HTTP/1.1 cases), against aiohttp and scripted origins.

Gun's ``reply_to`` takes a pid or a fun; tether's takes an Inbox, a pykka
actor, anything with ``tell``, or a callable. ``gun:info`` is
``conn.info()``; ``gun:stream_info`` is ``conn.stream_info(stream)``.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import pykka
import pytest

import tether
from tests.actors.conftest import Recorder
from tests.conftest import inbox_of
from tests.gun.conftest import WAIT, Origin, Script, read_request

pytestmark = pytest.mark.usefixtures("thread_baseline")

Connect = Callable[..., tether.Connection]
HELLO = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nHello world!"


def up(connect: Connect, **options: object) -> tether.Connection:
    conn = connect(**options)
    assert conn.await_up(WAIT) == "http"
    return conn


def answers_hello(client: socket.socket) -> None:
    """Gun's do_reply_to origin: one request, one 12-byte answer."""
    assert read_request(client)
    client.sendall(HELLO)
    client.recv(1)  # until the client goes (bounded by the socket's timeout)


# -- reply_to ---------------------------------------------------------------------------


def test_reply_to_http_inbox(origin: Callable[[Script], Origin], open_conn: Any) -> None:
    """reply_to_http: a stream's events go to another Inbox; the owner gets none of them."""
    server = origin(answers_hello)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    other = tether.Inbox()
    stream = conn.get("/", reply_to=other)
    assert conn.await_body(stream, WAIT) == b"Hello world!"  # await_ waits in the reply_to
    assert inbox_of(conn).flush() == []


def test_reply_to_http_actor(
    origin: Callable[[Script], Origin],
    open_conn: Any,
    start_actor: Callable[..., pykka.ActorRef[Any]],
) -> None:
    """reply_to_http (a pid): a pykka actor gets the stream's Response and Data."""
    seen: queue.Queue[Any] = queue.Queue()
    actor = start_actor(Recorder, seen)
    server = origin(answers_hello)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    stream = conn.get("/", reply_to=actor)
    response = seen.get(timeout=WAIT)
    assert isinstance(response, tether.Response)
    assert (response.stream, response.status) == (stream, 200)
    assert seen.get(timeout=WAIT) == tether.Data(conn, stream, True, b"Hello world!")


def test_reply_to_http_f(origin: Callable[[Script], Origin], open_conn: Any) -> None:
    """reply_to_http_f: a callable is called with each of the stream's events."""
    seen: queue.Queue[Any] = queue.Queue()
    server = origin(answers_hello)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    stream = conn.get("/", reply_to=seen.put)
    assert isinstance(seen.get(timeout=WAIT), tether.Response)
    assert seen.get(timeout=WAIT) == tether.Data(conn, stream, True, b"Hello world!")
    assert inbox_of(conn).flush() == []


def test_reply_to_websocket(connect: Connect) -> None:
    """ws_SUITE reply_to: the upgrade and the Websocket's frames go to the reply_to."""
    conn = up(connect)
    other = tether.Inbox()
    ws = conn.ws_upgrade("/websocket-nocompress", reply_to=other)
    assert isinstance(conn.await_(ws, WAIT), tether.Upgrade)
    conn.ws_send("Hello!")
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("Hello!"))
    assert inbox_of(conn).flush() == []


def test_a_lost_connection_tells_a_reply_to_its_stream_is_lost(
    connect: Connect, aiohttp_server: Any
) -> None:
    """The owner gets the Down; the reply_to gets an Error for its stream (Gun's {closed, _})."""
    conn = up(connect)
    other = tether.Inbox()
    stream = conn.get("/slow?delay=1", reply_to=other)
    request = aiohttp_server.next_request()  # the request is in
    assert request.path == "/slow"
    assert aiohttp_server.drop_connections() == 1
    error = other.receive(WAIT)
    assert isinstance(error, tether.Error)
    assert error.stream is stream
    assert isinstance(error.reason, tether.ConnectionClosed)
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert down.killed_streams == (stream,)


def test_reply_to_must_be_something_that_can_be_told(connect: Connect) -> None:
    conn = up(connect)
    with pytest.raises(TypeError, match="reply_to"):
        conn.get("/", reply_to=42)


# -- set_owner, stream_info -------------------------------------------------------------


def test_set_owner(connect: Connect) -> None:
    """set_owner: info() reports the new owner, which gets the events from then on."""
    conn = up(connect)
    new_owner = tether.Inbox()
    conn.set_owner(new_owner)
    assert conn.info(WAIT).owner is new_owner
    assert conn.inbox is new_owner
    stream = conn.get("/")
    assert conn.await_body(stream, WAIT) == b"hello"  # waits in the new owner
    new_owner.close()  # owner monitoring moved with it: the connection stops
    assert conn.wait_stopped(WAIT)


def test_stream_info_http(origin: Callable[[Script], Origin], open_conn: Any) -> None:
    """stream_info_http: None for an unknown stream; running; stopping once cancelled; None."""
    cancelled = threading.Event()

    def serve(client: socket.socket) -> None:
        assert read_request(client)
        assert cancelled.wait(WAIT)
        client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        client.recv(1)  # until the client goes

    server = origin(serve)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    assert conn.stream_info(tether.StreamRef()) is None
    stream = conn.get("/")
    assert conn.stream_info(stream) == tether.StreamInfo(stream, "running", conn.inbox)
    conn.cancel(stream)
    assert conn.stream_info(stream) == tether.StreamInfo(stream, "stopping", conn.inbox)
    cancelled.set()
    info: tether.StreamInfo | None = None
    for _ in range(500):  # until the discarded response has been read (bounded)
        info = conn.stream_info(stream)
        if info is None:
            break
        assert info.state == "stopping"
    assert info is None
    conn.close()
    assert conn.wait_stopped(WAIT)
    assert conn.stream_info(stream) is None  # not connected
