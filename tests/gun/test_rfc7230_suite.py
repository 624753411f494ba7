"""Gun's ``rfc7230_SUITE``: the Host header, and a response framed twice, against raw origins.

Gun makes its connection believe the origin listens on the default port
by rewriting the connection's state; here the origin really listens on
port 80 or 443, on a loopback address of its own (127.0.0.0/8 is all
loopback on Linux), which needs the right to bind those ports: without it
those cases are skipped, saying so.
"""

from __future__ import annotations

import contextlib
import errno
import queue
import random
import socket
import ssl
from collections.abc import Callable
from typing import Any

import pytest
import trustme

import tether
from tests.conftest import ServerContext
from tests.gun.conftest import WAIT, Origin, Script, read_request
from tests.tls.conftest import client_context

pytestmark = pytest.mark.usefixtures("thread_baseline")


def host_lines(head: bytes) -> list[bytes]:
    return [line for line in head.split(b"\r\n") if line.startswith(b"host: ")]


def records_head(heads: queue.Queue[bytes], tls: ssl.SSLContext | None = None) -> Script:
    """An origin script: (a TLS handshake,) one request head into ``heads``, then wait."""

    def serve(client: socket.socket) -> None:
        sock = client if tls is None else tls.wrap_socket(client, server_side=True)
        with sock:
            heads.put(read_request(sock))
            # Until the client goes: closing (EOF) or, over TLS, with a reset
            # when its close comes before the server's last TLS record is read.
            with contextlib.suppress(ConnectionResetError):
                sock.recv(1)

    return serve


def origin_on_port(origin: Callable[..., Origin], script: Script, port: int) -> Origin:
    """An origin on ``port`` of some 127.0.0.x; skips the test if none can be had."""
    candidates = random.sample(range(2, 255), 16)
    for last in candidates:
        try:
            return origin(script, f"127.0.0.{last}", port)
        except PermissionError:
            pytest.skip(f"binding port {port} needs privileges this test does not have")
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    pytest.skip(f"port {port} is taken on every loopback address tried")


# (transport, port, Host header suffix): the default port of the transport is left out.
HOST_PORT_CASES = [
    pytest.param("tcp", 80, "", id="host_default_port_http"),
    pytest.param("tls", 443, "", id="host_default_port_https"),
    pytest.param("tcp", 443, ":443", id="host_other_port_http"),
    pytest.param("tls", 80, ":80", id="host_other_port_https"),
]


@pytest.mark.parametrize(("transport", "port", "suffix"), HOST_PORT_CASES)
def test_host_port(
    transport: str,
    port: int,
    suffix: str,
    origin: Callable[..., Origin],
    open_conn: Any,
    ca: trustme.CA,
    server_context: ServerContext,
) -> None:
    """rfc7230_SUITE:host_default_port_http, host_default_port_https, host_other_port_http,
    host_other_port_https (RFC 7230 2.7.1, 2.7.2; RFC 9110 7.2).

    The Host header leaves out the transport's default port (80 for
    ``tcp``, 443 for ``tls``) and carries any other.
    """
    heads: queue.Queue[bytes] = queue.Queue()
    if transport == "tls":
        # The address is chosen when bound; the certificate names all that may be.
        names = [f"127.0.0.{last}" for last in range(2, 255)]
        script = records_head(heads, server_context(*names))
        tls: dict[str, Any] = {"transport": "tls", "tls_context": client_context(ca)}
    else:
        script, tls = records_head(heads), {}
    server = origin_on_port(origin, script, port)
    conn = open_conn(server.host, port, retry=0, **tls)
    assert conn.await_up(WAIT) == "http"
    conn.get("/")
    assert host_lines(heads.get(timeout=WAIT)) == [f"host: {server.host}{suffix}".encode()]


def test_host_ipv6(origin: Callable[..., Origin], open_conn: Any) -> None:
    """rfc7230_SUITE:host_ipv6: an IPv6 address goes in brackets in the Host header.

    (RFC 7230 5.4, RFC 3986 3.2.2.) Against ``::1``; skipped only on a
    machine without an IPv6 loopback.
    """
    heads: queue.Queue[bytes] = queue.Queue()
    try:
        server = origin(records_head(heads), "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    conn = open_conn("::1", server.port)
    assert conn.await_up(WAIT) == "http"
    conn.get("/")
    assert host_lines(heads.get(timeout=WAIT)) == [f"host: [::1]:{server.port}".encode()]


def test_transfer_encoding_overrides_content_length(
    origin: Callable[..., Origin], open_conn: Any
) -> None:
    """rfc7230_SUITE:transfer_encoding_overrides_content_length (RFC 7230 3.3.3).

    A response with both ``transfer-encoding: chunked`` and a
    ``content-length`` is read as chunked: the body is the chunks' 12 bytes.
    """

    def serve(client: socket.socket) -> None:
        assert read_request(client)
        client.sendall(
            b"HTTP/1.1 200 OK\r\n"
            b"content-length: 12\r\n"
            b"transfer-encoding: chunked\r\n"
            b"\r\n"
            b"6\r\nhello \r\n"
            b"6\r\nworld!\r\n"
            b"0\r\n\r\n"
        )
        client.recv(1)  # until the client goes

    server = origin(serve)
    conn = open_conn(server.host, server.port)
    assert conn.await_up(WAIT) == "http"
    stream = conn.get("/")
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert (response.fin, response.status) == (False, 200)
    assert conn.await_body(stream, WAIT) == b"hello world!"
