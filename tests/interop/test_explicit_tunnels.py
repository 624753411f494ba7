"""``conn.connect`` (Gun's explicit tunnels) through real HTTP proxies: tinyproxy and squid.

Each test starts its own proxy on a free 127.0.0.1 port with a temporary
configuration (never the system service), in the foreground, and stops it
at teardown. A proxy that is not installed skips its cases, saying so.
The origin behind it is the aiohttp server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import tether
from tests._ports import free_port, wait_listening
from tests.conftest import ConnectionTracker, ServerContext
from tests.interop.aiohttp_server import AiohttpServer
from tests.tls.conftest import client_context

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
USER, PASSWORD = "essen", "secret"
NCSA_AUTH = "/usr/lib/squid/basic_ncsa_auth"  # Debian's squid package has it


@dataclass
class RealProxy:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path


def _tinyproxy(directory: Path, port: int, auth: bool) -> list[str]:
    config = directory / "tinyproxy.conf"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Timeout 10", "MaxClients 20", "Allow 127.0.0.1"]
    if auth:
        lines.append(f"BasicAuth {USER} {PASSWORD}")
    # No ConnectPort line: tinyproxy then allows CONNECT to every port.
    config.write_text("\n".join(lines) + "\n")
    return ["tinyproxy", "-d", "-c", str(config)]


def _squid(directory: Path, port: int, auth: bool) -> list[str]:
    access = ["http_access allow localhost"]
    if auth:
        if not Path(NCSA_AUTH).exists() or shutil.which("openssl") is None:
            pytest.skip(f"squid's basic auth needs {NCSA_AUTH} and openssl")
        # squid's own helper checks the password file (an MD5-crypt hash from openssl).
        hashed = subprocess.run(
            ["openssl", "passwd", "-apr1", PASSWORD], check=True, capture_output=True, text=True
        ).stdout.strip()
        passwords = directory / "passwords"
        passwords.write_text(f"{USER}:{hashed}\n")
        os.chmod(passwords, 0o644)
        access = [
            f"auth_param basic program {NCSA_AUTH} {passwords}",
            "acl users proxy_auth REQUIRED",
            "http_access allow localhost users",
        ]
    config = directory / "squid.conf"
    config.write_text(
        "\n".join(
            [
                f"http_port 127.0.0.1:{port}",
                # No "deny CONNECT !SSL_ports": CONNECT to the origin's port is allowed.
                *access,
                "http_access deny all",
                "cache deny all",
                f"pid_filename {directory}/squid.pid",
                f"cache_log {directory}/cache.log",
                "access_log none",
                f"coredump_dir {directory}",
                "shutdown_lifetime 0 seconds",
            ]
        )
        + "\n"
    )
    # -n: a service name of its own, which names its shared memory segments
    # (another squid on the machine has the default ones).
    return ["squid", "-N", "-n", f"tether{port}", "-f", str(config)]


PROXIES: dict[str, Callable[[Path, int, bool], list[str]]] = {
    "tinyproxy": _tinyproxy,
    "squid": _squid,
}


@pytest.fixture(params=list(PROXIES))
def real_proxy(request: pytest.FixtureRequest) -> Iterator[Callable[..., RealProxy]]:
    """``real_proxy(auth=False)``: start the parametrized proxy; stopped at teardown."""
    name: str = request.param
    binary = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if binary is None:
        pytest.skip(f"{name} is not installed")
    started: list[RealProxy] = []
    # Its own directory, which squid's unprivileged user can write its log to
    # (pytest's tmp_path is private to root).
    tmp_path = Path(tempfile.mkdtemp(prefix=f"tether-{name}-"))
    os.chmod(tmp_path, 0o777)

    def start(auth: bool = False) -> RealProxy:
        port = free_port()
        argv = PROXIES[name](tmp_path, port, auth)
        argv[0] = binary
        log = tmp_path / f"{name}.out"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        started.append(RealProxy(name, port, proc, log))
        wait_listening(port, proc, log=log.read_text)
        return started[-1]

    yield start
    for proxy in started:
        proxy.process.terminate()
        try:
            proxy.process.wait(WAIT)
        except subprocess.TimeoutExpired:
            proxy.process.kill()
            proxy.process.wait(WAIT)
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_connect_http_through_a_real_proxy(
    real_proxy: Callable[..., RealProxy],
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
) -> None:
    """rfc7231_SUITE:connect_http against tinyproxy and squid."""
    proxy = real_proxy()
    conn = open_conn("127.0.0.1", proxy.port)
    conn.await_up(WAIT)
    stream = conn.connect({"host": "127.0.0.1", "port": aiohttp_server.port})
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response), response
    assert (response.status, response.fin) == (200, True)
    assert conn.await_(stream, WAIT) == tether.TunnelUp(conn, stream, "http")
    get = conn.get("/", tunnel=stream)
    assert conn.await_body(get, WAIT) == b"hello"
    assert aiohttp_server.next_request().header("Host") == f"127.0.0.1:{aiohttp_server.port}"
    ws = conn.ws_upgrade("/websocket", tunnel=stream)
    assert isinstance(conn.await_(ws, WAIT), tether.Upgrade)
    conn.ws_send(tether.Text("echo me"))
    echoed = conn.await_(ws, WAIT)
    assert isinstance(echoed, tether.Ws)
    assert echoed.frame == tether.Text("echo me")


def test_connect_with_basic_auth(
    real_proxy: Callable[..., RealProxy],
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
) -> None:
    """The proxy wants credentials: 407 without them (the stream is no tunnel), 200 with."""
    proxy = real_proxy(auth=True)
    conn = open_conn("127.0.0.1", proxy.port)
    conn.await_up(WAIT)
    refused = conn.connect({"host": "127.0.0.1", "port": aiohttp_server.port})
    response = conn.await_(refused, WAIT)
    assert isinstance(response, tether.Response)
    assert response.status == 407
    if not response.fin:
        conn.await_body(refused, WAIT)
    failed = conn.get("/", tunnel=refused)
    error = conn.await_(failed, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.InvalidRequestError)
    if ("connection", "close") in response.headers:  # tinyproxy's: the next Up, then retry
        inbox = conn.inbox
        assert inbox is not None
        inbox.receive(WAIT, lambda m: isinstance(m, tether.Down))
        conn.await_up(WAIT)
    destination = {
        "host": "127.0.0.1",
        "port": aiohttp_server.port,
        "username": USER,
        "password": PASSWORD,
    }
    stream = conn.connect(destination)
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    assert conn.await_(stream, WAIT) == tether.TunnelUp(conn, stream, "http")
    assert conn.await_body(conn.get("/", tunnel=stream), WAIT) == b"hello"


def test_connect_https_through_a_real_proxy(
    real_proxy: Callable[..., RealProxy],
    open_conn: ConnectionTracker,
    server_context: ServerContext,
    ca: trustme.CA,
) -> None:
    """rfc7231_SUITE:connect_https against tinyproxy and squid: TLS inside the tunnel."""
    proxy = real_proxy()
    with AiohttpServer(ssl_context=server_context()) as origin:
        conn = open_conn("127.0.0.1", proxy.port)
        conn.await_up(WAIT)
        destination = {
            "host": "localhost",
            "port": origin.port,
            "transport": "tls",
            "tls_context": client_context(ca),
        }
        stream = conn.connect(destination)
        response = conn.await_(stream, WAIT)
        assert isinstance(response, tether.Response), response
        assert response.status == 200
        assert conn.await_(stream, WAIT) == tether.TunnelUp(conn, stream, "http")
        assert conn.await_body(conn.get("/", tunnel=stream), WAIT) == b"hello"
        conn.close()
