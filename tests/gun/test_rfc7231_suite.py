"""Gun's ``rfc7231_SUITE``: CONNECT tunnels (RFC 7231 4.3.6) with ``conn.connect``.

Gun's scripted proxy (``do_proxy_start``) is :class:`ConnectProxy`; its
origin (``init_origin``) is the aiohttp server, whose ``next_request``
shows the head that came through the tunnel. Each test names its Gun case.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme

import tether
from tests.conftest import ConnectionTracker, ServerContext, inbox_of
from tests.gun._connect_proxy import ConnectProxy
from tests.gun.conftest import WAIT, Origin
from tests.interop.aiohttp_server import AiohttpServer
from tests.tls.conftest import client_context

pytestmark = pytest.mark.usefixtures("thread_baseline")

Proxies = Callable[..., ConnectProxy]


@pytest.fixture
def proxy(thread_baseline: int) -> Iterator[Proxies]:
    """``proxy(status=200, headers=(), delay=0, version=..., tls=None)``: start a CONNECT proxy.

    Closed (every connection ended, every thread joined) at teardown; what
    went wrong in its threads fails the test.
    """
    started: list[ConnectProxy] = []

    def start(*args: Any, **kwargs: Any) -> ConnectProxy:
        started.append(ConnectProxy(*args, **kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()
    errors = [error for server in started for error in server.errors]
    if errors:
        raise errors[0]


def tunnel_to(
    conn: tether.Connection, port: int, **destination: Any
) -> tuple[tether.StreamRef, tether.Response]:
    """``conn.connect`` to localhost:``port``; the stream and its Response (fin) once up."""
    conn.await_up(WAIT)
    stream = conn.connect({"host": "localhost", "port": port, **destination})
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response), response
    assert response.fin
    up = conn.await_(stream, WAIT)
    assert up == tether.TunnelUp(conn, stream, "http")
    return stream, response


def refused(conn: tether.Connection, stream: tether.StreamRef) -> None:
    """The proxy answered ``stream``'s CONNECT with a refusal (without a body)."""
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert response.fin
    assert response.status >= 300


def get_through(conn: tether.Connection, tunnel: tether.StreamRef, origin: AiohttpServer) -> None:
    """A GET through ``tunnel`` reaches ``origin`` with the destination's authority as host."""
    stream = conn.get("/", tunnel=tunnel)
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    assert conn.await_body(stream, WAIT) == b"hello"
    seen = origin.next_request()
    assert seen.header("Host") == f"localhost:{origin.port}"


