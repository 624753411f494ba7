"""Issue 21's interop scenarios: tether through real squid, tinyproxy, dante and microsocks.

Every test goes through the public API (``tether.open(..., proxy=URL)``,
events, ``await_*``). The proxies connect to origins from 127.0.0.1's
sibling 127.0.0.2 (``OUTGOING``), and the origin records where each request
came from: a request that reached it directly (the proxy ignored) fails the
test. SOCKS5 username/password is microsocks' (dante's ``username`` method
checks system accounts, which the tests do not create).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import pytest

import tether
from tests._ports import free_port
from tests.conftest import ConnectionTracker, ServerContext, events_until_gave_up, inbox_of
from tests.proxies._daemons import OUTGOING, USER, Kind, ProxyDaemon
from tests.proxies.conftest import Origin, OwnProxy, SharedProxies
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
RETRY_TIMEOUT = 5.0  # on the fake clock where a test uses it
HELLO = b"hello"
SUBPROTOCOL = [("sec-websocket-protocol", "mychat")]


@dataclass(frozen=True)
class Route:
    """A way through a proxy: the program, with or without auth, the scheme, the origin's name."""

    kind: Kind
    auth: bool = False
    scheme: str | None = None  # None: the kind's (http or socks5)
    host: str = "127.0.0.1"

    def proxy(self, proxies: SharedProxies) -> ProxyDaemon:
        return proxies.get(self.kind, auth=self.auth)

    def url(self, daemon: ProxyDaemon) -> str:
        return daemon.url(scheme=self.scheme)


ROUTES = {
    "squid": Route(Kind.SQUID, host="localhost"),  # the proxy resolves the name
    "squid-auth": Route(Kind.SQUID, auth=True),
    "tinyproxy": Route(Kind.TINYPROXY, host="localhost"),
    "tinyproxy-auth": Route(Kind.TINYPROXY, auth=True),
    "dante-socks5": Route(Kind.DANTE),
    "dante-socks5h": Route(Kind.DANTE, scheme="socks5h", host="localhost"),
    "microsocks-socks5": Route(Kind.MICROSOCKS),
    "microsocks-auth-socks5h": Route(
        Kind.MICROSOCKS, auth=True, scheme="socks5h", host="localhost"
    ),
}

#: What each program answers when the origin refuses the connection: (HTTP status, SOCKS reply).
ORIGIN_REFUSED = {
    Kind.SQUID: (503, None),
    Kind.TINYPROXY: (500, None),
    Kind.DANTE: (None, 0x05),
    Kind.MICROSOCKS: (None, 0x05),
}


# -- helpers -----------------------------------------------------------------------------------


def next_event(conn: tether.Connection, timeout: float = WAIT) -> object:
    return inbox_of(conn).receive(timeout=timeout)


def events_until(conn: tether.Connection, last: type) -> list[object]:
    """Events up to and including the first instance of ``last``."""
    seen: list[object] = []
    while not seen or not isinstance(seen[-1], last):
        seen.append(next_event(conn))
    return seen


def get_hello(conn: tether.Connection) -> None:
    stream = conn.get("/")
    response = conn.await_(stream)
    assert isinstance(response, tether.Response), response
    assert response.status == 200
    assert conn.await_body(stream) == HELLO


def upgrade(conn: tether.Connection) -> tether.StreamRef:
    stream = conn.ws_upgrade("/websocket", SUBPROTOCOL)
    event = conn.await_(stream)
    assert isinstance(event, tether.Upgrade), event
    return stream


def echo(conn: tether.Connection, stream: tether.StreamRef, text: str) -> None:
    conn.ws_send(tether.Text(text))
    assert conn.await_(stream) == tether.Ws(conn, stream, tether.Text(text))


def came_through_proxy(origin: Origin, requests: int = 1) -> None:
    """The origin's next ``requests`` requests came from the proxies' address, not tether's."""
    for _ in range(requests):
        assert origin.next_remote() == OUTGOING


def gave_up_with(conn: tether.Connection) -> BaseException:
    """The last reason of the connection's final ``RetriesExhausted`` (no ``Up`` before it)."""
    seen = events_until_gave_up(conn, timeout=WAIT * 2)
    assert not any(isinstance(event, tether.Up) for event in seen), seen
    final = seen[-1]
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    reason = final.reason.last_reason
    assert reason is not None
    return reason


