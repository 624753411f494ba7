"""Gun's ``gun_SUITE`` (HTTP/1.1 cases), against aiohttp and scripted origins.

Gun's ``reply_to`` takes a pid or a fun; tether's takes an Inbox, a pykka
actor, anything with ``tell``, or a callable. ``gun:info`` is
``conn.info()``; ``gun:stream_info`` is ``conn.stream_info(stream)``.
"""

from __future__ import annotations

import contextlib
import enum
import math
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import pykka
import pytest
import trustme

import tether
from tests.actors.conftest import Recorder
from tests.conftest import ServerContext, events_until_gave_up, inbox_of
from tests.events import awaited_up as up
from tests.gun.conftest import WAIT, Origin, Script, read_request
from tests.tls.conftest import client_context

pytestmark = pytest.mark.usefixtures("thread_baseline")

Connect = Callable[..., tether.Connection]
HELLO = b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nHello world!"


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
    """reply_to_http_f: a callable is called with each of the stream's events.

    Also reply_to_http_fa and reply_to_http_mfa: Gun's fun-with-arguments
    and module-function forms are, in Python, just other callables (a
    ``functools.partial``, a bound method), taken by the same path.
    """
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


# -- What the origin received ---------------------------------------------------------------


class Wire:
    """Reads what a client sent, line by line or by length (bounded by the socket's timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise EOFError(f"the client closed the connection; unread: {self._buffer!r}")
        self._buffer += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            self._fill()
        line, _, self._buffer = self._buffer.partition(b"\r\n")
        return line

    def exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def head(self) -> list[bytes]:
        """A request head's lines, the request line first."""
        lines = []
        while line := self.line():
            lines.append(line)
        return lines

    def chunks(self) -> list[bytes]:
        """A chunked body's chunks, up to and without the last (empty) one and its trailers."""
        chunks = []
        while size := int(self.line(), 16):
            chunks.append(self.exact(size))
            assert self.line() == b""
        while self.line():  # trailers, up to the empty line
            pass
        return chunks


class Phases:
    """An ``event_handler`` that records each phase with its time (it runs in the actor)."""

    # Phases that these tests follow; others (more of Gun's phases) are ignored.
    FOLLOWED = frozenset({"connect_start", "connect_end", "disconnect", "terminate"})

    def __init__(self) -> None:
        self._seen: queue.Queue[tuple[str, dict[str, Any], float]] = queue.Queue()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        self._seen.put((name, data, time.monotonic()))

    def until_terminate(self) -> list[tuple[str, float]]:
        """The followed phases up to ``terminate``, with their times.

        A ``connect_end`` that reports an error (Gun's shape for a failed
        attempt) is not followed: a failed attempt is the next
        ``connect_start`` or the ``terminate``.
        """
        phases: list[tuple[str, float]] = []
        deadline = time.monotonic() + WAIT
        while not phases or phases[-1][0] != "terminate":
            name, data, at = self._seen.get(timeout=max(deadline - time.monotonic(), 0.0))
            if name in self.FOLLOWED and not (name == "connect_end" and "error" in data):
                phases.append((name, at))
        return phases


def names(phases: list[tuple[str, float]]) -> list[str]:
    return [name for name, _ in phases]


# -- Host, request bodies, info -----------------------------------------------------------


class Hosts(enum.StrEnum):
    """Host names as symbolic constants: Python's nearest thing to an Erlang atom."""

    LOCAL = "localhost"


