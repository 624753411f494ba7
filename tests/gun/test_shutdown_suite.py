"""Gun's ``shutdown_SUITE`` (HTTP/1.1 and Websocket cases), against aiohttp and scripted origins.

Gun's process exits where tether's connection stops: ``gun_is_down``
becomes ``conn.wait_stopped``. Gun sends no ``gun_down`` when it stops
after a graceful shutdown or a ``connection: close``; tether's owner gets a
``Down`` for a connection that was up (its reason says why), then nothing.
Gun's ``{stream_error, {closing, shutdown}}`` and ``{stream_error,
closing}`` are ``Error`` events for the stream whose reason is
``ClosedByUser`` (shutdown) or ``ConnectionClosed`` (``connection: close``).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

import tether
from tests.conftest import inbox_of
from tests.gun.conftest import WAIT, Origin, Script, read_request

pytestmark = pytest.mark.usefixtures("thread_baseline")

E = TypeVar("E")
Connect = Callable[..., tether.Connection]


def up(connect: Connect, **options: object) -> tether.Connection:
    conn = connect(**options)
    assert conn.await_up(WAIT) == "http"
    return conn


def await_as(conn: tether.Connection, stream: tether.StreamRef, kind: type[E]) -> E:
    event = conn.await_(stream, WAIT)
    assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
    return event


def stream_error(
    conn: tether.Connection, stream: tether.StreamRef, reason: type[BaseException]
) -> None:
    """Gun's ``{error, {stream_error, ...}}`` for ``stream``: its Error event."""
    error = await_as(conn, stream, tether.Error)
    assert isinstance(error.reason, reason), error.reason


def is_down(conn: tether.Connection, reason: type[BaseException]) -> None:
    """Gun's ``gun_is_down``: the connection stopped; its last event a Down (was up)."""
    assert conn.wait_stopped(WAIT)
    events = inbox_of(conn).flush()
    assert events, "no Down"
    down = events[-1]
    assert isinstance(down, tether.Down), events
    assert isinstance(down.reason, reason), down.reason
    assert not [e for e in events if isinstance(e, tether.Error)], events


def test_http1_gun_shutdown_pipelined_streams(connect: Connect) -> None:
    """The request in progress finishes; the ones behind it fail at once (issue 19, bug 3)."""
    conn = up(connect)
    first, second, third = (conn.get("/slow?delay=0.3") for _ in range(3))
    conn.shutdown()
    stream_error(conn, second, tether.ClosedByUser)  # before the first is answered
    stream_error(conn, third, tether.ClosedByUser)
    assert await_as(conn, first, tether.Response).status == 200
    assert conn.await_body(first, WAIT) == b"late"
    is_down(conn, tether.ClosedByUser)


def test_closing_gun_shutdown(connect: Connect) -> None:
    """A close frame, then shutdown(): the echo, the Down, the stop, no Error (issue 19, bug 2).

    shutdown()'s own close frame used to be refused (the Websocket was
    closing already), reported as an Error for a frame the user never sent.
    """
    conn = up(connect)
    ws = conn.ws_upgrade("/websocket-nocompress")
    await_as(conn, ws, tether.Upgrade)
    conn.ws_send(tether.Close(3333, ""))
    conn.shutdown()
    reply = await_as(conn, ws, tether.Ws)
    assert isinstance(reply.frame, tether.Close)  # aiohttp answers 1000, not an echo of 3333
    assert conn.wait_stopped(WAIT)
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.WsClosed)
    assert (down.reason.code, down.reason.by_server) == (3333, False)
    assert inbox_of(conn).flush() == []  # no Error, no Up: no reconnect after a shutdown


def test_http1_request_connection_close_pipeline(connect: Connect) -> None:
    """A request with connection: close: the ones behind it cannot go out and fail at once."""
    conn = up(connect, retry=0)
    first = conn.get("/slow?delay=0.3", [("connection", "close")])
    second, third = conn.get("/"), conn.get("/")
    stream_error(conn, second, tether.ConnectionClosed)  # before the first is answered
    stream_error(conn, third, tether.ConnectionClosed)
    assert await_as(conn, first, tether.Response).status == 200
    assert conn.await_body(first, WAIT) == b"late"
    assert conn.wait_stopped(WAIT)


def test_http1_response_connection_close_delayed_body(
    origin: Callable[[Script], Origin],
) -> None:
    """Requests made once a connection: close head arrived fail at once (issue 19, bug 4).

    They used to be reported only in the final Down, after the whole body.
    The origin holds the rest of the body until the test has seen both
    refusals.
    """
    rest = threading.Event()

    def serve(client: socket.socket) -> None:
        assert read_request(client).startswith(b"GET / HTTP/1.1\r\n")
        client.sendall(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 12\r\n\r\nHello")
        assert rest.wait(WAIT)
        client.sendall(b" world!")

    server = origin(serve)
    conn = tether.open(server.host, server.port, retry=0)
    try:
        assert conn.await_up(WAIT) == "http"
        first, second = conn.get("/"), conn.get("/")
        assert await_as(conn, first, tether.Response).status == 200
        stream_error(conn, second, tether.ConnectionClosed)  # queued: fails at once
        assert await_as(conn, first, tether.Data).data == b"Hello"
        third = conn.get("/")  # made while the connection is closing: fails at once
        stream_error(conn, third, tether.ConnectionClosed)
        rest.set()
        data = await_as(conn, first, tether.Data)
        assert (data.data, data.fin) == (b" world!", True)
        assert conn.wait_stopped(WAIT)
    finally:
        conn.close()