def wait_for_log(daemon: ProxyDaemon, text: str) -> str:
    """The proxy's log once it contains ``text`` (bounded by ``WAIT``).

    Another process writes it, maybe after its answer reached tether: a file
    gives no event to wait on, so it is read again until the text is there.
    """
    deadline = time.monotonic() + WAIT
    while text not in (log := daemon.log()):
        assert time.monotonic() < deadline, f"{text!r} not in the log of {daemon!r}:\n{log}"
        time.sleep(0.02)
    return log


# -- HTTP and Websocket through each proxy -------------------------------------------------------


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
def test_get_then_websocket_echo_through_the_proxy(
    route: Route, proxies: SharedProxies, origin: Origin, open_conn: ConnectionTracker
) -> None:
    daemon = route.proxy(proxies)
    conn = open_conn(route.host, origin.port, proxy=route.url(daemon), retry=0)
    assert conn.await_up() == "http"
    get_hello(conn)
    stream = upgrade(conn)
    echo(conn, stream, "through the proxy")
    echo(conn, stream, "x" * 70_000)  # more than one read, more than one proxy buffer
    came_through_proxy(origin, requests=2)  # the GET and the Websocket handshake


@pytest.mark.parametrize("kind", [Kind.SQUID, Kind.TINYPROXY])
def test_wss_through_an_http_proxy_verifies_the_origin_name(
    kind: Kind,
    proxies: SharedProxies,
    server_context: ServerContext,
    trusting: ssl.SSLContext,
    open_conn: ConnectionTracker,
) -> None:
    # The certificate names localhost only: checked against the proxy's name
    # (127.0.0.1) it would fail.
    daemon = proxies.get(kind)
    with Origin(ssl_context=server_context("localhost")) as origin:
        conn = open_conn(
            "localhost",
            origin.port,
            transport="tls",
            tls_context=trusting,
            proxy=daemon.url(),
            retry=0,
        )
        assert conn.await_up() == "http"
        stream = upgrade(conn)
        echo(conn, stream, "wss through CONNECT")
        came_through_proxy(origin)
        conn.close()
        assert conn.wait_stopped(WAIT)


def test_wss_through_an_http_proxy_refuses_a_certificate_for_another_name(
    proxies: SharedProxies,
    server_context: ServerContext,
    trusting: ssl.SSLContext,
    open_conn: ConnectionTracker,
) -> None:
    daemon = proxies.get(Kind.SQUID)
    with Origin(ssl_context=server_context("elsewhere.example")) as origin:
        conn = open_conn(
            "localhost",
            origin.port,
            transport="tls",
            tls_context=trusting,
            proxy=daemon.url(),
            retry=0,
        )
        reason = gave_up_with(conn)
    assert isinstance(reason, ssl.SSLCertVerificationError), reason
    assert "localhost" in reason.verify_message or "mismatch" in reason.verify_message


# -- proxy="env": the proxy the environment names, unless NO_PROXY covers the origin ------------


@pytest.mark.parametrize(
    ("no_proxy", "source"),
    [("", OUTGOING), ("example.com,127.0.0.1", "127.0.0.1")],
    ids=["through-the-proxy", "no_proxy-names-the-origin"],
)
def test_proxy_env_reads_http_proxy_and_no_proxy(
    no_proxy: str,
    source: str,
    monkeypatch: pytest.MonkeyPatch,
    proxies: SharedProxies,
    origin: Origin,
    open_conn: ConnectionTracker,
) -> None:
    daemon = proxies.get(Kind.TINYPROXY)
    for name in ("http_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", daemon.url())
    monkeypatch.setenv("NO_PROXY", no_proxy)
    conn = open_conn("127.0.0.1", origin.port, proxy="env", retry=0)
    assert conn.await_up() == "http"
    get_hello(conn)
    assert origin.next_remote() == source  # through the proxy, or direct when excluded


# -- an https:// proxy: TLS with the proxy, then (wss) TLS with the origin inside it -------------


