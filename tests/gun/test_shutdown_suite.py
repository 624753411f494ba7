"""Gun's ``shutdown_SUITE`` (HTTP/1.1 and Websocket cases), against aiohttp and scripted origins.

Gun's process exits where tether's connection stops: ``gun_is_down``
becomes ``conn.wait_stopped``. Gun sends no ``gun_down`` when it stops
after a graceful shutdown; tether's owner gets a ``Down`` for a connection
that was up (its reason says why), then nothing. When the server ends the
connection (``connection: close``, a close frame) and ``retry`` is 0, both
send the down message; tether's last event is then its usual final
``Error(conn, None, RetriesExhausted)`` where Gun exits ``normal``.
Gun's ``{stream_error, {closing, shutdown}}`` and ``{stream_error,
closing}`` are ``Error`` events for the stream whose reason is
``ClosedByUser`` (shutdown) or ``ConnectionClosed`` (``connection: close``).

Gun's routes are Cowboy handlers; here the aiohttp test server's
(``tests/interop/aiohttp_server.py``): ``/delayed`` is ``/slow?delay=D``,
``/ws`` is ``/websocket-nocompress``, ``/ws_frozen`` is
``/websocket-frozen`` (frozen until the test thaws it), ``/ws_timeout_close``
is ``/websocket-close``, Cowboy's ``max_keepalive => 1`` is ``/close``.

The owner cases: Gun's owner is a process the case spawns, which exits
``normal`` (``*_owner_down``) or crashes (``*_owner_down_error``). Here it
is an Inbox that is closed or a pykka actor that is stopped (normal), or a
pykka actor that raises (error). tether cannot tell a crash from a stop
(pykka keeps no exit reason): both stop the connection alike, and the
``terminate`` phase's reason is ``OwnerDown`` where Gun's exit reason is
``normal`` or ``{shutdown, {owner_down, unexpected}}``. An idle connection
notices its owner is gone at the next owner check (every 2 s): these
tests run tether's timers on a fake clock and move it past the check.
"""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pykka
import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.events import await_as
from tests.events import awaited_up as up
from tests.gun.conftest import WAIT, Origin, Script, read_request
from tests.interop.aiohttp_server import AiohttpServer
from tether.actors._connection import OWNER_CHECK_INTERVAL
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

E = TypeVar("E")
Connect = Callable[..., tether.Connection]


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


def is_down_for_good(
    conn: tether.Connection, protocol: str, reason: type[E]
) -> tuple[tether.Down, E]:
    """``gun_is_down`` with ``retry => 0``: the Down (and its reason), then the final Error."""
    assert conn.wait_stopped(WAIT)
    down, final = inbox_of(conn).flush()
    assert isinstance(down, tether.Down), down
    assert down.protocol == protocol
    assert isinstance(down.reason, reason), down.reason
    assert isinstance(final, tether.Error)
    assert final.stream is None
    assert isinstance(final.reason, tether.RetriesExhausted)
    assert final.reason.last_reason is down.reason
    return down, down.reason


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


def test_http1_gun_shutdown_pipelined_streams_with_reply_to(connect: Connect) -> None:
    """As http1_gun_shutdown_pipelined_streams, the streams behind it with a ``reply_to``:
    each one's Error goes to its ``reply_to``, not to the owner."""
    conn = up(connect)
    elsewhere = tether.Inbox()
    first = conn.get("/slow?delay=0.3")
    second, third = (conn.get("/slow?delay=0.3", reply_to=elsewhere) for _ in range(2))
    conn.shutdown()
    for stream in (second, third):
        error = elsewhere.receive(WAIT)
        assert isinstance(error, tether.Error), error
        assert error.stream == stream
        assert isinstance(error.reason, tether.ClosedByUser)
    assert await_as(conn, first, tether.Response).status == 200
    assert conn.await_body(first, WAIT) == b"late"
    is_down(conn, tether.ClosedByUser)  # the owner saw no Error
    assert len(elsewhere) == 0


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


