"""``--proxy`` for ``tether get`` and ``tether ws``, through real proxies started per test.

tinyproxy (HTTP CONNECT, with ``BasicAuth``) and microsocks (SOCKS5, with
a user name and password) run on free 127.0.0.1 ports with configurations
of their own; the tests skip, naming the binary, where one is missing.
Both proxies demand credentials, so a command that ignored ``--proxy``
(or the environment's proxy) and connected directly would not see the
refusals these tests expect. The big interop suite is ``tests/proxies/``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests._ports import free_port
from tests.cli.conftest import CLI_TIMEOUT, one_line_error, run_cli
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

USER, PASSWORD = "tester", "s3cret-pw"
_START_TIMEOUT = 10.0
StartDaemon = Callable[[list[str], int], None]


@dataclass(frozen=True)
class RunningProxy:
    scheme: str
    port: int

    def url(self, user: str | None = USER, password: str = PASSWORD, scheme: str = "") -> str:
        auth = "" if user is None else f"{user}:{password}@"
        return f"{scheme or self.scheme}://{auth}127.0.0.1:{self.port}"


def _binary(path: str) -> str:
    if not os.access(path, os.X_OK):
        found = shutil.which(os.path.basename(path))
        if found is None:
            pytest.skip(f"{path} is not installed (Debian package {os.path.basename(path)})")
        return found
    return path


def _wait_accepting(proc: subprocess.Popen[bytes], port: int, name: str) -> None:
    """Until the proxy accepts a TCP connection; its early exit or the deadline fails the test."""
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited with status {proc.returncode} before accepting")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not accept on port {port} within {_START_TIMEOUT} s")
            time.sleep(0.02)  # polling for the listening socket: nothing to be told of
        else:
            return


@pytest.fixture
def start_daemon() -> Iterator[StartDaemon]:
    """Start a proxy daemon (argv, port); each is killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], port: int) -> None:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        _wait_accepting(proc, port, os.path.basename(argv[0]))

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=CLI_TIMEOUT)


@pytest.fixture
def tinyproxy(start_daemon: StartDaemon, tmp_path: Path) -> RunningProxy:
    """tinyproxy on a free port, answering CONNECT only with ``USER``/``PASSWORD`` (else 407)."""
    binary = _binary("/usr/bin/tinyproxy")
    port = free_port()
    config = tmp_path / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\n"
        f"BasicAuth {USER} {PASSWORD}\nLogLevel Critical\n"
    )
    start_daemon([binary, "-d", "-c", str(config)], port)
    return RunningProxy("http", port)


@pytest.fixture
def microsocks(start_daemon: StartDaemon) -> RunningProxy:
    """microsocks on a free port, with user name/password authentication (RFC 1929)."""
    binary = _binary("/usr/bin/microsocks")
    port = free_port()
    argv = [binary, "-i", "127.0.0.1", "-p", str(port), "-u", USER, "-P", PASSWORD]
    start_daemon(argv, port)
    return RunningProxy("socks5", port)


def run_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tether ARGS`` with only ``env``'s proxy variables (and PATH and the like)."""
    clean = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        input="",
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
        env={**clean, **env},
    )