@pytest.mark.parametrize("origin_tls", [False, True], ids=["ws", "wss"])
def test_https_proxy_carries_http_and_websocket(
    origin_tls: bool,
    proxies: SharedProxies,
    server_context: ServerContext,
    trusting: ssl.SSLContext,
    open_conn: ConnectionTracker,
) -> None:
    # The proxy's certificate names 127.0.0.1 only, the origin's localhost only: each
    # session must be checked against its own peer's name.
    daemon = proxies.get(Kind.SQUID, tls=True)
    tls: dict[str, object] = {"transport": "tls", "tls_context": trusting} if origin_tls else {}
    with Origin(ssl_context=server_context("localhost") if origin_tls else None) as origin:
        conn = open_conn(
            "localhost",
            origin.port,
            proxy=daemon.url(),
            proxy_tls_context=trusting,
            retry=0,
            **tls,
        )
        assert conn.await_up() == "http"
        get_hello(conn)
        stream = upgrade(conn)
        echo(conn, stream, "TLS in TLS" if origin_tls else "through TLS")
        echo(conn, stream, "y" * 70_000)
        came_through_proxy(origin, requests=2)
        conn.close()
        assert conn.wait_stopped(WAIT)


def test_https_proxy_with_an_untrusted_certificate_is_refused(
    proxies: SharedProxies, origin: Origin, open_conn: ConnectionTracker
) -> None:
    daemon = proxies.get(Kind.SQUID, tls=True)
    # The default context trusts the system's CAs, which never signed the test CA's.
    conn = open_conn("127.0.0.1", origin.port, proxy=daemon.url(), retry=0)
    reason = gave_up_with(conn)
    assert isinstance(reason, ssl.SSLCertVerificationError), reason


# -- authentication -------------------------------------------------------------------------------


#: What each HTTP proxy answers a CONNECT without credentials and with a wrong password:
#: (status, the header asking for credentials). tinyproxy 1.11 answers a wrong password
#: with 401 and WWW-Authenticate (a server's status, not a proxy's); tether reports it as is.
AUTH_REFUSED = {
    (Kind.SQUID, "none"): (407, b"proxy-authenticate"),
    (Kind.SQUID, "wrong password"): (407, b"proxy-authenticate"),
    (Kind.TINYPROXY, "none"): (407, b"proxy-authenticate"),
    (Kind.TINYPROXY, "wrong password"): (401, b"www-authenticate"),
}


@pytest.mark.parametrize(("kind", "credentials"), AUTH_REFUSED)
def test_http_proxy_auth_refused_is_a_proxy_error_with_its_status(
    kind: Kind, credentials: str, proxies: SharedProxies, open_conn: ConnectionTracker
) -> None:
    daemon = proxies.get(kind, auth=True)
    url = daemon.url(password="wrong") if credentials == "wrong password" else daemon.url(user="")
    conn = open_conn("127.0.0.1", free_port(), proxy=url, retry=0)
    reason = gave_up_with(conn)
    assert isinstance(reason, tether.ProxyError), reason
    status, challenge = AUTH_REFUSED[kind, credentials]
    assert reason.status == status
    assert any(name == challenge for name, _ in reason.headers), reason.headers
    assert reason.proxy.endswith(f"127.0.0.1:{daemon.port}")
    assert daemon.password not in str(reason)


@pytest.mark.parametrize("credentials", ["wrong password", "none"])
def test_socks5_auth_refused_is_a_proxy_error(
    credentials: str, proxies: SharedProxies, open_conn: ConnectionTracker
) -> None:
    daemon = proxies.get(Kind.MICROSOCKS, auth=True)
    url = daemon.url(password="wrong") if credentials == "wrong password" else daemon.url(user="")
    conn = open_conn("127.0.0.1", free_port(), proxy=url, retry=0)
    reason = gave_up_with(conn)
    assert isinstance(reason, tether.ProxyError), reason
    assert reason.status is None
    assert reason.proxy.endswith(f"127.0.0.1:{daemon.port}")
    assert daemon.password not in str(reason)
    if credentials == "wrong password":
        assert USER in reason.proxy  # the user is named, never the password


# -- the origin refused behind the proxy ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_origin_refused_behind_the_proxy_is_a_proxy_error(
    kind: Kind, proxies: SharedProxies, open_conn: ConnectionTracker, refused_port: int
) -> None:
    daemon = proxies.get(kind)
    conn = open_conn("127.0.0.1", refused_port, proxy=daemon.url(), retry=0)
    reason = gave_up_with(conn)
    assert isinstance(reason, tether.ProxyError), reason
    assert (reason.status, reason.reply) == ORIGIN_REFUSED[kind]