# -- the owner cases: an Inbox closed, a pykka actor stopped or crashed -------------------

CRASH = "crash"


class OwnerActor(pykka.ThreadingActor):
    """Gun's spawned owner process: puts each event in ``seen``; ``CRASH`` makes it raise."""

    def __init__(self, seen: queue.Queue[Any]) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message: Any) -> None:
        if message == CRASH:
            raise RuntimeError("unexpected")  # Gun's exit(unexpected)
        self.seen.put(message)


class Owner:
    """An owner of one kind (``inbox``, ``actor``, ``actor_crash``): its events and its end."""

    def __init__(self, kind: str, start_actor: Callable[..., pykka.ActorRef[Any]]) -> None:
        self.kind = kind
        self._seen: queue.Queue[Any] = queue.Queue()
        self._inbox = tether.Inbox()
        self._actor = None if kind == "inbox" else start_actor(OwnerActor, self._seen)
        self.target: object = self._inbox if self._actor is None else self._actor

    def next(self) -> object:
        """The owner's next event."""
        if self._actor is None:
            return self._inbox.receive(WAIT)
        return self._seen.get(timeout=WAIT)

    def end(self) -> None:
        """The owner goes: its Inbox closed, its actor stopped, or its actor crashed."""
        if self._actor is None:
            self._inbox.close()
        elif self.kind == "actor":
            self._actor.stop(block=True, timeout=WAIT)
        else:
            self._actor.tell(CRASH)
            assert self._actor.actor_stopped.wait(WAIT)


@pytest.fixture(params=["inbox", "actor", "actor_crash"])
def owner(request: pytest.FixtureRequest, start_actor: Callable[..., Any]) -> Owner:
    """Gun's owner_down cases (an Inbox, an actor) and owner_down_error (a crashing actor)."""
    return Owner(request.param, start_actor)


class Phases:
    """An ``event_handler`` recording each phase (any thread)."""

    def __init__(self) -> None:
        self._seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        self._seen.put((name, data))

    def terminate_reason(self) -> object:
        """The reason of the ``terminate`` phase (Gun's exit reason), waiting for it."""
        while True:
            name, data = self._seen.get(timeout=WAIT)
            if name == "terminate":
                return data["reason"]


def stops_with_its_owner(conn: tether.Connection, phases: Phases) -> None:
    """``gun_is_down`` with ``normal`` / ``{shutdown, {owner_down, _}}``: tether's OwnerDown."""
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert isinstance(phases.terminate_reason(), tether.OwnerDown)


def test_not_connected_gun_shutdown(
    fake: FakeTime, open_conn: ConnectionTracker, refused_port: int
) -> None:
    """shutdown_SUITE not_connected_gun_shutdown: shutdown() between attempts stops at once.

    The port is refused (retry 5, retry_timeout 5 s): the connection waits
    for its next attempt, on a clock that does not move. The owner hears
    nothing: the connection was never up (Gun exits ``shutdown``).
    """
    conn = open_conn("127.0.0.1", refused_port)
    assert fake.wait_pending(2)  # the next attempt, and the owner check
    assert conn.info(WAIT).state == "waiting"
    conn.shutdown()
    assert conn.wait_stopped(WAIT)
    assert inbox_of(conn).flush() == []


def test_not_connected_owner_down(
    fake: FakeTime, owner: Owner, open_conn: ConnectionTracker, refused_port: int
) -> None:
    """shutdown_SUITE not_connected_owner_down (and not_connected_owner_down_error: a crash).

    The owner goes while the connection waits to retry a refused port: it
    stops at the next owner check, long before its retries run out.
    """
    phases = Phases()
    conn = open_conn("127.0.0.1", refused_port, owner=owner.target, event_handler=phases)
    assert fake.wait_pending(2)  # the next attempt, and the owner check
    assert conn.info(WAIT).state == "waiting"
    owner.end()
    fake.advance(OWNER_CHECK_INTERVAL)
    stops_with_its_owner(conn, phases)


