"""tether.server.Server over real sockets on 127.0.0.1.

HTTP is checked with http.client (and an h11 client or raw bytes where
http.client hides what matters: 1xx responses, trailers, chunk framing,
HTTP/1.0); Websocket with a small wsproto client on a raw socket. Every
socket has a 5 s timeout and nothing sleeps: the tests wait on the server's
own conditions or on the socket.
"""

from __future__ import annotations

import ast
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    Pong,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token

import tether.server as tether_server
from tether.server import Server

TIMEOUT = 5.0


@pytest.fixture
def server() -> Iterator[Server]:
    baseline = threading.active_count()
    srv = Server().start()
    try:
        yield srv
    finally:
        srv.stop()
    assert threading.active_count() == baseline


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=TIMEOUT)


def http_conn(server: Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)


def get(
    server: Server, path: str, method: str = "GET", **kwargs
) -> tuple[int, dict[str, str], bytes]:
    conn = http_conn(server)
    try:
        conn.request(method, path, **kwargs)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def assert_closed_without_response(sock: socket.socket) -> None:
    """The server closed ``sock`` and sent nothing (a reset is fine too)."""
    with contextlib.suppress(ConnectionResetError):
        assert read_to_eof(sock) == b""


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server still sends, up to its close (bounded by the socket timeout)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


class H11Client:
    """A raw socket driven by an h11 client connection, to see every response event."""

    def __init__(self, server: Server) -> None:
        self.sock = connect(server)
        self.conn = h11.Connection(h11.CLIENT)

    def request(self, method: str, target: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        all_headers = [("host", "127.0.0.1"), *headers]
        data = self.conn.send(h11.Request(method=method, target=target, headers=all_headers))
        data += self.conn.send(h11.EndOfMessage())
        self.sock.sendall(data)

    def response_events(self) -> list[h11.Event]:
        events: list[h11.Event] = []
        while not events or not isinstance(events[-1], h11.EndOfMessage):
            event = self.conn.next_event()
            if event is h11.NEED_DATA:
                self.conn.receive_data(self.sock.recv(65536))
            else:
                assert isinstance(event, h11.Event)
                events.append(event)
        return events

    def close(self) -> None:
        self.sock.close()


def body_of(events: list[h11.Event]) -> bytes:
    return b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))


class WsClient:
    """A wsproto client on a raw socket; events are read on demand."""

    def __init__(
        self,
        server: Server,
        target: str = "/websocket",
        subprotocols: Sequence[str] = (),
        extensions: Sequence[Extension] = (),
    ) -> None:
        self.sock = connect(server)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.pending: deque[Event] = deque()
        request = Request(
            host="127.0.0.1",
            target=target,
            subprotocols=list(subprotocols),
            extensions=list(extensions),
        )
        self.sock.sendall(self.ws.send(request))

    def next_event(self) -> Event:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the server closed the connection"
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.popleft()

    def accepted(self) -> AcceptConnection:
        event = self.next_event()
        assert isinstance(event, AcceptConnection), event
        return event

    def send(self, event: Event) -> None:
        self.sock.sendall(self.ws.send(event))

    def frames(self) -> list[Message[Any]]:
        """The data events of the next whole message."""
        events: list[Message[Any]] = []
        while not events or not events[-1].message_finished:
            event = self.next_event()
            assert isinstance(event, Message), event
            events.append(event)
        return events

    def message(self) -> str | bytes:
        frames = self.frames()
        if isinstance(frames[0], TextMessage):
            return "".join(f.data for f in frames)
        return b"".join(bytes(f.data) for f in frames)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def ws_clients() -> Iterator[list[WsClient]]:
    clients: list[WsClient] = []
    yield clients
    for client in clients:
        client.close()


@pytest.fixture
def accepted(server: Server, ws_clients: list[WsClient]) -> WsClient:
    """A Websocket client whose upgrade the server accepted (closed after the test)."""
    client = WsClient(server)
    ws_clients.append(client)
    client.accepted()
    return client