# -- socks5 (tether resolves) and socks5h (the proxy resolves) -----------------------------------


@pytest.mark.parametrize(
    ("scheme", "requested"), [("socks5h", "localhost"), ("socks5", "127.0.0.1")]
)
def test_socks5h_sends_the_name_and_socks5_the_address(
    scheme: str,
    requested: str,
    proxies: SharedProxies,
    open_conn: ConnectionTracker,
) -> None:
    # dante refuses its blocked_port (reply 0x02), logging the destination as requested.
    daemon = proxies.get(Kind.DANTE)
    conn = open_conn("localhost", daemon.blocked_port, proxy=daemon.url(scheme=scheme), retry=0)
    reason = gave_up_with(conn)
    assert isinstance(reason, tether.ProxyError), reason
    assert reason.reply == 0x02
    wait_for_log(daemon, f" {requested}.{daemon.blocked_port}")


# -- the proxy down, killed, stalling -----------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_proxy_down_at_start_is_retried_until_it_is_up(
    kind: Kind, fake: FakeTime, own_proxy: OwnProxy, origin: Origin, open_conn: ConnectionTracker
) -> None:
    daemon = own_proxy(kind, start=False)
    daemon.port = free_port()
    conn = open_conn("127.0.0.1", origin.port, proxy=daemon.url(), retry_timeout=RETRY_TIMEOUT)
    assert fake.wait_pending(2)  # refused, and the immediate retry too: the next is set
    with pytest.raises(TimeoutError):
        inbox_of(conn).receive(timeout=0)  # no Up, no Down: never up yet
    daemon.start()
    fake.advance(RETRY_TIMEOUT)
    assert next_event(conn) == tether.Up(conn, "http")
    get_hello(conn)
    came_through_proxy(origin)


@pytest.mark.parametrize(
    ("kind", "auth"),
    [(Kind.SQUID, True), (Kind.TINYPROXY, False), (Kind.DANTE, False), (Kind.MICROSOCKS, True)],
    ids=["squid-auth", "tinyproxy", "dante", "microsocks-auth"],
)
def test_proxy_killed_mid_websocket_reconnects_and_reupgrades(
    kind: Kind,
    auth: bool,
    fake: FakeTime,
    own_proxy: OwnProxy,
    origin: Origin,
    open_conn: ConnectionTracker,
) -> None:
    daemon = own_proxy(kind, auth=auth)
    conn = open_conn(
        "127.0.0.1",
        origin.port,
        proxy=daemon.url(),
        retry_timeout=RETRY_TIMEOUT,
        ws_opts={"reupgrade": True},
    )
    assert conn.await_up() == "http"
    first = upgrade(conn)
    echo(conn, first, "before")
    came_through_proxy(origin)

    daemon.kill()
    down = next_event(conn)
    assert isinstance(down, tether.Down), down
    assert down.protocol == "ws"
    assert first in down.killed_streams

    assert fake.wait_pending(2)  # the immediate retry was refused: the next is set
    daemon.start()  # the same port
    fake.advance(RETRY_TIMEOUT)
    up, upgraded = events_until(conn, tether.Upgrade)
    assert up == tether.Up(conn, "http")
    assert isinstance(upgraded, tether.Upgrade)
    assert upgraded.stream != first
    echo(conn, upgraded.stream, "after the proxy came back")
    came_through_proxy(origin)  # the new handshake, through the new proxy process


@pytest.mark.parametrize("scheme", ["http", "socks5"])
def test_a_proxy_that_stalls_is_bounded_by_connect_timeout(
    scheme: str, stalling_proxy: int, open_conn: ConnectionTracker, refused_port: int
) -> None:
    conn = open_conn(
        "127.0.0.1",
        refused_port,
        proxy=f"{scheme}://127.0.0.1:{stalling_proxy}",
        connect_timeout=0.3,
        retry=1,
        retry_timeout=0.1,
    )
    reason = gave_up_with(conn)
    assert isinstance(reason, tether.ConnectTimeout), reason
