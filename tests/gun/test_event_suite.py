"""Gun's ``event_SUITE`` (its ``http`` group), against aiohttp and scripted origins.

Each case opens a connection with the recording handler (:class:`Events`,
Gun's handler module sending each event to the test) and checks the data
of one phase, as Gun's ``do_receive_event`` does. Gun's keys are kept,
Python-shaped: ``stream_ref`` is ``stream``, ``reply_to`` the stream's
target (the owner Inbox here), binaries are ``bytes``.

Out of scope here: the ``*_connect`` cases and the TLS-in-TLS ones
(``tls_handshake_*_tcp_connect_tls``, ``*_tls_connect_tls``),
``protocol_changed_connect``, ``protocol_changed_tls_connect`` and
``origin_changed_connect*`` (CONNECT tunnels), ``push_promise_*``
(HTTP/2), and ``cancel_remote``, which Gun runs for HTTP/2 only (an
HTTP/1.1 server cannot cancel a stream).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

import tether
from tests.conftest import ConnectionTracker, ServerContext
from tests.gun._events import Events
from tests.gun.conftest import WAIT, Origin, Script, read_request
from tests.interop.aiohttp_server import AiohttpServer
from tether.actors import _transport

pytestmark = pytest.mark.usefixtures("thread_baseline")

Start = Callable[[Script], Origin]


@pytest.fixture
def tls_aiohttp(thread_baseline: int, server_context: ServerContext) -> Iterator[AiohttpServer]:
    """aiohttp over TLS (a certificate for localhost, signed by the session's CA)."""
    with AiohttpServer(ssl_context=server_context()) as srv:
        yield srv


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def opened(open_conn: ConnectionTracker, port: int, **options: Any) -> tuple[Any, Events]:
    """``gun:open("localhost", Port, #{event_handler => ...})``: the connection and its events."""
    events = Events()
    conn = open_conn("localhost", port, event_handler=events, **options)
    return conn, events


def up(open_conn: ConnectionTracker, port: int, **options: Any) -> tuple[Any, Events]:
    conn, events = opened(open_conn, port, **options)
    assert conn.await_up(WAIT) == "http"
    return conn, events


def upgraded(open_conn: ConnectionTracker, server: AiohttpServer) -> tuple[Any, Events, Any]:
    conn, events = up(open_conn, server.port)
    stream = conn.ws_upgrade("/websocket-nocompress")
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    return conn, events, stream


def shut(conn: Any) -> None:
    """End a Websocket with its close handshake: aiohttp's handler then ends at once."""
    conn.shutdown()
    assert conn.wait_stopped(WAIT)


def authority(port: int) -> bytes:
    return f"localhost:{port}".encode()


# -- init, domain lookup ------------------------------------------------------------------


def test_init(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:init: the first phase carries the owner, the origin and the options."""
    conn, events = opened(open_conn, refused_port, retry=0)
    data = events.next("init")
    assert data["owner"] is conn.inbox
    assert data["transport"] == "tcp"
    assert data["origin_scheme"] == "http"
    assert data["origin_host"] == "localhost"
    assert data["origin_port"] == refused_port
    assert data["opts"] is conn.opts
    assert events.names()[0] == "init"


def test_domain_lookup_start(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:domain_lookup_start."""
    _, events = opened(open_conn, refused_port, retry=0, domain_lookup_timeout=2.0)
    data = events.next("domain_lookup_start")
    assert (data["host"], data["port"], data["timeout"]) == ("localhost", refused_port, 2.0)


def test_domain_lookup_end_error(
    open_conn: ConnectionTracker, refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """event_SUITE:domain_lookup_end_error: a name that does not exist.

    The system resolver would ask the network's name server about it (no
    test leaves the loopback), so the lookup is the resolver's own answer
    for such a name, given by the transport's resolver hook.
    """
    real = _transport.resolve

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host == "this.should.not.exist":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(_transport, "resolve", resolve)
    events = Events()
    conn = open_conn("this.should.not.exist", refused_port, retry=0, event_handler=events)
    data = events.next("domain_lookup_end")
    assert (data["host"], data["port"]) == ("this.should.not.exist", refused_port)
    assert "timeout" in data
    assert isinstance(data["error"], socket.gaierror)
    assert conn.wait_stopped(WAIT)
    assert "connect_start" not in events.names()  # the attempt ended with its lookup


def test_domain_lookup_end_ok(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:domain_lookup_end_ok: the addresses found, and the port."""
    _, events = opened(open_conn, refused_port, retry=0)
    data = events.next("domain_lookup_end")
    assert (data["host"], data["port"]) == ("localhost", refused_port)
    assert "error" not in data
    info = data["lookup_info"]
    assert "127.0.0.1" in info["ip_addresses"]
    assert info["port"] == refused_port


# -- connect --------------------------------------------------------------------------------


def test_connect_start(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:connect_start: after the lookup, with what it found."""
    _, events = opened(open_conn, refused_port, retry=0, connect_timeout=3.0)
    data = events.next("connect_start")
    assert "127.0.0.1" in data["lookup_info"]["ip_addresses"]
    assert data["lookup_info"]["port"] == refused_port
    assert data["timeout"] == 3.0
    names = events.names()
    assert names.index("domain_lookup_end") < names.index("connect_start")


def test_connect_end_error(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:connect_end_error: a refused connect ends its phase with the error."""
    _, events = opened(open_conn, refused_port, retry=0)
    data = events.next("connect_end")
    assert data["lookup_info"]["port"] == refused_port
    assert "timeout" in data
    assert isinstance(data["error"], ConnectionRefusedError)
    assert "protocol" not in data


def test_connect_end_ok_tcp(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:connect_end_ok_tcp: over TCP the protocol is known at the connect."""
    _, events = up(open_conn, aiohttp_server.port)
    data = events.next("connect_end")
    assert data["lookup_info"]["port"] == aiohttp_server.port
    assert "timeout" in data
    assert data["protocol"] == "http"
    assert data["peer_address"] == ("127.0.0.1", aiohttp_server.port)  # Gun: the socket
    assert "error" not in data


def test_connect_end_ok_tls(
    open_conn: ConnectionTracker, tls_aiohttp: AiohttpServer, trusting: ssl.SSLContext
) -> None:
    """event_SUITE:connect_end_ok_tls: over TLS the protocol comes with the handshake."""
    _, events = up(open_conn, tls_aiohttp.port, transport="tls", tls_context=trusting)
    data = events.next("connect_end")
    assert data["lookup_info"]["port"] == tls_aiohttp.port
    assert "timeout" in data
    assert "peer_address" in data
    assert "protocol" not in data
    names = events.names()
    assert names.index("connect_end") < names.index("tls_handshake_start")


# -- TLS handshake ------------------------------------------------------------------------


def test_tls_handshake_start(
    open_conn: ConnectionTracker, tls_aiohttp: AiohttpServer, trusting: ssl.SSLContext
) -> None:
    """event_SUITE:tls_handshake_start (Gun's socket is tether's own: not handed out)."""
    _, events = opened(
        open_conn,
        tls_aiohttp.port,
        transport="tls",
        tls_context=trusting,
        tls_handshake_timeout=2.0,
    )
    data = events.next("tls_handshake_start")
    assert data["tls_context"] is trusting  # Gun's tls_opts
    assert data["server_hostname"] == "localhost"
    assert data["timeout"] == 2.0


def test_tls_handshake_end_error(
    open_conn: ConnectionTracker, aiohttp_server: AiohttpServer, trusting: ssl.SSLContext
) -> None:
    """event_SUITE:tls_handshake_end_error: TLS to a plain HTTP port fails the handshake."""
    conn, events = opened(
        open_conn, aiohttp_server.port, transport="tls", tls_context=trusting, retry=0
    )
    data = events.next("tls_handshake_end")
    assert data["tls_context"] is trusting
    assert "timeout" in data
    assert isinstance(data["error"], ssl.SSLError)  # Gun: {tls_alert, _}
    assert "protocol" not in data
    assert conn.wait_stopped(WAIT)
    assert "request_start" not in events.names()


def test_tls_handshake_end_ok(
    open_conn: ConnectionTracker, tls_aiohttp: AiohttpServer, trusting: ssl.SSLContext
) -> None:
    """event_SUITE:tls_handshake_end_ok: the protocol, once the handshake succeeded."""
    _, events = up(open_conn, tls_aiohttp.port, transport="tls", tls_context=trusting)
    data = events.next("tls_handshake_end")
    assert data["tls_context"] is trusting
    assert "timeout" in data
    assert data["protocol"] == "http"
    assert "error" not in data


# -- request ------------------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["request_start", "request_headers"])
def test_request_start_and_request_headers(
    phase: str, open_conn: ConnectionTracker, aiohttp_server: AiohttpServer
) -> None:
    """event_SUITE:request_start, event_SUITE:request_headers (a whole request, then headers)."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.get("/")
    data = events.next(phase)
    assert data["stream"] is stream
    assert data["reply_to"] is conn.inbox
    assert data["function"] == "request"
    assert data["method"] == b"GET"
    assert data["authority"] == authority(aiohttp_server.port)
    assert data["path"] == b"/"
    assert (b"host", authority(aiohttp_server.port)) in data["headers"]

    conn, events = up(open_conn, aiohttp_server.port)  # do_request_event_headers
    stream = conn.headers("PUT", "/", [("content-type", "text/plain")])
    data = events.next(phase)
    assert data["stream"] is stream
    assert data["reply_to"] is conn.inbox
    assert data["function"] == "headers"
    assert data["method"] == b"PUT"
    assert data["authority"] == authority(aiohttp_server.port)
    assert data["path"] == b"/"
    assert (b"content-type", b"text/plain") in data["headers"]


def test_request_phases_name_the_streams_reply_to(
    open_conn: ConnectionTracker, aiohttp_server: AiohttpServer
) -> None:
    """event_SUITE:request_start, response_end: ``reply_to`` is where the stream's events go."""
    conn, events = up(open_conn, aiohttp_server.port)
    other = tether.Inbox()
    stream = conn.get("/", reply_to=other)
    assert conn.await_body(stream, WAIT)
    for phase in ("request_start", "request_end", "response_start", "response_end"):
        data = events.next(phase)
        assert (data["stream"], data["reply_to"]) == (stream, other)


def test_request_start_comes_when_the_request_is_written(
    origin: Start, open_conn: ConnectionTracker
) -> None:
    """event_SUITE:request_start: a request queued behind another starts when it goes out.

    Gun writes every request at once (it pipelines); tether sends the next
    one when the previous response has ended, and that is when its phases
    come.
    """
    answered = []

    def serve(client: socket.socket) -> None:
        for _ in range(2):
            answered.append(read_request(client))
            client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        client.recv(1)

    server = origin(serve)
    conn, events = up(open_conn, server.port)
    first, second = conn.get("/one"), conn.get("/two")
    assert conn.await_body(second, WAIT) == b"ok"
    phases = [(name, data.get("stream")) for name, data in events.seen()]
    assert phases.index(("response_end", first)) < phases.index(("request_start", second))
    assert len(answered) == 2


def test_request_end(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:request_end: after the last byte, whatever the body's framing.

    A GET; a streamed body in two pieces (chunked); the same with a
    content-length; an empty one with content-length 0 (data(fin) of
    nothing). A scripted origin reads each request whole before answering.
    """
    bodies: list[bytes] = []

    def serve(client: socket.socket) -> None:
        with client.makefile("rb") as reader:
            for _ in range(4):
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head += reader.readline()
                bodies.append(_read_body(reader, head))
                client.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            reader.read(1)

    server = origin(serve)
    conn, events = up(open_conn, server.port)

    stream = conn.get("/")
    assert events.next("request_end")["stream"] is stream

    for extra in ([], [("content-length", "12")]):
        stream = conn.headers("PUT", "/", [("content-type", "text/plain"), *extra])
        conn.data(stream, False, b"Hello ")
        conn.data(stream, True, b"world!")
        data = events.next("request_end")
        assert data["stream"] is stream
        assert data["reply_to"] is conn.inbox
        assert isinstance(conn.await_(stream, WAIT), tether.Response)

    stream = conn.headers("PUT", "/", [("content-type", "text/plain"), ("content-length", "0")])
    conn.data(stream, True, b"")
    assert events.next("request_end")["stream"] is stream
    assert isinstance(conn.await_(stream, WAIT), tether.Response)
    assert bodies == [b"", b"Hello world!", b"Hello world!", b""]


def _read_body(reader: Any, head: bytes) -> bytes:
    """The body of a request whose head is ``head`` (content-length, chunked or none)."""
    lines = head.lower().split(b"\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), None
    )
    if length is not None:
        return bytes(reader.read(length))
    if b"transfer-encoding: chunked" not in lines:
        return b""
    body = b""
    while size := int(reader.readline().strip(), 16):
        body += reader.read(size)
        reader.readline()
    reader.readline()
    return body


def test_request_end_waits_for_the_fin(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:request_end (do_request_end_headers): not before the body's last piece."""
    got_head = []

    def serve(client: socket.socket) -> None:
        got_head.append(read_request(client))
        client.recv(4096)  # the first piece
        client.recv(1)

    server = origin(serve)
    conn, events = up(open_conn, server.port)
    stream = conn.headers("PUT", "/", [("content-type", "text/plain")])
    conn.data(stream, False, b"Hello ")
    assert events.next("request_headers")["stream"] is stream
    conn.info()  # the actor has handled the data() told before: its piece went out
    assert "request_end" not in events.names()
    conn.data(stream, True, b"world!")
    assert events.next("request_end")["stream"] is stream


# -- response -------------------------------------------------------------------------------


def test_response_start(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:response_start (tether adds the head's status)."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.get("/")
    data = events.next("response_start")
    assert (data["stream"], data["reply_to"], data["status"]) == (stream, conn.inbox, 200)


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n"


def test_response_inform(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:response_inform: each 1xx, with its status and headers (Gun's inform_h)."""

    def serve(client: socket.socket) -> None:
        assert read_request(client)
        client.sendall(EARLY_HINTS * 2 + b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        client.recv(1)

    server = origin(serve)
    conn, events = up(open_conn, server.port)
    stream = conn.get("/inform")
    for _ in range(2):
        data = events.next("response_inform")
        assert (data["stream"], data["reply_to"], data["status"]) == (stream, conn.inbox, 103)
        assert ("link", "</style.css>; rel=preload") in data["headers"]
    assert conn.await_body(stream, WAIT) == b"ok"
    # Each head, informational or final, starts a response (as in Gun).
    assert [d["status"] for n, d in events.seen() if n == "response_start"] == [103, 103, 200]


def test_response_headers(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:response_headers."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.get("/")
    data = events.next("response_headers")
    assert (data["stream"], data["reply_to"], data["status"]) == (stream, conn.inbox, 200)
    assert any(name == "content-length" for name, _ in data["headers"])


TRAILERS = (
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n"
    b"5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n"
)


def test_response_trailers(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:response_trailers (Gun's goes through a CONNECT proxy; here direct)."""

    def serve(client: socket.socket) -> None:
        assert b"te: trailers" in read_request(client).lower()
        client.sendall(TRAILERS)
        client.recv(1)

    server = origin(serve)
    conn, events = up(open_conn, server.port)
    stream = conn.get("/trailers", [("te", "trailers")])
    data = events.next("response_trailers")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert data["headers"] == (("x-checksum", "42"),)
    names = events.names()
    assert names.index("response_trailers") < names.index("response_end")


def test_response_end(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:response_end: for "/", "/empty", "/stream" and "/trailers" (Gun's handlers)."""
    answers = {
        b"/": b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\n\r\nHello world!",
        b"/empty": b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        b"/stream": (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            b"5\r\nHello\r\n7\r\n world!\r\n0\r\n\r\n"
        ),
        b"/trailers": TRAILERS,
    }

    def serve(client: socket.socket) -> None:
        for _ in answers:
            path = read_request(client).split(b" ")[1]
            client.sendall(answers[path])
        client.recv(1)

    server = origin(serve)
    conn, events = up(open_conn, server.port)
    for path in answers:
        stream = conn.get(path.decode(), [("te", "trailers")])
        data = events.next("response_end")
        assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)


def test_http1_response_end_body_close(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:http1_response_end_body_close: HTTP/1.0, the body ends with the connection."""

    def serve(client: socket.socket) -> None:
        assert read_request(client).split(b"\r\n")[0].endswith(b"HTTP/1.0")
        client.sendall(b"HTTP/1.0 200 OK\r\n\r\nthe body runs to the close")

    server = origin(serve)
    conn, events = up(open_conn, server.port, retry=0, http_opts={"version": "HTTP/1.0"})
    stream = conn.get("/stream")
    data = events.next("response_end")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert conn.await_body(stream, WAIT) == b"the body runs to the close"


# -- Websocket ------------------------------------------------------------------------------


def test_ws_upgrade(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:ws_upgrade: at the call, with the upgrade's options."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.ws_upgrade("/websocket-nocompress", opts={"keepalive": 30.0})
    data = events.next("ws_upgrade")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert isinstance(data["opts"], tether.WsOpts)
    assert data["opts"].keepalive == 30.0
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    shut(conn)


def test_ws_upgrade_all_events(
    open_conn: ConnectionTracker, aiohttp_server: AiohttpServer
) -> None:
    """event_SUITE:ws_upgrade_all_events: the upgrade's phases, in Gun's order."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.ws_upgrade("/websocket-nocompress")
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    seen = [(name, data) for name, data in events.seen() if data.get("stream") is stream]
    assert [name for name, _ in seen] == [
        "ws_upgrade",
        "request_start",
        "request_headers",
        "request_end",
        "response_start",
        "response_inform",
        "protocol_changed",
    ]
    assert all(data["reply_to"] is conn.inbox for _, data in seen)
    for name in ("request_start", "request_headers"):
        data = events.next(name)
        assert data["function"] == "ws_upgrade"
        assert data["method"] == b"GET"
        assert data["authority"] == authority(aiohttp_server.port)
        assert data["path"] == b"/websocket-nocompress"
        assert (b"upgrade", b"websocket") in data["headers"]
    inform = events.next("response_inform")
    assert inform["status"] == 101
    assert ("upgrade", "websocket") in inform["headers"]
    assert events.next("protocol_changed")["protocol"] == "ws"
    shut(conn)


def test_ws_recv_frame_start(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:ws_recv_frame_start."""
    conn, events, stream = upgraded(open_conn, aiohttp_server)
    conn.ws_send(tether.Text("Hello!"))
    data = events.next("ws_recv_frame_start")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert data["frag_state"] is None
    assert data["extensions"] == ()
    shut(conn)


def test_ws_recv_frame_header(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:ws_recv_frame_header."""
    conn, events, stream = upgraded(open_conn, aiohttp_server)
    conn.ws_send(tether.Text("Hello!"))
    data = events.next("ws_recv_frame_header")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert data["frag_state"] is None
    assert data["extensions"] == ()
    assert (data["type"], data["rsv"], data["len"]) == ("text", 0, 6)
    assert data["mask_key"] is None  # a server's frames are not masked
    shut(conn)


def test_ws_recv_frame_end(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:ws_recv_frame_end (and tether's ws_recv_frame right after it)."""
    conn, events, stream = upgraded(open_conn, aiohttp_server)
    conn.ws_send(tether.Text("Hello!"))
    data = events.next("ws_recv_frame_end")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert data["extensions"] == ()
    assert data["close_code"] is None
    assert data["payload"] == "Hello!"
    whole = events.next("ws_recv_frame")
    assert (whole["stream"], whole["frame"]) == (stream, tether.Text("Hello!"))
    names = events.names()
    assert names.index("ws_recv_frame_end") == names.index("ws_recv_frame") - 1
    shut(conn)


@pytest.mark.parametrize("phase", ["ws_send_frame_start", "ws_send_frame_end"])
def test_ws_send_frame_start_and_end(
    phase: str, open_conn: ConnectionTracker, aiohttp_server: AiohttpServer
) -> None:
    """event_SUITE:ws_send_frame_start, event_SUITE:ws_send_frame_end."""
    conn, events, stream = upgraded(open_conn, aiohttp_server)
    conn.ws_send(tether.Text("Hello!"))
    data = events.next(phase)
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert data["extensions"] == ()
    assert data["frame"] == tether.Text("Hello!")
    events.next("ws_recv_frame_start")  # the echo
    names = events.names()
    assert names.index("ws_send_frame_start") < names.index("ws_send_frame_end")
    assert names.index("ws_send_frame_end") < names.index("ws_recv_frame_start")
    shut(conn)


def test_ws_protocol_changed(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:ws_protocol_changed: on the upgrade's success."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.ws_upgrade("/websocket-nocompress")
    data = events.next("protocol_changed")
    assert (data["stream"], data["protocol"]) == (stream, "ws")
    shut(conn)


def test_no_protocol_changed_when_the_upgrade_is_refused(
    open_conn: ConnectionTracker, aiohttp_server: AiohttpServer
) -> None:
    """event_SUITE:ws_protocol_changed, the other way: a refused upgrade changes nothing."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.ws_upgrade("/forbidden")
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert response.status == 403
    assert events.next("response_headers")["status"] == 403
    conn.await_body(stream, WAIT)
    assert "protocol_changed" not in events.names()


# -- cancel, disconnect, terminate ------------------------------------------------------------


def test_cancel(open_conn: ConnectionTracker, aiohttp_server: AiohttpServer) -> None:
    """event_SUITE:cancel: the user cancels a stream (HTTP/1.1: only locally)."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.headers("POST", "/echo")
    conn.cancel(stream)
    data = events.next("cancel")
    assert (data["stream"], data["reply_to"]) == (stream, conn.inbox)
    assert (data["endpoint"], data["reason"]) == ("local", "cancel")


def test_cancel_while_down(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:cancel, while no connection is up: the request kept for the next Up."""
    conn, events = opened(open_conn, refused_port)  # retry 5: it keeps requests meanwhile
    events.next("connect_end")
    stream = conn.get("/")
    conn.cancel(stream)
    data = events.next("cancel")
    assert (data["stream"], data["reply_to"], data["endpoint"]) == (stream, conn.inbox, "local")


def test_cancel_of_an_unknown_stream_is_no_phase(
    open_conn: ConnectionTracker, aiohttp_server: AiohttpServer
) -> None:
    """event_SUITE:cancel, the other way: a stream that ended cannot be cancelled (Gun)."""
    conn, events = up(open_conn, aiohttp_server.port)
    stream = conn.get("/")
    conn.await_body(stream, WAIT)
    conn.cancel(stream)
    conn.info()  # handled after the cancel
    assert "cancel" not in events.names()


def test_disconnect(origin: Start, open_conn: ConnectionTracker) -> None:
    """event_SUITE:disconnect: the origin goes away (Gun's reason ``closed``)."""
    server = origin(lambda client: None)  # accepts, then closes
    _, events = up(open_conn, server.port, retry=0)
    data = events.next("disconnect")
    assert isinstance(data["reason"], tether.ConnectionClosed)


def test_terminate(open_conn: ConnectionTracker, refused_port: int) -> None:
    """event_SUITE:terminate: close() of a connection that never connected."""
    conn, events = opened(open_conn, refused_port)  # retry 5: waits between attempts
    events.next("connect_end")
    conn.close()
    data = events.next("terminate")
    assert data["state"] in {"domain_lookup", "connecting", "waiting"}
    assert isinstance(data["reason"], tether.ClosedByUser)
    assert events.names()[-1] == "terminate"
