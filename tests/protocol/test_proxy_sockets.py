"""The proxy handshakes against real proxies (microsocks, tinyproxy) on 127.0.0.1.

A plain blocking socket drives each handshake (the actor's job, here done
by hand) to an origin that speaks first, so its greeting may ride in with
the proxy's last answer (``leftover()``), then echoes. Each proxy is our
own instance on a free port with a temporary config, stopped after its
test. Skipped where the proxy is not installed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests._ports import free_port, wait_listening
from tether import Proxy, ProxyError, ProxyScheme
from tether.protocol import handshake_for

TIMEOUT = 10.0
GREETING = b"origin says hi\n"


def run(args: list[str], config: tuple[Path, str] | None = None) -> Iterator[int]:
    """Start ``args`` (and write ``config``), ``{port}`` replaced by a free port; yield it."""
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} is not installed")
    port = free_port()
    if config is not None:
        config[0].write_text(config[1].replace("{port}", str(port)), encoding="utf-8")
    command = [a.replace("{port}", str(port)) for a in args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=TIMEOUT)


@pytest.fixture
def origin() -> Iterator[int]:
    """A TCP server that greets each client, then echoes; its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(TIMEOUT)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: the test is over
            with client:
                client.settimeout(TIMEOUT)
                client.sendall(GREETING)
                while data := client.recv(4096):
                    client.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (close alone does not, on Linux)
    listener.close()
    thread.join(TIMEOUT)
    assert not thread.is_alive()


@pytest.fixture
def microsocks() -> Iterator[int]:
    yield from run(["microsocks", "-i", "127.0.0.1", "-p", "{port}"])


@pytest.fixture
def microsocks_auth() -> Iterator[int]:
    yield from run(["microsocks", "-i", "127.0.0.1", "-p", "{port}", "-u", "user", "-P", "pw"])


TINYPROXY_CONFIG = (
    "Port {port}\nListen 127.0.0.1\nTimeout 10\nMaxClients 10\nAllow 127.0.0.1\n"
    "LogLevel Critical\n"
)


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[int]:
    config = tmp_path / "tinyproxy.conf"
    yield from run(["tinyproxy", "-d", "-c", str(config)], (config, TINYPROXY_CONFIG))


@pytest.fixture
def tinyproxy_auth(tmp_path: Path) -> Iterator[int]:
    config = tmp_path / "tinyproxy.conf"
    text = TINYPROXY_CONFIG + "BasicAuth user pw\n"
    yield from run(["tinyproxy", "-d", "-c", str(config)], (config, text))


def tunnel(proxy: Proxy, port: int) -> socket.socket:
    """A socket through ``proxy`` to 127.0.0.1:port, the origin's greeting read and checked."""
    sock = socket.create_connection((proxy.host, proxy.port), timeout=TIMEOUT)
    try:
        handshake = handshake_for(proxy, "127.0.0.1", port)
        sock.sendall(handshake.start())
        while not handshake.done:
            sock.sendall(handshake.receive(sock.recv(4096)))
        received = handshake.leftover()
        while len(received) < len(GREETING) and (data := sock.recv(4096)):
            received += data
        assert received == GREETING
    except BaseException:
        sock.close()
        raise
    return sock


def echo_through(proxy: Proxy, port: int) -> None:
    with tunnel(proxy, port) as sock:
        sock.sendall(b"ping\n")
        assert sock.recv(4096) == b"ping\n"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound without a listen for the whole test: connecting is refused, surely."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_socks5_through_microsocks(microsocks: int, origin: int):
    echo_through(Proxy(ProxyScheme.SOCKS5, "127.0.0.1", microsocks), origin)


def test_socks5_user_password_through_microsocks(microsocks_auth: int, origin: int):
    echo_through(Proxy(ProxyScheme.SOCKS5H, "127.0.0.1", microsocks_auth, "user", "pw"), origin)


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("user", "wrong", "refused the user name and password of 'user'"),
        (None, None, "accepts none of the authentication methods"),
    ],
)
def test_socks5_refused_credentials(
    microsocks_auth: int, origin: int, username, password, message
):
    proxy = Proxy(ProxyScheme.SOCKS5, "127.0.0.1", microsocks_auth, username, password)
    with pytest.raises(ProxyError, match=message):
        tunnel(proxy, origin)


def test_socks5_refused_origin(microsocks: int, closed_port: int):
    with pytest.raises(ProxyError, match=r"connection refused \(reply 0x05\)") as raised:
        tunnel(Proxy(ProxyScheme.SOCKS5, "127.0.0.1", microsocks), closed_port)
    assert raised.value.reply == 0x05


def test_http_connect_through_tinyproxy(tinyproxy: int, origin: int):
    echo_through(Proxy(ProxyScheme.HTTP, "127.0.0.1", tinyproxy), origin)


def test_http_connect_basic_auth_through_tinyproxy(tinyproxy_auth: int, origin: int):
    echo_through(Proxy(ProxyScheme.HTTP, "127.0.0.1", tinyproxy_auth, "user", "pw"), origin)


def test_http_connect_407_from_tinyproxy(tinyproxy_auth: int, origin: int):
    proxy = Proxy(ProxyScheme.HTTP, "127.0.0.1", tinyproxy_auth)
    with pytest.raises(ProxyError, match=r"407 .*it wants credentials") as raised:
        tunnel(proxy, origin)
    assert raised.value.status == 407
    assert any(name == b"proxy-authenticate" for name, _ in raised.value.headers)


def test_http_connect_refused_origin_from_tinyproxy(tinyproxy: int, closed_port: int):
    with pytest.raises(ProxyError, match="refused CONNECT") as raised:
        tunnel(Proxy(ProxyScheme.HTTP, "127.0.0.1", tinyproxy), closed_port)
    assert raised.value.status is not None
    assert raised.value.status >= 400