def test_http1_gun_shutdown_no_streams(connect: Connect) -> None:
    """shutdown_SUITE http1_gun_shutdown_no_streams: shutdown() with nothing in flight."""
    conn = up(connect)
    conn.shutdown()
    is_down(conn, tether.ClosedByUser)


def test_http1_gun_shutdown_one_stream(connect: Connect) -> None:
    """shutdown_SUITE http1_gun_shutdown_one_stream: the request in flight is answered first."""
    conn = up(connect)
    stream = conn.get("/slow?delay=0.3")
    conn.shutdown()
    response = await_as(conn, stream, tether.Response)
    assert (response.status, response.fin) == (200, False)
    assert conn.await_body(stream, WAIT) == b"late"
    is_down(conn, tether.ClosedByUser)


def test_http1_gun_shutdown_timeout(origin: Callable[[Script], Origin]) -> None:
    """shutdown_SUITE http1_gun_shutdown_timeout: http_opts closing_timeout ends a shutdown.

    The origin never answers. Gun's ``{stream_error, {closed, shutdown}}``
    is the ``StreamLost`` that ``await_`` raises: the ``Down`` (reason
    ``ClosedByUser``) lists the stream as killed.
    """
    requested = threading.Event()

    def serve(client: socket.socket) -> None:
        assert read_request(client).startswith(b"GET / HTTP/1.1\r\n")
        requested.set()
        assert client.recv(1) == b""  # no answer: the client closes first

    server = origin(serve)
    conn = tether.open(server.host, server.port, http_opts={"closing_timeout": 0.1})
    try:
        assert conn.await_up(WAIT) == "http"
        stream = conn.get("/")
        assert requested.wait(WAIT)
        conn.shutdown()
        with pytest.raises(tether.StreamLost) as lost:
            conn.await_(stream, WAIT)
        assert isinstance(lost.value.reason, tether.ClosedByUser)
        assert conn.wait_stopped(WAIT)
        (down,) = inbox_of(conn).flush()
        assert isinstance(down, tether.Down)
        assert isinstance(down.reason, tether.ClosedByUser)
        assert down.killed_streams == (stream,)
    finally:
        conn.close()
    assert server.done.wait(WAIT)
    assert server.error is None


def test_http1_owner_down(fake: FakeTime, owner: Owner, connect: Connect) -> None:
    """shutdown_SUITE http1_owner_down (and ``http1_owner_down_error``, the crashing actor)."""
    phases = Phases()
    conn = connect(owner=owner.target, event_handler=phases)
    assert owner.next() == tether.Up(conn, "http")
    assert fake.wait_pending(1)  # the owner check
    owner.end()
    fake.advance(OWNER_CHECK_INTERVAL)
    stops_with_its_owner(conn, phases)


def settles_in(conn: tether.Connection, state: str) -> None:
    """Ask the connection its state until it is ``state`` (each ask waits for its turn)."""
    for _ in range(1000):
        if conn.info(WAIT).state == state:
            return
    raise AssertionError(f"never {state}: {conn.info(WAIT)}")


def test_http1_owner_down_lets_the_request_in_flight_finish(
    fake: FakeTime, owner: Owner, origin: Callable[[Script], Origin], open_conn: ConnectionTracker
) -> None:
    """shutdown_SUITE http1_owner_down, with a request in flight (Gun's manual: the
    connection "shuts down gracefully" when its owner exits).

    The owner goes while the origin holds its answer: the connection is
    ``closing``, not closed; the origin answers and only then sees the
    connection end. Nothing reconnects.
    """
    answer = threading.Event()
    seen: queue.Queue[bytes] = queue.Queue()

    def script(client: socket.socket) -> None:
        seen.put(read_request(client))
        assert answer.wait(WAIT)
        client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate")
        seen.put(client.recv(1))  # b"": the client closed after the response

    server = origin(script)
    phases = Phases()
    conn = open_conn(server.host, server.port, owner=owner.target, event_handler=phases)
    assert owner.next() == tether.Up(conn, "http")
    conn.get("/")
    assert seen.get(timeout=WAIT).startswith(b"GET / HTTP/1.1")
    assert fake.wait_pending(1)  # the owner check
    owner.end()
    fake.advance(OWNER_CHECK_INTERVAL)
    settles_in(conn, "closing")
    answer.set()
    assert seen.get(timeout=WAIT) == b""
    stops_with_its_owner(conn, phases)


