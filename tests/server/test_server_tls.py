"""tether.server.Server in TLS mode, and its limit routes, checked with the standard library.

http.client over ``ssl`` is the client here, so that the server is proven
on its own before tether's TLS tests rely on it.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[Server]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    with Server(tls_context=context) as srv:
        yield srv


def https(ca: trustme.CA, server: Server) -> http.client.HTTPSConnection:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return http.client.HTTPSConnection("localhost", server.port, timeout=TIMEOUT, context=context)


def test_serves_https(ca: trustme.CA, tls_server: Server) -> None:
    conn = https(ca, tls_server)
    try:
        conn.request("POST", "/echo", body=b"x" * 300_000)
        response = conn.getresponse()
        assert response.status == 200
        assert response.read() == b"x" * 300_000
        conn.request("GET", "/")  # keep-alive over the same TLS session
        assert conn.getresponse().read() == b"hello from tether\n"
    finally:
        conn.close()
    assert tls_server.url == f"https://127.0.0.1:{tls_server.port}"


def test_a_plain_http_client_is_refused_and_the_server_goes_on(
    ca: trustme.CA, tls_server: Server
) -> None:
    with socket.create_connection((tls_server.host, tls_server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        reply = b""
        with contextlib.suppress(ConnectionResetError):  # a close with bytes unread
            while chunk := sock.recv(65536):
                reply += chunk
        assert b"HTTP/1.1" not in reply  # at most a TLS alert, then the close
    assert tls_server.wait_for_connections(0, TIMEOUT)
    conn = https(ca, tls_server)
    try:
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    assert tls_server.requests == [("GET", "/")]


def test_stop_ends_a_connection_stuck_before_its_handshake(tls_server: Server) -> None:
    """A client that never sends its hello: stop() still joins its thread (thread_baseline)."""
    with socket.create_connection((tls_server.host, tls_server.port), timeout=TIMEOUT) as sock:
        assert tls_server.wait_for_connections(1, TIMEOUT)
        tls_server.stop()
        assert sock.recv(1) == b""


def test_tls_context_must_be_an_ssl_context() -> None:
    with pytest.raises(TypeError, match="tls_context"):
        Server(tls_context="cert.pem")  # type: ignore[arg-type]


# -- the limit routes -----------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


def test_headers_route_sends_n_headers(server: Server) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/headers/50")
        response = conn.getresponse()
        names = [name for name, _ in response.getheaders()]
        assert names[:50] == [f"x-header-{i}" for i in range(50)]
        assert response.read() == b"many headers"
    finally:
        conn.close()


def test_header_bytes_route_sends_one_big_header(server: Server) -> None:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        conn.request("GET", "/header-bytes/5000")
        response = conn.getresponse()
        assert response.getheader("x-filler") == "a" * 5000
    finally:
        conn.close()


def test_endless_head_never_ends_its_head(server: Server) -> None:
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(b"GET /endless-head HTTP/1.1\r\nhost: x\r\n\r\n")
        received = b""
        while len(received) < 1_000_000:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 200 OK\r\nx-filler: ")
        assert b"\r\n\r\n" not in received
    assert server.wait_for_connections(0, TIMEOUT)  # it stops once the client has gone