def test_atom_hostname(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:atom_hostname: a host given as a symbol (a ``StrEnum`` member) is its name.

    Gun takes a host as a string, a binary or an atom; Python has one text
    type, and a symbolic constant is a ``str`` subclass. The Host header
    carries the name (``localhost:port``), not the constant's repr.
    """
    heads: queue.Queue[list[bytes]] = queue.Queue()

    def serve(client: socket.socket) -> None:
        heads.put(Wire(client).head())
        client.recv(1)  # until the client goes

    server = origin(serve)
    conn = open_conn(Hosts.LOCAL, server.port)
    assert conn.await_up(WAIT) == "http"
    conn.get("/")
    lines = heads.get(timeout=WAIT)
    assert [line for line in lines if line.startswith(b"host: ")] == [
        f"host: localhost:{server.port}".encode()
    ]


def _streamed_body(
    origin: Callable[..., Origin], open_conn: Any, method: str, pieces: list[tuple[bool, bytes]]
) -> tuple[list[bytes], list[bytes]]:
    """Send a streamed body in ``pieces``; the chunks the origin got, and the next request's head.

    The origin reads the request with its chunks, answers it, and reads the
    head of a second request: an empty chunk sent by mistake would end the
    body early (and what follows would not be the next request line), and a
    stray one after the last chunk would come before the next request line.
    """
    received: queue.Queue[tuple[list[bytes], list[bytes]]] = queue.Queue()

    def serve(client: socket.socket) -> None:
        wire = Wire(client)
        wire.head()
        chunks = wire.chunks()
        client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        received.put((chunks, wire.head()))
        client.recv(1)  # until the client goes

    server = origin(serve)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    stream = conn.headers(method, "/")
    for fin, data in pieces:
        conn.data(stream, fin, data)
    assert conn.await_body(stream, WAIT) == b""  # answered: the body ended
    conn.get("/next")
    return received.get(timeout=WAIT)


def test_ignore_empty_data_http(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:ignore_empty_data_http: ``data(nofin, b"")`` sends nothing.

    An empty chunk would be the chunked body's last chunk: one final chunk
    is sent, after ``world!``.
    """
    chunks, next_head = _streamed_body(
        origin, open_conn, "PUT", [(False, b"hello "), (False, b""), (True, b"world!")]
    )
    assert b"".join(chunks) == b"hello world!"
    assert all(chunks)
    assert next_head[0] == b"GET /next HTTP/1.1"


def test_ignore_empty_data_fin_http(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:ignore_empty_data_fin_http: ``data(fin, b"")`` sends the final chunk, once."""
    chunks, next_head = _streamed_body(origin, open_conn, "POST", [(False, b"hello"), (True, b"")])
    assert chunks == [b"hello"]
    assert next_head[0] == b"GET /next HTTP/1.1"


def test_info(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:info: ``info()`` gives the socket's addresses and the state ("up").

    Gun's ``sock_ip``/``sock_port`` are ``local_address``; the server sees
    that address as its peer.
    """
    peers: queue.Queue[tuple[str, int]] = queue.Queue()

    def serve(client: socket.socket) -> None:
        peers.put(client.getpeername())
        client.recv(1)  # until the client goes

    server = origin(serve)
    conn = open_conn("localhost", server.port)
    assert conn.await_up(WAIT) == "http"
    info = conn.info(WAIT)
    assert info.state is tether.ConnectionState.UP
    assert (info.host, info.port, info.transport, info.protocol) == (
        "localhost",
        server.port,
        "tcp",
        "http",
    )
    assert info.local_address == peers.get(timeout=WAIT)
    assert info.peer_address == ("127.0.0.1", server.port)


# -- Invalid request headers --------------------------------------------------------------

BAD_HEADER = [("x-test", "bad\r\nvalue")]


def test_invalid_request_headers_ignore_is_refused(
    origin: Callable[..., Origin], open_conn: Any
) -> None:
    """gun_SUITE:invalid_request_headers_ignore: the header is refused; it never reaches the wire.

    A deliberate deviation: Gun's ``invalid_request_headers => ignore``
    sends ``bad\\r\\nvalue`` as given, which splits the request (header
    injection). tether has no such option: the call raises
    ``InvalidRequestError`` and nothing is sent, so the next request is the
    first the server reads.
    """
    heads: queue.Queue[list[bytes]] = queue.Queue()

    def serve(client: socket.socket) -> None:
        heads.put(Wire(client).head())
        client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        client.recv(1)  # until the client goes

    server = origin(serve)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    with pytest.raises(tether.InvalidRequestError, match="x-test"):
        conn.get("/", BAD_HEADER)
    stream = conn.get("/next")
    assert conn.await_body(stream, WAIT) == b""
    head = heads.get(timeout=WAIT)
    assert head[0] == b"GET /next HTTP/1.1"
    assert not any(b"x-test" in line or b"bad" in line for line in head)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda conn: conn.headers("POST", "/", BAD_HEADER), id="headers"),
        pytest.param(lambda conn: conn.get("/", BAD_HEADER), id="request"),
        pytest.param(lambda conn: conn.ws_upgrade("/ws", BAD_HEADER), id="ws_upgrade"),
    ],
)
def test_invalid_request_headers_raise(
    call: Callable[[tether.Connection], object], open_conn: Any, refused_port: int
) -> None:
    """gun_SUITE:invalid_request_headers_raise_headers, invalid_request_headers_raise_request,
    invalid_request_headers_raise_ws_upgrade.

    A header value with CR LF raises ``InvalidRequestError`` at the call, for
    ``headers`` (Gun's ``gun:post/3``), a request and ``ws_upgrade``; as in
    Gun, the connection need not be up (here it waits to retry a refused
    connect).
    """
    conn = open_conn("127.0.0.1", refused_port, retry=5, retry_timeout=60.0)
    with pytest.raises(tether.InvalidRequestError, match="x-test"):
        call(conn)