@pytest.mark.parametrize("scheme", ["http", "socks5", "socks5h"])
def test_get_through_each_kind_of_proxy_prints_the_body(
    embedded: Server, tinyproxy: RunningProxy, microsocks: RunningProxy, scheme: str
) -> None:
    proxy = tinyproxy if scheme == "http" else microsocks
    url = f"http://localhost:{embedded.port}/"
    result = run_cli("get", "--proxy", proxy.url(scheme=scheme), url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from tether\n", "")
    assert embedded.requests == [("GET", "/")]


def test_ws_through_a_socks5h_proxy_says_via_which_without_the_password(
    embedded: Server, microsocks: RunningProxy
) -> None:
    url = f"ws://localhost:{embedded.port}/websocket"
    result = run_cli("ws", "-x", microsocks.url(scheme="socks5h"), url, stdin="hello\nproxy\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nproxy\n"
    up = result.stderr.splitlines()[0]
    assert up.endswith(f" via proxy socks5h://{USER}@127.0.0.1:{microsocks.port}")
    assert PASSWORD not in result.stderr


@pytest.mark.parametrize(
    ("kind", "refusal"),
    # tinyproxy 1.11 answers a CONNECT with bad credentials 401, not 407.
    [("http", "refused CONNECT localhost:{port}: 40"), ("socks5", "refused the user name")],
)
def test_wrong_proxy_credentials_exit_97_naming_the_proxy_not_the_password(
    embedded: Server,
    tinyproxy: RunningProxy,
    microsocks: RunningProxy,
    kind: str,
    refusal: str,
) -> None:
    proxy = tinyproxy if kind == "http" else microsocks
    bad = proxy.url(password="wrong-pw")
    result = run_cli("get", "--proxy", bad, f"http://localhost:{embedded.port}/")
    assert result.returncode == 97
    line = one_line_error(result)
    assert line.startswith(f"tether: proxy {kind}://{USER}@127.0.0.1:{proxy.port}: ")
    assert refusal.format(port=embedded.port) in line
    assert "wrong-pw" not in result.stderr
    assert embedded.requests == []


def test_a_proxy_that_is_down_exits_7_naming_it(embedded: Server) -> None:
    dead = free_port()
    result = run_cli("get", "-x", f"http://127.0.0.1:{dead}", f"http://localhost:{embedded.port}/")
    assert result.returncode == 7
    assert one_line_error(result) == (
        f"tether: cannot connect to localhost:{embedded.port} "
        f"via proxy http://127.0.0.1:{dead}: refused"
    )


def test_proxy_env_reads_the_environment_and_no_proxy(
    embedded: Server, tinyproxy: RunningProxy
) -> None:
    url = f"http://localhost:{embedded.port}/"
    through = run_with_env({"HTTP_PROXY": tinyproxy.url()}, "get", "--proxy", "env", url)
    assert (through.returncode, through.stdout) == (0, "hello from tether\n"), through.stderr
    refused = run_with_env(
        {"HTTP_PROXY": tinyproxy.url(password="wrong-pw")}, "get", "--proxy", "env", url
    )
    assert refused.returncode == 97, refused.stderr  # it went through the proxy
    bypassed = run_with_env(
        {"HTTP_PROXY": tinyproxy.url(password="wrong-pw"), "NO_PROXY": "example.org,localhost"},
        "get",
        "--proxy",
        "env",
        url,
    )
    assert (bypassed.returncode, bypassed.stdout) == (0, "hello from tether\n"), bypassed.stderr


def test_the_environment_is_never_read_without_proxy_env(embedded: Server) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = run_with_env(
        {"HTTP_PROXY": dead, "http_proxy": dead, "ALL_PROXY": dead},
        "get",
        f"http://localhost:{embedded.port}/",
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from tether\n", "")


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (
            ["--proxy", "socks4://127.0.0.1:1080"],
            {},
            "tether: --proxy: proxy URL 'socks4://127.0.0.1:1080': scheme 'socks4' is not "
            "supported; tether speaks http, https, socks5, socks5h",
        ),
        (
            ["--proxy", "http://me:hunter2@proxy:99999"],
            {},
            "tether: --proxy: proxy URL 'http://me:***@proxy:99999': bad port '99999' (1-65535)",
        ),
        (
            ["--proxy", "http://127.0.0.1:3128", "--unix-socket", "/tmp/tether-none.sock"],
            {},
            "tether: --unix-socket and --proxy exclude each other (a Unix socket is local)",
        ),
        (
            ["--proxy", "env"],
            {"HTTP_PROXY": "ftp://proxy:21"},
            "tether: --proxy env: $HTTP_PROXY: proxy URL 'ftp://proxy:21': scheme 'ftp' is "
            "unknown; tether speaks http, https, socks5, socks5h",
        ),
    ],
)
@pytest.mark.parametrize("command", ["get", "ws"])
def test_bad_proxy_options_are_usage_errors(
    args: list[str], env: dict[str, str], message: str, command: str
) -> None:
    url = "http://localhost:1/" if command == "get" else "ws://localhost:1/"
    result = run_with_env(env, command, *args, url)
    assert result.returncode == 2
    assert one_line_error(result) == message
    assert "hunter2" not in result.stderr