# -- dependencies ------------------------------------------------------------------


def test_the_server_imports_only_the_stdlib_h11_and_wsproto() -> None:
    package = Path(tether_server.__file__).parent
    imported: set[str] = set()
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path.name}: relative import"
                imported.add(node.module or "")
    outside = {
        name
        for name in imported
        if name.split(".")[0] not in {*sys.stdlib_module_names, "h11", "wsproto"}
        and name != "tether.server"
        and not name.startswith("tether.server.")
    }
    assert outside == set()


# -- lifecycle -------------------------------------------------------------------


def test_start_binds_an_ephemeral_port_and_url() -> None:
    srv = Server()
    with pytest.raises(RuntimeError):
        _ = srv.port
    with srv:
        assert srv.port > 0
        assert srv.host == "127.0.0.1"
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.start() is srv  # already running: nothing happens


def test_stop_joins_every_thread_and_is_idempotent() -> None:
    baseline = threading.active_count()
    srv = Server().start()
    socks = [connect(srv) for _ in range(3)]
    try:
        assert srv.wait_for_connections(3, TIMEOUT)
        names = {t.name for t in threading.enumerate()}
        assert "tether-server-accept" in names
        assert {"tether-server-conn-1", "tether-server-conn-2", "tether-server-conn-3"} <= names
        srv.stop()
        assert threading.active_count() == baseline
        assert srv.active_connections == 0
        for sock in socks:
            assert read_to_eof(sock) == b""
        srv.stop()
        with pytest.raises(RuntimeError):
            srv.start()
        with pytest.raises(OSError):  # nothing listens any more
            connect(srv).close()
    finally:
        for sock in socks:
            sock.close()


def test_stop_before_start_does_nothing() -> None:
    srv = Server()
    srv.stop()
    with srv:
        assert get(srv, "/")[0] == 200


def test_serve_forever_returns_when_stopped() -> None:
    baseline = threading.active_count()
    srv = Server().start()
    runner = threading.Thread(target=srv.serve_forever, name="test-serve-forever")
    runner.start()
    try:
        assert get(srv, "/")[0] == 200
    finally:
        srv.stop()  # before or after serve_forever began to wait: it returns either way
        runner.join(TIMEOUT)
    assert not runner.is_alive()
    assert threading.active_count() == baseline


SERVE_SCRIPT = """
import threading
import tether.server as tether_server
from tether.server import Server

class Announcing(Server):
    def start(self):
        result = super().start()
        print(self.port, flush=True)  # inside serve_forever: Ctrl-C is handled from here on
        return result

Announcing().serve_forever()
print("stopped", threading.active_count(), flush=True)
"""


def test_serve_forever_stops_on_ctrl_c() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    with subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT], stdout=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline())
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                assert read_to_eof(sock).endswith(b"hello from tether\n")
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=TIMEOUT)
        finally:
            proc.kill()
    assert proc.returncode == 0
    assert out.split() == ["stopped", "1"]


def test_stop_wakes_a_handler_blocked_in_send() -> None:
    baseline = threading.active_count()
    srv = Server().start()
    with connect(srv) as sock:
        sock.sendall(b"GET /big/200000000 HTTP/1.1\r\nhost: x\r\n\r\n")
        assert sock.recv(1)  # the response started; the client now stops reading
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2.0
    assert threading.active_count() == baseline


def test_stop_interrupts_a_delay() -> None:
    baseline = threading.active_count()
    srv = Server().start()
    with connect(srv) as sock:
        sock.sendall(b"GET /delay/60000 HTTP/1.1\r\nhost: x\r\n\r\n")
        assert srv.wait_for_connections(1, TIMEOUT)
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2.0
        assert_closed_without_response(sock)
    assert threading.active_count() == baseline


def test_wait_for_connections_times_out(server: Server) -> None:
    assert server.wait_for_connections(0, TIMEOUT)
    assert not server.wait_for_connections(1, 0.05)


