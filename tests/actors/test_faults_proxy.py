"""The fault-injection proxy itself (``tests/faults.py``), checked with plain sockets.

The lifecycle tests trust it to forward faithfully and to inject exactly
the fault asked for; these tests earn that trust against the embedded
server, on 127.0.0.1.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.faults import FaultProxy
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
# How long a test watches for bytes that must NOT arrive (a stalled proxy).
QUIET = 0.2

REQUEST = b"GET / HTTP/1.1\r\nhost: test\r\n\r\n"
BODY = b"hello from tether"


def dial(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)
    sock.settimeout(WAIT)
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    """Read until ``marker`` arrived (bounded by the socket timeout)."""
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        assert chunk, f"EOF before {marker!r}; got {data!r}"
        data += chunk
    return data


def read_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the peer closed: EOF, or a reset (a close with unread bytes)."""
    try:
        return read_to_eof(sock) == b""
    except ConnectionResetError:
        return True


def test_forwards_both_ways_and_counts_connections(proxy: FaultProxy, server: Server) -> None:
    with dial(proxy) as first, dial(proxy) as second:
        for sock in (first, second):
            sock.sendall(REQUEST)
            assert read_until(sock, BODY).startswith(b"HTTP/1.1 200 ")
        assert proxy.wait_for(accepted=2, open_connections=2, timeout=WAIT)
        assert server.active_connections == 2
    assert proxy.wait_for(open_connections=0, timeout=WAIT)
    assert proxy.accepted == 2


def test_refuse_then_accept_on_the_same_port(proxy: FaultProxy) -> None:
    port = proxy.port
    proxy.refuse()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    proxy.accept()
    assert proxy.port == port
    with dial(proxy) as sock:
        sock.sendall(REQUEST)
        assert BODY in read_until(sock, BODY)
    assert proxy.accepted == 1  # the refused attempt never counted


def test_drop_cuts_every_open_connection(proxy: FaultProxy, server: Server) -> None:
    with dial(proxy) as first, dial(proxy) as second:
        assert proxy.wait_for(accepted=2, open_connections=2, timeout=WAIT)
        assert proxy.drop() == 2
        for sock in (first, second):
            assert read_to_eof(sock) == b""
        assert proxy.open_connections == 0
        assert server.wait_for_connections(0, WAIT)  # the server side is cut too
    # Still accepting after a drop.
    with dial(proxy) as sock:
        sock.sendall(REQUEST)
        assert BODY in read_until(sock, BODY)


def test_stall_holds_bytes_until_resume(proxy: FaultProxy) -> None:
    with dial(proxy) as sock:
        assert proxy.wait_for(open_connections=1, timeout=WAIT)
        proxy.stall()
        sock.sendall(REQUEST)
        sock.settimeout(QUIET)
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        assert proxy.open_connections == 1  # stalled, not closed
        sock.settimeout(WAIT)
        proxy.resume()
        assert BODY in read_until(sock, BODY)


def test_delay_holds_each_chunk(proxy: FaultProxy) -> None:
    proxy.delay(0.1)
    with dial(proxy) as sock:
        started = time.monotonic()
        sock.sendall(REQUEST)
        assert BODY in read_until(sock, BODY)
        # The request and the response were each held once.
        assert time.monotonic() - started >= 0.2
    proxy.delay(0)


def test_cut_after_forwards_exactly_n_bytes_then_closes(proxy: FaultProxy) -> None:
    with dial(proxy) as sock:
        proxy.cut_after(100)
        sock.sendall(b"GET /big/100000 HTTP/1.1\r\nhost: test\r\n\r\n")
        data = read_to_eof(sock)
        assert len(data) == 100
        assert data.startswith(b"HTTP/1.1 200 ")
    assert proxy.wait_for(open_connections=0, timeout=WAIT)
    # The cut is used up: the next connection is forwarded whole.
    with dial(proxy) as sock:
        sock.sendall(REQUEST)
        assert BODY in read_until(sock, BODY)


def test_stop_releases_a_stalled_connection(server: Server) -> None:
    proxy = FaultProxy(server.port).start()
    with dial(proxy) as sock:
        assert proxy.wait_for(open_connections=1, timeout=WAIT)
        proxy.stall()
        sock.sendall(REQUEST)
        proxy.stop()  # joins its threads although a pump waits on the stall
        assert closed_by_peer(sock)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=WAIT)