def test_keepalive_infinity(connect: Connect) -> None:
    """gun_SUITE:keepalive_infinity: "no keepalive" is accepted for HTTP and Websocket.

    Gun spells it ``infinity``; tether ``None`` (its default). A number of
    seconds must be finite: ``math.inf`` is a ``ValueError`` naming the option.
    """
    conn = up(connect, http_opts={"keepalive": None}, ws_opts={"keepalive": None})
    assert (conn.opts.http_opts.keepalive, conn.opts.ws_opts.keepalive) == (None, None)
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"
    with pytest.raises(ValueError, match="keepalive"):
        tether.open("127.0.0.1", 1, http_opts={"keepalive": math.inf})
    with pytest.raises(ValueError, match="keepalive"):
        tether.open("127.0.0.1", 1, ws_opts={"keepalive": math.inf})


def test_killed_streams_http(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:killed_streams_http: a response completed before the close is not killed.

    The response says ``connection: close`` and the server closes after it:
    the ``Down`` lists no killed (nor unprocessed) stream.
    """

    def serve(client: socket.socket) -> None:
        assert read_request(client)
        client.sendall(
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 12\r\n\r\nhello world!"
        )

    server = origin(serve)
    conn = open_conn(server.host, server.port, retry=0)
    assert conn.await_up(WAIT) == "http"
    stream = conn.get("/")
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert (response.fin, response.status) == (False, 200)
    assert conn.await_body(stream, WAIT) == b"hello world!"
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert (down.killed_streams, down.unprocessed_streams) == ((), ())


# -- Limits -------------------------------------------------------------------------------


def _limit_reached(conn: tether.Connection, stream: tether.StreamRef) -> None:
    """The stream's Error, then the Down, both naming ``max_header_block_size``.

    Gun reports the limit as a connection-wide error; tether as an ``Error``
    for the stream whose response broke it (``gun:await`` on that stream
    returns either).
    """
    error = conn.await_(stream, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RemoteProtocolError)
    assert "max_header_block_size" in str(error.reason)
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.RemoteProtocolError)
    assert "max_header_block_size" in str(down.reason)
    assert down.killed_streams == ()  # its Error reported it already


def test_max_header_block_size(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:max_header_block_size: a response head past the limit is an error, then a Down."""

    def serve(client: socket.socket) -> None:
        assert read_request(client)
        client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n")  # no end of head yet
        with contextlib.suppress(OSError):  # the client gives up before the end
            client.sendall(b"x-gun: " + b"0123456789ABCDEF" * 20_000 + b"\r\n")
            client.recv(1)

    server = origin(serve)
    conn = open_conn(server.host, server.port, retry=0)
    assert conn.await_up(WAIT) == "http"
    _limit_reached(conn, conn.get("/"))


def test_max_trailer_block_size(origin: Callable[..., Origin], open_conn: Any) -> None:
    """gun_SUITE:max_trailer_block_size: ``max_header_block_size`` bounds trailers too.

    tether has no ``max_trailer_block_size`` (Gun's default: 10,000 bytes):
    one bound, ``max_header_block_size``, covers heads and trailer blocks;
    set to Gun's 10,000 here. The body arrives, then the error and the Down.
    """

    def serve(client: socket.socket) -> None:
        assert read_request(client)
        with contextlib.suppress(OSError):  # the client gives up before the end
            client.sendall(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-gun\r\n\r\n"
                b"6\r\nhello \r\n6\r\nworld!\r\n0\r\n"
                b"x-gun: " + b"0123456789ABCDEF" * 2_000 + b"\r\n\r\n"
            )
            client.recv(1)

    server = origin(serve)
    conn = open_conn(
        server.host, server.port, retry=0, http_opts={"max_header_block_size": 10_000}
    )
    assert conn.await_up(WAIT) == "http"
    stream = conn.get("/")
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert (response.fin, response.status) == (False, 200)
    body = b""
    while len(body) < len(b"hello world!"):
        data = conn.await_(stream, WAIT)
        assert isinstance(data, tether.Data)
        assert not data.fin
        body += data.data
    assert body == b"hello world!"
    _limit_reached(conn, stream)


# -- Connecting and retrying --------------------------------------------------------------


def test_postpone_request_while_not_connected(open_conn: Any, refused_port: int) -> None:
    """gun_SUITE:postpone_request_while_not_connected: a request made before the first
    successful connect is kept, and sent once the server is there.

    The retry policy says when the first attempt failed (Gun's test waits for
    the failed ``connect_end``); then the server starts on that port.
    """
    failed: queue.Queue[int] = queue.Queue()

    def backoff(attempt: int) -> float:
        failed.put(attempt)
        return 1.0  # Gun's retry_timeout

    conn = open_conn("127.0.0.1", refused_port, retry=5, retry_backoff=backoff)
    stream = conn.get("/postponed")  # no error: kept until connected
    assert failed.get(timeout=WAIT) == 1
    with socket.create_server(("127.0.0.1", refused_port)) as listener:
        listener.settimeout(WAIT)
        client, _ = listener.accept()
        with client:
            client.settimeout(WAIT)
            assert conn.await_up(WAIT) == "http"
            assert read_request(client).startswith(b"GET /postponed HTTP/1.1\r\n")
            client.sendall(HELLO)
            assert conn.await_body(stream, WAIT) == b"Hello world!"


def test_retry_0(open_conn: Any, refused_port: int) -> None:
    """gun_SUITE:retry_0: with ``retry=0`` one attempt is made, then the connection stops."""
    phases = Phases()
    conn = open_conn("127.0.0.1", refused_port, retry=0, retry_timeout=0.5, event_handler=phases)
    (error,) = events_until_gave_up(conn)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert error.reason.attempts == 1
    assert names(phases.until_terminate()) == ["connect_start", "terminate"]


def test_retry_0_disconnect(open_conn: Any) -> None:
    """gun_SUITE:retry_0_disconnect: with ``retry=0`` a lost connection is not reconnected."""
    phases = Phases()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        conn = open_conn(
            "127.0.0.1",
            listener.getsockname()[1],
            retry=0,
            retry_timeout=0.5,
            event_handler=phases,
        )
        client, _ = listener.accept()
        client.close()  # the server closes: a disconnect
        events = events_until_gave_up(conn)
    assert [type(event) for event in events] == [tether.Up, tether.Down, tether.Error]
    assert names(phases.until_terminate()) == [
        "connect_start",
        "connect_end",
        "disconnect",
        "terminate",
    ]


def test_retry_1(open_conn: Any, refused_port: int) -> None:
    """gun_SUITE:retry_1: with ``retry=1``, the first attempt and one retry, then the stop."""
    phases = Phases()
    conn = open_conn("127.0.0.1", refused_port, retry=1, retry_timeout=0.5, event_handler=phases)
    (error,) = events_until_gave_up(conn)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert error.reason.attempts == 2
    assert names(phases.until_terminate()) == ["connect_start", "connect_start", "terminate"]


def test_retry_1_disconnect(open_conn: Any) -> None:
    """gun_SUITE:retry_1_disconnect: after a lost connection the first retry is immediate.

    ``retry_timeout`` is 30 s: the server sees the second connection within
    the test's 5 s wait, as in Gun. Deliberate deviation (docs/connection.md,
    "Retries"): Gun resets the retry count at every ``Up``, so it would go on
    reconnecting; tether resets it only once a connection proved useful
    (the server answered something). These connections closed without an
    answer, so when the second is lost too, tether gives up.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        conn = open_conn("127.0.0.1", listener.getsockname()[1], retry=1, retry_timeout=30.0)
        inbox = inbox_of(conn)
        first, _ = listener.accept()
        assert conn.await_up(WAIT) == "http"
        first.close()
        assert isinstance(inbox.receive(WAIT), tether.Down)
        second, _ = listener.accept()  # before retry_timeout
        with second:
            assert conn.await_up(WAIT) == "http"
        events = events_until_gave_up(conn)
    assert [type(event) for event in events] == [tether.Down, tether.Error]
    error = events[-1]
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)


def test_retry_fun(open_conn: Any, refused_port: int) -> None:
    """gun_SUITE:retry_fun: a retry policy, when given, sets the delays instead of retry_timeout.

    Gun's ``retry_fun`` returns the delay and the retries left; tether's
    ``retry_backoff`` returns the delay only, called with the attempt number
    (1, 2, ...), and ``retry`` alone counts the retries (a deviation: the
    count stays in one place). Here the policy says 0 s: every retry is
    immediate although ``retry_timeout`` is 60 s.
    """
    attempts: list[int] = []

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    phases = Phases()
    conn = open_conn(
        "127.0.0.1",
        refused_port,
        retry=2,
        retry_timeout=60.0,
        retry_backoff=backoff,
        event_handler=phases,
    )
    (error,) = events_until_gave_up(conn)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert error.reason.attempts == 3
    assert attempts == [1, 2]
    assert names(phases.until_terminate()) == ["connect_start"] * 3 + ["terminate"]


def test_retry_timeout(open_conn: Any, refused_port: int) -> None:
    """gun_SUITE:retry_timeout: the first retry is immediate, the next one ``retry_timeout`` later.

    Timed by the event handler's ``connect_start`` phases.
    """
    phases = Phases()
    conn = open_conn("127.0.0.1", refused_port, retry=2, retry_timeout=1.0, event_handler=phases)
    events_until_gave_up(conn)
    seen = phases.until_terminate()
    assert names(seen) == ["connect_start"] * 3 + ["terminate"]
    (_, first), (_, second), (_, third) = seen[:3]
    assert second - first < 1.0
    assert third - second >= 1.0


def test_shutdown_reason(open_conn: Any, refused_port: int) -> None:
    """gun_SUITE:shutdown_reason: the last connection failure is what the final Error carries.

    Gun's process exits with ``{shutdown, econnrefused}``; tether's last
    event is ``Error(conn, None, RetriesExhausted)`` whose ``last_reason``
    is the refused connect.
    """
    conn = open_conn("127.0.0.1", refused_port, retry=1, retry_timeout=0.5)
    (error,) = events_until_gave_up(conn)
    assert isinstance(error, tether.Error)
    assert error.stream is None
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert isinstance(error.reason.last_reason, ConnectionRefusedError)
    assert not conn.is_alive()


# -- TLS: server name indication --------------------------------------------------------


def _tls_origin(origin: Callable[..., Origin], context: ssl.SSLContext) -> Origin:
    """A scripted TLS origin (Python's ssl module): handshake, then wait for the client to go."""

    def serve(client: socket.socket) -> None:
        with context.wrap_socket(client, server_side=True) as tls, contextlib.suppress(OSError):
            tls.recv(1)

    return origin(serve)


def test_server_name_indication_default(
    origin: Callable[..., Origin],
    open_conn: Any,
    ca: trustme.CA,
    server_context: ServerContext,
    server_names: queue.Queue[str | None],
) -> None:
    """gun_SUITE:server_name_indication_default: the host name given to ``open`` is the SNI."""
    server = _tls_origin(origin, server_context("localhost"))
    conn = open_conn(
        "localhost", server.port, transport="tls", tls_context=client_context(ca), retry=0
    )
    assert conn.await_up(WAIT) == "http"
    assert server_names.get(timeout=WAIT) == "localhost"


def test_server_name_indication_custom(
    origin: Callable[..., Origin],
    open_conn: Any,
    ca: trustme.CA,
    server_context: ServerContext,
    server_names: queue.Queue[str | None],
) -> None:
    """gun_SUITE:server_name_indication_custom: ``server_hostname`` sets the SNI.

    Gun's ``tls_opts`` ``server_name_indication``; in Python the name sent
    as SNI is also the one the certificate is checked against (as
    ``ssl``'s and aiohttp's ``server_hostname``), so the certificate here
    names ``tether.test`` only: connecting to ``localhost`` verifies only
    because that name is the one used.
    """
    server = _tls_origin(origin, server_context("tether.test"))
    conn = open_conn(
        "localhost",
        server.port,
        transport="tls",
        tls_context=client_context(ca),
        server_hostname="tether.test",
        retry=0,
    )
    assert conn.await_up(WAIT) == "http"
    assert server_names.get(timeout=WAIT) == "tether.test"
    assert conn.info(WAIT).host == "localhost"


def test_ws_send_http(connect: Connect) -> None:
    """gun_SUITE:ws_send_http: ``ws_send`` on a connection that speaks HTTP fails.

    Gun reports ``{connection_error, {badstate, _}}`` as a message; tether
    knows at the call that no Websocket is up and raises
    ``NotUpgradedError`` (the frames are in it). The connection goes on.
    """
    conn = up(connect)
    with pytest.raises(tether.NotUpgradedError) as refused:
        conn.ws_send(tether.Ping(), stream=tether.StreamRef())
    assert refused.value.frames == (tether.Ping(),)
    with pytest.raises(tether.NotUpgradedError):
        conn.ws_send(tether.Ping())
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"