def test_drop_connections_keeps_listening(server: Server) -> None:
    first, second = connect(server), connect(server)
    with first, second:
        assert server.wait_for_connections(2, TIMEOUT)
        assert server.drop_connections() == 2
        assert server.active_connections == 0
        assert read_to_eof(first) == b""
        assert read_to_eof(second) == b""
    assert get(server, "/")[0] == 200
    assert server.wait_for_connections(0, TIMEOUT)  # http.client closed its socket
    assert server.drop_connections() == 0


def test_active_connections_drops_before_the_client_sees_the_close(server: Server) -> None:
    with connect(server) as sock:
        assert server.wait_for_connections(1, TIMEOUT)
        sock.sendall(b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_to_eof(sock).endswith(b"bye")
        assert server.active_connections == 0


def test_client_close_ends_the_connection(server: Server) -> None:
    sock = connect(server)
    assert server.wait_for_connections(1, TIMEOUT)
    sock.close()
    assert server.wait_for_connections(0, TIMEOUT)


# -- HTTP ------------------------------------------------------------------------


def test_root_and_keep_alive_reuse(server: Server) -> None:
    conn = http_conn(server)
    try:
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.status == 200
            assert response.getheader("content-type") == "text/plain"
            assert response.read() == b"hello from tether\n"
        assert server.active_connections == 1
    finally:
        conn.close()
    assert server.requests == [("GET", "/")] * 3


def test_requests_are_recorded_in_order(server: Server) -> None:
    get(server, "/a?x=1")
    get(server, "/echo", method="PUT", body=b"z")
    assert server.requests == [("GET", "/a?x=1"), ("PUT", "/echo")]
    requests = server.requests
    requests.clear()
    assert len(server.requests) == 2  # a copy


def test_head_has_the_headers_and_no_body(server: Server) -> None:
    conn = http_conn(server)
    try:
        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-length") == "18"
        assert response.read() == b""
        conn.request("GET", "/")  # the connection is still in sync
        assert conn.getresponse().read() == b"hello from tether\n"
    finally:
        conn.close()


def test_echo_content_length_body(server: Server) -> None:
    status, headers, body = get(server, "/echo", method="POST", body=b"payload")
    assert (status, body, headers["x-method"]) == (200, b"payload", "POST")


def test_echo_chunked_request_body(server: Server) -> None:
    status, headers, body = get(
        server, "/echo", method="PUT", body=iter([b"ab", b"cd", b"ef"]), encode_chunked=True
    )
    assert (status, body, headers["x-method"]) == (200, b"abcdef", "PUT")


def test_echo_answers_expect_100_continue(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nexpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 ")
        sock.sendall(b"hi")
        assert b"\r\n\r\nhi" in sock.recv(65536)


def test_headers_lists_the_request_headers_in_wire_order(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"GET /headers HTTP/1.1\r\nHost: x\r\nX-B: 2\r\nX-A: 1\r\nX-B: 3\r\n"
            b"Connection: close\r\n\r\n"
        )
        raw = read_to_eof(sock)
    body = raw.partition(b"\r\n\r\n")[2]
    assert body == b"host: x\nx-b: 2\nx-a: 1\nx-b: 3\nconnection: close\n"


def test_chunked_response_has_three_chunks(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /chunked HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        raw = read_to_eof(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert body == b"4\r\none \r\n4\r\ntwo \r\n5\r\nthree\r\n0\r\n\r\n"


def test_trailers(server: Server) -> None:
    client = H11Client(server)
    try:
        client.request("GET", "/trailers")
        events = client.response_events()
    finally:
        client.close()
    response = events[0]
    assert isinstance(response, h11.Response)
    assert response.status_code == 200
    assert (b"trailer", b"x-checksum") in response.headers
    assert body_of(events) == b"body"
    end = events[-1]
    assert isinstance(end, h11.EndOfMessage)
    assert list(end.headers) == [(b"x-checksum", b"42")]


def test_inform_sends_103_then_200(server: Server) -> None:
    client = H11Client(server)
    try:
        client.request("GET", "/inform")
        events = client.response_events()
    finally:
        client.close()
    informational, response = events[0], events[1]
    assert isinstance(informational, h11.InformationalResponse)
    assert informational.status_code == 103
    assert (b"link", b"</style.css>; rel=preload") in informational.headers
    assert isinstance(response, h11.Response)
    assert response.status_code == 200
    assert body_of(events) == b"informed"


@pytest.mark.parametrize("status", [200, 201, 404, 418, 503, 599])
def test_status(server: Server, status: int) -> None:
    code, _, body = get(server, f"/status/{status}")
    assert (code, body) == (status, f"status {status}".encode())


@pytest.mark.parametrize("status", [204, 304])
def test_status_without_body(server: Server, status: int) -> None:
    conn = http_conn(server)
    try:
        conn.request("GET", f"/status/{status}")
        response = conn.getresponse()
        assert (response.status, response.read()) == (status, b"")
        assert response.getheader("content-length") is None
        conn.request("GET", "/")  # no stray body in the stream
        assert conn.getresponse().read() == b"hello from tether\n"
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/status/199", "/status/600", "/status/abc", "/nowhere"])
def test_unknown_paths_are_404(server: Server, path: str) -> None:
    assert get(server, path)[::2] == (404, b"not found")


def test_delay(server: Server) -> None:
    started = time.monotonic()
    assert get(server, "/delay/50")[::2] == (200, b"delayed")
    assert time.monotonic() - started >= 0.04


def test_close_answers_then_closes(server: Server) -> None:
    conn = http_conn(server)
    try:
        conn.request("GET", "/close")
        response = conn.getresponse()
        assert response.getheader("connection") == "close"
        assert response.read() == b"bye"
        assert response.will_close
    finally:
        conn.close()
    assert server.wait_for_connections(0, TIMEOUT)


def test_drop_closes_without_a_response(server: Server) -> None:
    conn = http_conn(server)
    try:
        conn.request("GET", "/drop")
        with pytest.raises(http.client.RemoteDisconnected):
            conn.getresponse()
    finally:
        conn.close()
    assert server.wait_for_connections(0, TIMEOUT)
    assert server.requests == [("GET", "/drop")]


def test_big_body(server: Server) -> None:
    status, headers, body = get(server, "/big/300001")
    assert (status, headers["content-length"], body) == (200, "300001", b"x" * 300001)


def test_http10_request_is_answered_then_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(b"\r\n\r\nhello from tether\n")


def test_http10_gets_no_chunking_no_trailers_no_1xx(server: Server) -> None:
    for path, body in [
        ("/chunked", b"one two three"),
        ("/trailers", b"body"),
        ("/inform", b"informed"),
    ]:
        with connect(server) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
            raw = read_to_eof(sock)
        assert raw.startswith(b"HTTP/1.1 200 "), path
        assert b"chunked" not in raw.lower(), path
        assert raw.count(b"HTTP/1.1") == 1, path
        assert raw.endswith(b"\r\n\r\n" + body), path


def test_broken_request_gets_400_then_close(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 400 ")
    assert b"connection: close" in raw.lower()
    assert server.wait_for_connections(0, TIMEOUT)


def test_upgrade_request_to_a_plain_route_stays_http(server: Server) -> None:
    upgrade = (
        b"GET / HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(upgrade + b"GET /close HTTP/1.1\r\nhost: x\r\n\r\n")
        raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert raw.endswith(b"bye")


def test_forbidden_ws_plain_get(server: Server) -> None:
    assert get(server, "/forbidden-ws")[::2] == (403, b"no websocket for you")


def test_plain_get_at_websocket_is_426(server: Server) -> None:
    for path in ("/websocket", "/ws"):
        status, headers, body = get(server, path)
        assert (status, headers["upgrade"], body) == (426, "websocket", b"websocket only")


def test_wrong_websocket_version_is_426(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"GET /websocket HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"connection: close\r\n\r\n"
        )
        raw = read_to_eof(sock)
    assert raw.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13" in raw


# -- Websocket -------------------------------------------------------------------


def test_ws_handshake_chooses_the_first_offered_known_subprotocol(
    server: Server, ws_clients: list[WsClient]
) -> None:
    client = WsClient(server, subprotocols=["other", "mychat", "superchat"])
    ws_clients.append(client)
    accepted = client.accepted()
    assert accepted.subprotocol == "mychat"
    assert accepted.extensions == []
    assert server.requests == [("GET", "/websocket")]


def test_ws_subprotocol_offers_across_header_lines(server: Server) -> None:
    key = b"dGhlIHNhbXBsZSBub25jZQ=="
    with connect(server) as sock:
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n"
            b"connection: keep-alive, Upgrade\r\n"
            b"sec-websocket-version: 13\r\nsec-websocket-key: " + key + b"\r\n"
            b"sec-websocket-protocol: one, two\r\nsec-websocket-protocol: superchat, mychat\r\n"
            b"\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            assert chunk
            head += chunk
    lines = head.split(b"\r\n\r\n")[0].lower().split(b"\r\n")
    assert lines[0].startswith(b"http/1.1 101 ")
    assert b"sec-websocket-protocol: superchat" in lines
    assert b"sec-websocket-accept: " + generate_accept_token(key).lower() in lines


def test_ws_no_matching_subprotocol_omits_the_header(
    server: Server, ws_clients: list[WsClient]
) -> None:
    client = WsClient(server, subprotocols=["nope"])
    ws_clients.append(client)
    assert client.accepted().subprotocol is None


def test_ws_echo_text_and_binary_and_ping(server: Server, ws_clients: list[WsClient]) -> None:
    client = WsClient(server, subprotocols=["mychat"])
    ws_clients.append(client)
    client.accepted()
    client.send(TextMessage(data="Hello!"))
    client.send(BytesMessage(data=b"\x00\x01\x02"))
    client.send(TextMessage(data="fr", message_finished=False))
    client.send(TextMessage(data="ag"))
    client.send(Ping(payload=b"are you there"))
    assert client.message() == "Hello!"
    assert client.message() == b"\x00\x01\x02"
    assert client.message() == "frag"
    assert client.next_event() == Pong(payload=b"are you there")


def test_ws_client_close_is_answered_then_tcp_closed(server: Server, accepted: WsClient) -> None:
    client = accepted
    client.send(CloseConnection(code=1000, reason="done"))
    assert client.next_event() == CloseConnection(code=1000, reason="done")
    assert read_to_eof(client.sock) == b""
    assert server.active_connections == 0


def test_ws_fragments_command(accepted: WsClient) -> None:
    client = accepted
    client.send(TextMessage(data="!fragments 3"))
    frames = client.frames()
    assert all(isinstance(f, TextMessage) for f in frames)
    assert sum(f.frame_finished for f in frames) == 3
    assert "".join(f.data for f in frames) == "abc"
    assert [f.message_finished for f in frames][-1]
    assert not any(f.message_finished for f in frames[:-1])


def test_ws_close_command(server: Server, accepted: WsClient) -> None:
    client = accepted
    client.send(TextMessage(data="!close 4000 going away now"))
    close = client.next_event()
    assert close == CloseConnection(code=4000, reason="going away now")
    assert isinstance(close, CloseConnection)
    client.send(close.response())
    assert read_to_eof(client.sock) == b""
    assert server.active_connections == 0


def test_ws_ping_command(accepted: WsClient) -> None:
    client = accepted
    client.send(TextMessage(data="!ping hello"))
    assert client.next_event() == Ping(payload=b"hello")
    client.send(TextMessage(data="after"))
    assert client.message() == "after"


def test_ws_drop_command(server: Server, accepted: WsClient) -> None:
    client = accepted
    client.send(TextMessage(data="!drop"))
    assert read_to_eof(client.sock) == b""  # no close frame
    assert server.active_connections == 0


@pytest.mark.parametrize(
    ("command", "raw", "code"),
    [
        ("!bad-utf8", b"\x81\x02\xc3\x28", 1007),
        ("!masked", b"\x81\x85\x37\xfa\x21\x3d\x5f\x9f\x4d\x51\x58", 1002),
    ],
)
def test_ws_bad_frame_commands(
    server: Server, ws_clients: list[WsClient], command: str, raw: bytes, code: int
) -> None:
    client = WsClient(server)
    ws_clients.append(client)
    client.accepted()
    client.send(TextMessage(data=command))
    assert client.sock.recv(65536) == raw
    client.ws.receive_data(raw)
    close = next(iter(client.ws.events()))
    assert isinstance(close, CloseConnection)
    assert close.code == code
    client.send(close.response())
    # wsproto's parser is finished after a protocol error: read the reply raw.
    reply = read_to_eof(client.sock)  # the server's close frame, then EOF
    assert reply[0] == 0x88  # FIN + CLOSE, unmasked
    assert int.from_bytes(reply[2:4], "big") == code


def test_ws_big_command(accepted: WsClient) -> None:
    client = accepted
    client.send(TextMessage(data="!big 200000"))
    assert client.message() == b"x" * 200000
    client.send(TextMessage(data="!big many"))  # not a command: echoed
    assert client.message() == "!big many"


def test_ws_protocol_error_from_the_client_gets_a_close(server: Server) -> None:
    client = WsClient(server)
    try:
        client.accepted()
        client.sock.sendall(b"\x81\x02hi")  # unmasked: a client must mask
        close = client.next_event()
        assert isinstance(close, CloseConnection)
        assert close.code == 1002
        assert read_to_eof(client.sock) == b""
    finally:
        client.close()


def test_ws_frames_sent_with_the_upgrade_are_echoed(server: Server) -> None:
    mask = b"\x01\x02\x03\x04"
    frame = b"\x81\x82" + mask + bytes(b ^ mask[i] for i, b in enumerate(b"hi"))
    ws = WSConnection(ConnectionType.CLIENT)
    request = ws.send(Request(host="127.0.0.1", target="/websocket"))
    with connect(server) as sock:
        sock.sendall(request + frame)
        events: list[Event] = []
        while len(events) < 2:
            data = sock.recv(65536)
            assert data
            ws.receive_data(data)
            events.extend(ws.events())
    assert isinstance(events[0], AcceptConnection)
    assert events[1] == TextMessage(data="hi")


def test_ws_refused_at_forbidden_ws(server: Server, ws_clients: list[WsClient]) -> None:
    client = WsClient(server, target="/forbidden-ws")
    ws_clients.append(client)
    reject = client.next_event()
    assert isinstance(reject, RejectConnection)
    assert reject.status_code == 403
    body = b""
    while True:
        event = client.next_event()
        assert isinstance(event, RejectData)
        body += event.data
        if event.body_finished:
            break
    assert body == b"no websocket for you"


def test_ws_permessage_deflate_is_negotiated(server: Server, ws_clients: list[WsClient]) -> None:
    client = WsClient(server, extensions=[PerMessageDeflate()])
    ws_clients.append(client)
    accepted = client.accepted()
    assert [e.name for e in accepted.extensions] == ["permessage-deflate"]
    assert accepted.extensions[0].enabled()
    text = "compress me " * 1000
    client.send(TextMessage(data=text))
    wire = client.sock.recv(65536)
    assert wire[0] & 0x40  # RSV1: the echo is compressed
    assert len(wire) < len(text) // 10
    client.ws.receive_data(wire)
    client.pending.extend(client.ws.events())
    assert client.message() == text
