"""A proxy that fails the connection's chain: what the owner is told.

The interop suite (tests/proxies/) runs real proxies; these are the
failures a real proxy is hard to make do on cue, scripted on a raw socket.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

import tether


@pytest.fixture
def closing_proxy() -> Iterator[tuple[int, list[bytes]]]:
    """A "proxy" that reads the first bytes of each connection, then closes it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # closed at teardown (or nobody came)
            with client:
                client.settimeout(10)
                seen.append(client.recv(4096))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    server.shutdown(socket.SHUT_RDWR)  # wakes the accept (a close alone would not, on Linux)
    server.close()
    thread.join(10)


@pytest.mark.parametrize("scheme", ["http", "socks5h"])
def test_proxy_closing_during_its_handshake_is_a_proxy_error(
    closing_proxy: tuple[int, list[bytes]], scheme: str
) -> None:
    port, seen = closing_proxy
    conn = tether.open(
        "origin.invalid", 443, proxy=f"{scheme}://127.0.0.1:{port}", retry=1, retry_timeout=0.01
    )
    try:
        with pytest.raises(tether.ConnectionDownError) as raised:
            conn.await_up(timeout=10)  # the final Error: the retry failed too
    finally:
        conn.close()
    assert isinstance(raised.value.reason, tether.RetriesExhausted)
    last = raised.value.reason.last_reason
    assert isinstance(last, tether.ProxyError), repr(last)
    assert last.proxy == f"{scheme}://127.0.0.1:{port}"
    assert "closed the connection before the tunnel to origin.invalid:443" in str(last)
    # Both attempts (the first and its one retry) asked the proxy again.
    assert len(seen) == 2
    if scheme == "http":
        assert seen[0].startswith(b"CONNECT origin.invalid:443 HTTP/1.1\r\n")
    else:
        assert seen[0][:1] == b"\x05"  # a SOCKS5 greeting