def test_connect_http(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """rfc7231_SUITE:connect_http: a TCP tunnel to an HTTP/1.1 origin through an HTTP proxy."""
    server = proxy()
    conn = open_conn("localhost", server.port)
    stream, response = tunnel_to(conn, aiohttp_server.port)
    assert response.status == 200
    request = server.next_request()
    assert (request.method, request.target, request.version) == (
        "CONNECT",
        f"localhost:{aiohttp_server.port}",
        "HTTP/1.1",
    )
    assert request.header("host") == f"localhost:{aiohttp_server.port}"
    get_through(conn, stream, aiohttp_server)
    assert conn.info().tunnels == (stream,)  # Gun's info: intermediaries
    # Gun: "subsequent requests will go through the tunnel", tunnel= or not.
    plain = conn.get("/")
    assert conn.await_body(plain, WAIT) == b"hello"
    assert conn.info().protocol == "http"


def test_connect_http_over_https_proxy(
    proxy: Proxies,
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    server_context: ServerContext,
    ca: Any,
) -> None:
    """rfc7231_SUITE:connect_http_over_https_proxy: the tunnel runs inside TLS to the proxy."""
    server = proxy(tls=server_context())
    conn = open_conn("localhost", server.port, transport="tls", tls_context=client_context(ca))
    stream, _ = tunnel_to(conn, aiohttp_server.port)
    assert server.next_request().target == f"localhost:{aiohttp_server.port}"
    get_through(conn, stream, aiohttp_server)


def test_connect_tcp_through_multiple_tcp_proxies(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """rfc7231_SUITE:connect_tcp_through_multiple_tcp_proxies: a CONNECT inside a tunnel."""
    first, second = proxy(), proxy()
    conn = open_conn("localhost", first.port)
    outer, _ = tunnel_to(conn, second.port)
    assert first.next_request().target == f"localhost:{second.port}"
    inner = conn.connect({"host": "localhost", "port": aiohttp_server.port}, tunnel=outer)
    response = conn.await_(inner, WAIT)
    assert isinstance(response, tether.Response)
    assert (response.status, response.fin) == (200, True)
    assert conn.await_(inner, WAIT) == tether.TunnelUp(conn, inner, "http")
    assert second.next_request().target == f"localhost:{aiohttp_server.port}"
    get_through(conn, inner, aiohttp_server)
    assert conn.info().tunnels == (outer, inner)
    # The outer tunnel is not the one requests go through any more.
    stale = conn.get("/", tunnel=outer)
    error = conn.await_(stale, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.InvalidRequestError)
    assert "innermost" in str(error.reason)


def test_connect_delay(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """rfc7231_SUITE:connect_delay: a late answer, and no HTTP keepalive sent while waiting."""
    server = proxy(201, delay=0.5)
    conn = open_conn("localhost", server.port, http_opts={"keepalive": 0.05})
    stream, response = tunnel_to(conn, aiohttp_server.port)
    assert response.status == 201
    request = server.next_request()
    assert request.early == b""  # Gun: no keepalive while a CONNECT is in progress
    get_through(conn, stream, aiohttp_server)


@pytest.mark.parametrize(
    ("version", "status"),
    [
        pytest.param("HTTP/1.1", 201, id="connect_response_201"),
        pytest.param("HTTP/1.0", 201, id="connect_response_http10"),
    ],
)
def test_connect_response_2xx(
    version: str,
    status: int,
    proxy: Proxies,
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
) -> None:
    """rfc7231_SUITE:connect_response_201, connect_response_http10: any 2xx opens the tunnel."""
    server = proxy(status, version=version)
    conn = open_conn("localhost", server.port)
    stream, response = tunnel_to(conn, aiohttp_server.port)
    assert response.status == status
    get_through(conn, stream, aiohttp_server)


@pytest.mark.parametrize("status", [302, 403, 407, 500])
def test_connect_failure(status: int, proxy: Proxies, open_conn: ConnectionTracker) -> None:
    """rfc7231_SUITE:connect_response_302/403/500: no tunnel; the stream is not a tunnel."""
    server = proxy(status, (("content-length", "0"),))
    conn = open_conn("localhost", server.port)
    conn.await_up(WAIT)
    stream = conn.connect({"host": "localhost", "port": 33333})
    assert server.next_request().target == "localhost:33333"
    response = conn.await_(stream, WAIT)
    assert response == tether.Response(conn, stream, True, status, (("content-length", "0"),))
    failed = conn.get("/proxied", tunnel=stream)
    error = conn.await_(failed, WAIT)
    assert isinstance(error, tether.Error)
    assert error.stream is failed
    assert isinstance(error.reason, tether.InvalidRequestError)
    assert "not a tunnel" in str(error.reason)
    assert conn.info().tunnels == ()
    # The connection still talks to the proxy: a plain request reaches it.
    plain = conn.get("/")
    answer = conn.await_(plain, WAIT)
    assert isinstance(answer, tether.Response)
    assert answer.status == 405
    assert server.next_request().method == "GET"


def test_connect_refusal_with_a_body(proxy: Proxies, open_conn: ConnectionTracker) -> None:
    """A refusal with a body (a 407's page) is a Response and its Data, as any response."""
    server = proxy(407, (("content-length", "6"), ("proxy-authenticate", "Basic")), body=b"denied")
    conn = open_conn("localhost", server.port)
    conn.await_up(WAIT)
    stream = conn.connect({"host": "localhost", "port": 33333})
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert (response.status, response.fin) == (407, False)
    assert conn.await_body(stream, WAIT) == b"denied"
    # The connection goes on with the proxy.
    again = conn.connect({"host": "localhost", "port": 33333})
    assert isinstance(conn.await_(again, WAIT), tether.Response)


def test_connect_authority_form(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """rfc7231_SUITE:connect_authority_form: the target is host:port, even for port 80/443."""
    server = proxy(403, (("content-length", "0"),))
    conn = open_conn("localhost", server.port)
    conn.await_up(WAIT)
    refused(conn, conn.connect({"host": "localhost", "port": 443}))
    assert server.next_request().target == "localhost:443"
    refused(conn, conn.connect({"host": "::1", "port": 80}))
    assert server.next_request().target == "[::1]:80"


def test_connect_proxy_authorization(proxy: Proxies, open_conn: ConnectionTracker) -> None:
    """rfc7231_SUITE:connect_proxy_authorization: username and password -> Basic."""
    server = proxy(403, (("content-length", "0"),))
    conn = open_conn("localhost", server.port)
    conn.await_up(WAIT)
    stream = conn.connect(
        {"host": "localhost", "port": 33333, "username": "essen", "password": "myrealpasswordis"}
    )
    refused(conn, stream)
    auth = server.next_request().header("proxy-authorization")
    assert auth == "Basic ZXNzZW46bXlyZWFscGFzc3dvcmRpcw=="  # essen:myrealpasswordis
    # Only the two together (Gun), and a header given wins.
    refused(conn, conn.connect({"host": "localhost", "port": 33333, "username": "essen"}))
    assert server.next_request().header("proxy-authorization") is None
    conn.connect(
        {"host": "localhost", "port": 1, "username": "a", "password": "b"},
        [("proxy-authorization", "Bearer x")],
    )
    assert server.next_request().header("proxy-authorization") == "Bearer x"


def test_connect_request_no_transfer_encoding_or_content_length(
    proxy: Proxies, open_conn: ConnectionTracker
) -> None:
    """rfc7231_SUITE:connect_request_no_transfer_encoding, connect_request_no_content_length."""
    server = proxy(403, (("content-length", "0"),))
    conn = open_conn("localhost", server.port)
    conn.await_up(WAIT)
    conn.connect(
        {"host": "localhost", "port": 33333},
        [("content-length", "10"), ("transfer-encoding", "chunked"), ("x-extra", "1")],
    )
    request = server.next_request()
    assert request.header("content-length") is None
    assert request.header("transfer-encoding") is None
    assert request.header("x-extra") == "1"
    assert request.early == b""


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param((("transfer-encoding", "chunked"),), id="ignore_transfer_encoding"),
        pytest.param((("content-length", "1000"),), id="ignore_content_length"),
    ],
)
def test_connect_response_ignores_framing(
    headers: tuple[tuple[str, str], ...],
    proxy: Proxies,
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
) -> None:
    """rfc7231_SUITE:connect_response_ignore_transfer_encoding/content_length."""
    server = proxy(200, headers)
    conn = open_conn("localhost", server.port)
    stream, response = tunnel_to(conn, aiohttp_server.port)
    assert response.headers == headers
    get_through(conn, stream, aiohttp_server)


def test_connect_needs_an_idle_connection(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """gun_http:connect: "CONNECT can only be used ... when no other streams are active"."""
    answer = threading.Event()
    server = proxy(hold=answer)
    conn = open_conn("localhost", server.port)
    busy = conn.get("/")  # the proxy answers 405 to it, once told to
    server.next_request()
    refused = conn.connect({"host": "localhost", "port": aiohttp_server.port})
    error = conn.await_(refused, WAIT)
    assert isinstance(error, tether.Error)
    assert "no other streams are active" in str(error.reason)
    answer.set()
    assert isinstance(conn.await_(busy, WAIT), tether.Response)


def test_no_tunnel_after_a_reconnect(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """gun:connect: "Gun will not automatically re-issue the CONNECT request upon reconnection"."""
    server = proxy()
    conn = open_conn("localhost", server.port, retry_timeout=0.05)
    stream, _ = tunnel_to(conn, aiohttp_server.port)
    server.next_request()
    server.drop_connections()
    inbox = inbox_of(conn)
    assert isinstance(inbox.receive(WAIT, lambda m: isinstance(m, tether.Down)), tether.Down)
    conn.await_up(WAIT)
    assert conn.info().tunnels == ()
    stale = conn.get("/", tunnel=stream)
    error = conn.await_(stale, WAIT)
    assert isinstance(error, tether.Error)
    assert "not a tunnel" in str(error.reason)
    plain = conn.get("/")
    answer = conn.await_(plain, WAIT)
    assert isinstance(answer, tether.Response)
    assert answer.status == 405  # the proxy itself, not the origin
    assert server.next_request().method == "GET"


def test_ws_upgrade_through_a_tunnel(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """``ws_upgrade(tunnel=stream)``: a Websocket to the destination, through the proxy."""
    server = proxy()
    conn = open_conn("localhost", server.port)
    stream, _ = tunnel_to(conn, aiohttp_server.port)
    ws = conn.ws_upgrade("/websocket", tunnel=stream)
    assert isinstance(conn.await_(ws, WAIT), tether.Upgrade)
    conn.ws_send(tether.Text("through"))
    frame = conn.await_(ws, WAIT)
    assert isinstance(frame, tether.Ws)
    assert frame.frame == tether.Text("through")


def test_tunnel_up_goes_to_reply_to(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """Gun replies gun_tunnel_up to the CONNECT's reply_to, as its Response."""
    server = proxy()
    conn = open_conn("localhost", server.port)
    conn.await_up(WAIT)
    elsewhere = tether.Inbox()
    stream = conn.connect({"host": "localhost", "port": aiohttp_server.port}, reply_to=elsewhere)
    response = elsewhere.receive(WAIT)
    assert isinstance(response, tether.Response)
    assert elsewhere.receive(WAIT) == tether.TunnelUp(conn, stream, "http")
    elsewhere.close()


def test_event_handler_sees_the_connect(
    proxy: Proxies, aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    """event_SUITE's request phases for gun:connect: method CONNECT, function connect."""
    seen: list[tuple[str, dict[str, Any]]] = []
    server = proxy()
    conn = open_conn(
        "localhost", server.port, event_handler=lambda name, data: seen.append((name, data))
    )
    stream, _ = tunnel_to(conn, aiohttp_server.port)
    mine = [(name, data) for name, data in seen if data.get("stream") is stream]
    names = [name for name, _ in mine]
    assert names[:3] == ["request_start", "request_headers", "request_end"]
    start = mine[0][1]
    assert start["function"] == "connect"
    assert start["method"] == b"CONNECT"
    assert start["authority"] == f"localhost:{aiohttp_server.port}".encode()
    assert "response_end" in names


@pytest.mark.parametrize(
    ("destination", "error"),
    [
        ("localhost:80", TypeError),
        ({"host": "localhost"}, ValueError),
        ({"port": 80}, ValueError),
        ({"host": "localhost", "port": "80"}, TypeError),
        ({"host": "localhost", "port": 0}, ValueError),
        ({"host": "http://localhost", "port": 80}, ValueError),
        ({"host": "localhost", "port": 80, "transport": "quic"}, ValueError),
        ({"host": "localhost", "port": 80, "protocols": ["http2"]}, ValueError),
        ({"host": "localhost", "port": 80, "server_hostname": "x"}, ValueError),
        ({"host": "localhost", "port": 80, "username": 1, "password": "p"}, TypeError),
        ({"host": "localhost", "port": 80, "transport": "tls", "tls_context": 1}, TypeError),
    ],
)
def test_bad_destination_raises_at_the_call(
    destination: Any, error: type[Exception], open_conn: ConnectionTracker, refused_port: int
) -> None:
    conn = open_conn("localhost", refused_port, retry=0)
    with pytest.raises(error):
        conn.connect(destination)
    with pytest.raises(TypeError, match="tunnel"):
        conn.get("/", tunnel="not a stream")  # type: ignore[arg-type]


# -- TLS destinations: a TLS handshake inside the tunnel -----------------------------------


@pytest.fixture
def tls_origin(thread_baseline: int, server_context: ServerContext) -> Iterator[AiohttpServer]:
    """The aiohttp server over TLS (a certificate for localhost and 127.0.0.1)."""
    with AiohttpServer(ssl_context=server_context()) as server:
        yield server


def tls_destination(ca: trustme.CA, **more: Any) -> dict[str, Any]:
    return {"transport": "tls", "tls_context": client_context(ca), **more}


def silent_origin(origin: Callable[..., Origin]) -> tuple[Origin, threading.Event]:
    """A destination that reads the ClientHello (then sets the event) and never answers."""
    hello = threading.Event()

    def serve(client: socket.socket) -> None:
        if client.recv(65536):
            hello.set()
        client.recv(1)  # until the proxy goes

    return origin(serve), hello


@pytest.mark.parametrize("proxy_tls", [False, True], ids=["connect_https", "over_https_proxy"])
def test_connect_https(
    proxy_tls: bool,
    proxy: Proxies,
    tls_origin: AiohttpServer,
    open_conn: ConnectionTracker,
    server_context: ServerContext,
    server_names: queue.Queue[str | None],
    ca: trustme.CA,
) -> None:
    """rfc7231_SUITE:connect_https, connect_https_over_https_proxy: TLS to the origin inside."""
    server = proxy(tls=server_context() if proxy_tls else None)
    options: dict[str, Any] = {"transport": "tls", "tls_context": client_context(ca)}
    conn = open_conn("localhost", server.port, **(options if proxy_tls else {}))
    if proxy_tls:
        assert server_names.get(timeout=WAIT) == "localhost"  # the proxy's own handshake
    stream, _ = tunnel_to(conn, tls_origin.port, **tls_destination(ca))
    assert server_names.get(timeout=WAIT) == "localhost"  # the origin's, verified against its name
    get_through(conn, stream, tls_origin)


def test_connect_tls_through_multiple_tls_proxies(
    proxy: Proxies,
    tls_origin: AiohttpServer,
    open_conn: ConnectionTracker,
    server_context: ServerContext,
    ca: trustme.CA,
) -> None:
    """rfc7231_SUITE:connect_tls_through_multiple_tls_proxies: three TLS sessions deep."""
    first, second = proxy(tls=server_context()), proxy(tls=server_context())
    conn = open_conn("localhost", first.port, transport="tls", tls_context=client_context(ca))
    outer, _ = tunnel_to(conn, second.port, **tls_destination(ca))
    inner = conn.connect(
        {"host": "localhost", "port": tls_origin.port, **tls_destination(ca)}, tunnel=outer
    )
    response = conn.await_(inner, WAIT)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    assert conn.await_(inner, WAIT) == tether.TunnelUp(conn, inner, "http")
    assert second.next_request().target == f"localhost:{tls_origin.port}"
    get_through(conn, inner, tls_origin)


def test_tls_handshake_failure_in_the_tunnel(
    proxy: Proxies, tls_origin: AiohttpServer, open_conn: ConnectionTracker, ca: trustme.CA
) -> None:
    """A certificate that does not name the destination: Error for the stream, then Down.

    Gun disconnects with the handshake's error (gun_down); tether also tells
    the CONNECT's stream, which was waiting for its TunnelUp. No CONNECT is
    redone on the reconnect.
    """
    server = proxy()
    conn = open_conn("localhost", server.port, retry_timeout=0.05)
    conn.await_up(WAIT)
    stream = conn.connect(
        {"host": "localhost", "port": tls_origin.port, **tls_destination(ca)}
        | {"server_hostname": "wrong.example"}
    )
    assert isinstance(conn.await_(stream, WAIT), tether.Response)
    error = conn.await_(stream, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, ssl.SSLCertVerificationError)
    inbox = inbox_of(conn)
    down = inbox.receive(WAIT, lambda m: isinstance(m, tether.Down))
    assert isinstance(down, tether.Down)
    assert down.reason is error.reason
    assert conn.await_up(WAIT) == "http"  # the proxy again, no tunnel
    plain = conn.get("/")
    answer = conn.await_(plain, WAIT)
    assert isinstance(answer, tether.Response)
    assert answer.status == 405  # the proxy itself
    # The proxy saw the first CONNECT, then the GET: no CONNECT was redone at the Up.
    assert [server.next_request().method for _ in range(2)] == ["CONNECT", "GET"]


def test_tls_handshake_timeout_in_the_tunnel(
    proxy: Proxies, origin: Callable[..., Origin], open_conn: ConnectionTracker, ca: trustme.CA
) -> None:
    """tls_handshake_timeout bounds the handshake inside the tunnel: Error, then Down."""
    silent, hello = silent_origin(origin)
    server = proxy()
    conn = open_conn("localhost", server.port, retry=0)
    conn.await_up(WAIT)
    stream = conn.connect(
        {"host": "127.0.0.1", "port": silent.port, **tls_destination(ca)}
        | {"tls_handshake_timeout": 0.2}
    )
    assert isinstance(conn.await_(stream, WAIT), tether.Response)
    error = conn.await_(stream, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.ConnectTimeout)
    assert "tls_handshake_timeout" in str(error.reason)
    assert hello.wait(WAIT)  # the ClientHello did reach the destination


def test_requests_during_the_handshake_wait_for_the_tunnel(
    proxy: Proxies, tls_origin: AiohttpServer, open_conn: ConnectionTracker, ca: trustme.CA
) -> None:
    """Commands told between the 2xx and TunnelUp are sent through the tunnel, in order."""
    seen: list[str] = []
    server = proxy()
    conn = open_conn("localhost", server.port, event_handler=lambda name, data: seen.append(name))
    conn.await_up(WAIT)
    stream = conn.connect({"host": "localhost", "port": tls_origin.port, **tls_destination(ca)})
    assert isinstance(conn.await_(stream, WAIT), tether.Response)
    early = conn.get("/", tunnel=stream)  # most likely during the handshake; else after
    assert conn.await_(stream, WAIT) == tether.TunnelUp(conn, stream, "http")
    assert conn.await_body(early, WAIT) == b"hello"
    assert tls_origin.next_request().header("Host") == f"localhost:{tls_origin.port}"
    assert seen.count("tls_handshake_start") == seen.count("tls_handshake_end") == 1


def test_shutdown_during_the_tunnels_handshake_stops_at_once(
    proxy: Proxies, origin: Callable[..., Origin], open_conn: ConnectionTracker, ca: trustme.CA
) -> None:
    """shutdown() while the tunnel's TLS handshake runs: no stream to wait for, it stops."""
    silent, hello = silent_origin(origin)
    server = proxy()
    conn = open_conn("localhost", server.port, http_opts={"closing_timeout": 30.0})
    conn.await_up(WAIT)
    stream = conn.connect({"host": "127.0.0.1", "port": silent.port, **tls_destination(ca)})
    assert isinstance(conn.await_(stream, WAIT), tether.Response)
    assert hello.wait(WAIT)  # the handshake is under way
    conn.shutdown()
    assert conn.wait_stopped(WAIT)
    error = conn.await_(stream, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.ClosedByUser)