def test_http1_request_connection_close(connect: Connect) -> None:
    """shutdown_SUITE http1_request_connection_close: a request with connection: close, retry 0.

    The response, then the connection stops (no reconnect).
    """
    conn = up(connect, retry=0)
    stream = conn.get("/", [("connection", "close")])
    response = await_as(conn, stream, tether.Response)
    assert (response.status, response.fin) == (200, False)
    assert conn.await_body(stream, WAIT) == b"hello"
    is_down_for_good(conn, "http", tether.ConnectionClosed)


def test_http1_response_connection_close(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """shutdown_SUITE http1_response_connection_close: the server says connection: close."""
    conn = up(connect, retry=0)
    stream = conn.get("/close")
    response = await_as(conn, stream, tether.Response)
    assert (response.status, response.fin) == (200, False)
    assert ("connection", "close") in response.headers
    assert conn.await_body(stream, WAIT) == b"hello"
    is_down_for_good(conn, "http", tether.ConnectionClosed)


def test_http1_response_connection_close_pipeline(
    connect: Connect, aiohttp_server: AiohttpServer
) -> None:
    """shutdown_SUITE http1_response_connection_close_pipeline: the requests behind it fail.

    The server answers once the three requests are made (else the connection
    may be gone before the third, which then raises ``ConnectionStoppedError``).
    """
    conn = up(connect, retry=0)
    first, second, third = (conn.get("/close?frozen") for _ in range(3))
    aiohttp_server.thaw()
    response = await_as(conn, first, tether.Response)
    assert (response.status, response.fin) == (200, False)
    assert conn.await_body(first, WAIT) == b"hello"
    stream_error(conn, second, tether.ConnectionClosed)
    stream_error(conn, third, tether.ConnectionClosed)
    is_down_for_good(conn, "http", tether.ConnectionClosed)


def test_http10_connection_close(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """shutdown_SUITE http10_connection_close: HTTP/1.0 without keep-alive, retry 0."""
    conn = up(connect, retry=0, http_opts={"version": "HTTP/1.0"})
    stream = conn.get("/")
    response = await_as(conn, stream, tether.Response)
    assert (response.status, response.fin) == (200, False)
    assert conn.await_body(stream, WAIT) == b"hello"
    assert aiohttp_server.next_request().version == (1, 0)
    is_down_for_good(conn, "http", tether.ConnectionClosed)


def test_ws_gun_shutdown(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """shutdown_SUITE ws_gun_shutdown: shutdown() closes the Websocket with a close handshake.

    The owner sees the server's close frame, then the ``Down`` (reason
    ``WsClosed``, by the client). The close frame says 1001 (going away), as
    Gun's; aiohttp answers 1000.
    """
    conn = up(connect)
    ws = conn.ws_upgrade("/websocket-nocompress")
    await_as(conn, ws, tether.Upgrade)
    conn.shutdown()
    assert await_as(conn, ws, tether.Ws).frame == tether.Close(1000, "")
    assert conn.wait_stopped(WAIT)
    (down,) = inbox_of(conn).flush()
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.WsClosed)
    assert (down.reason.code, down.reason.by_server) == (1001, False)
    assert down.killed_streams == (ws,)
    assert aiohttp_server.next_ws_end().close_code == 1001


def test_ws_gun_shutdown_timeout(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """shutdown_SUITE ws_gun_shutdown_timeout: ws_opts closing_timeout ends a shutdown.

    The server reads nothing (frozen) until the connection has stopped: no
    close frame comes back, and the ``Down`` says ``ClosedByUser``.
    """
    conn = up(connect, ws_opts={"closing_timeout": 0.1})
    ws = conn.ws_upgrade("/websocket-frozen")
    await_as(conn, ws, tether.Upgrade)
    conn.shutdown()
    assert conn.wait_stopped(WAIT)
    aiohttp_server.thaw()
    (down,) = inbox_of(conn).flush()
    assert isinstance(down, tether.Down)
    assert down.protocol == "ws"
    assert isinstance(down.reason, tether.ClosedByUser)
    assert down.killed_streams == (ws,)


def test_ws_owner_down(
    fake: FakeTime, owner: Owner, connect: Connect, aiohttp_server: AiohttpServer
) -> None:
    """shutdown_SUITE ws_owner_down (and ``ws_owner_down_error``, the crashing actor).

    The Websocket ends with the connection, gracefully as Gun's: a close
    frame with 1001 (going away), answered, then the stop.
    """
    phases = Phases()
    conn = connect(owner=owner.target, event_handler=phases)
    assert owner.next() == tether.Up(conn, "http")
    ws = conn.ws_upgrade("/websocket-nocompress")
    upgrade = owner.next()
    assert isinstance(upgrade, tether.Upgrade)
    assert upgrade.stream == ws
    assert fake.wait_pending(1)  # the owner check
    owner.end()
    fake.advance(OWNER_CHECK_INTERVAL)
    stops_with_its_owner(conn, phases)
    assert aiohttp_server.next_ws_end().close_code == 1001


def test_ws_gun_send_close_frame(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """shutdown_SUITE ws_gun_send_close_frame: a close frame sent with retry 0 ends it all.

    The server's answer, then ``Down`` (Gun's ``ws_is_down``: protocol ws,
    the Websocket killed), then the connection stops. Cowboy echoes the
    code (3333); aiohttp answers 1000.
    """
    conn = up(connect, retry=0)
    ws = conn.ws_upgrade("/websocket-nocompress")
    await_as(conn, ws, tether.Upgrade)
    conn.ws_send(tether.Close(3333, ""), ws)
    assert await_as(conn, ws, tether.Ws).frame == tether.Close(1000, "")
    down, closed = is_down_for_good(conn, "ws", tether.WsClosed)
    assert (closed.code, closed.by_server) == (3333, False)
    assert down.killed_streams == (ws,)
    assert aiohttp_server.next_ws_end().close_code == 3333


def test_ws_gun_receive_close_frame(connect: Connect) -> None:
    """shutdown_SUITE ws_gun_receive_close_frame: the server's close frame, retry 0: the end."""
    conn = up(connect, retry=0)
    ws = conn.ws_upgrade("/websocket-close?delay=0.1&code=3333")
    await_as(conn, ws, tether.Upgrade)
    assert await_as(conn, ws, tether.Ws).frame == tether.Close(3333, "")
    down, closed = is_down_for_good(conn, "ws", tether.WsClosed)
    assert (closed.code, closed.by_server) == (3333, True)
    assert down.killed_streams == (ws,)


def test_closing_owner_down(
    fake: FakeTime, owner: Owner, connect: Connect, aiohttp_server: AiohttpServer
) -> None:
    """shutdown_SUITE closing_owner_down (and ``closing_owner_down_error``, the crashing actor).

    The owner sends a close frame and goes while the server, frozen, has
    not answered it: the Websocket is closing (tether's ``info().state``
    stays ``up``: ``closing`` is ``shutdown()``'s). Once the server answers, the
    close handshake completes and the connection stops (with its owner
    alive it would reconnect: retry is 5).
    """
    phases = Phases()
    conn = connect(owner=owner.target, event_handler=phases)
    assert owner.next() == tether.Up(conn, "http")
    ws = conn.ws_upgrade("/websocket-frozen")
    assert isinstance(owner.next(), tether.Upgrade)
    conn.ws_send(tether.Close(3333, ""), ws)
    owner.end()
    assert conn.info(WAIT).ws_stream == ws  # still there, its close frame unanswered
    aiohttp_server.thaw()
    stops_with_its_owner(conn, phases)
    assert aiohttp_server.next_ws_end().close_code == 3333
