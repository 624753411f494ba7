"""``--proxy`` for ``tether get`` and ``tether ws``, through real proxies started per test.

tinyproxy (HTTP CONNECT, with ``BasicAuth``) and microsocks (SOCKS5, with
a user name and password) are tests/proxies' ``ProxyDaemon``: on free
127.0.0.1 ports with configurations of their own, killed after each test;
the tests skip, naming the program, where one is missing.
Both proxies demand credentials, so a command that ignored ``--proxy``
(or the environment's proxy) and connected directly would not see the
refusals these tests expect. The big interop suite is ``tests/proxies/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from tests._ports import free_port
from tests.cli.conftest import CLI_TIMEOUT, one_line_error, run_cli
from tests.proxies._daemons import USER, Kind, ProxyDaemon
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")


@pytest.fixture
def tinyproxy() -> Iterator[ProxyDaemon]:
    """tinyproxy, answering CONNECT only with ``USER`` and its password (else a refusal)."""
    with ProxyDaemon(Kind.TINYPROXY, auth=True) as daemon:
        yield daemon


@pytest.fixture
def microsocks() -> Iterator[ProxyDaemon]:
    """microsocks, with user name/password authentication (RFC 1929): ``USER`` and its password."""
    with ProxyDaemon(Kind.MICROSOCKS, auth=True) as daemon:
        yield daemon


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
    embedded: Server, tinyproxy: ProxyDaemon, microsocks: ProxyDaemon, scheme: str
) -> None:
    proxy = tinyproxy if scheme == "http" else microsocks
    url = f"http://localhost:{embedded.port}/"
    result = run_cli("get", "--proxy", proxy.url(scheme=scheme), url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from tether\n", "")
    assert embedded.requests == [("GET", "/")]


def test_ws_through_a_socks5h_proxy_says_via_which_without_the_password(
    embedded: Server, microsocks: ProxyDaemon
) -> None:
    url = f"ws://localhost:{embedded.port}/websocket"
    result = run_cli("ws", "-x", microsocks.url(scheme="socks5h"), url, stdin="hello\nproxy\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nproxy\n"
    up = result.stderr.splitlines()[0]
    assert up.endswith(f" via proxy socks5h://{USER}@127.0.0.1:{microsocks.port}")
    assert microsocks.password not in result.stderr
    assert quote(microsocks.password, safe="") not in result.stderr


@pytest.mark.parametrize(
    ("kind", "refusal"),
    # tinyproxy 1.11 answers a CONNECT with bad credentials 401, not 407.
    [("http", "refused CONNECT localhost:{port}: 40"), ("socks5", "refused the user name")],
)
def test_wrong_proxy_credentials_exit_97_naming_the_proxy_not_the_password(
    embedded: Server,
    tinyproxy: ProxyDaemon,
    microsocks: ProxyDaemon,
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
    embedded: Server, tinyproxy: ProxyDaemon
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
