"""What ``proxy=`` and ``proxy_tls_context`` do to a connection, beyond passing traffic.

The event handler's phases through a proxy (the lookup and the connect
are the proxy's, ``proxy_handshake_*`` names it without its password, an
``https://`` proxy adds a TLS handshake of its own before the origin's),
which TLS context and name each handshake uses, what ``open`` refuses, and
``proxy="env"`` against the environment. The proxy here is a small
CONNECT proxy of the test's own (:class:`ConnectProxy`, asyncio in a
thread, optionally behind TLS with a certificate of a CA the origin's
does not share); tests/proxies/ runs tether through real proxies.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import tether
from tests.conftest import ServerContext
from tests.events import WAIT, expect
from tests.gun._events import Events
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

_HEAD_LIMIT = 16384
_SWEEPS = 10  # at most, in ConnectProxy._shutdown (one or two in practice)


class ConnectProxy:
    """An HTTP CONNECT proxy on 127.0.0.1 (TLS with ``tls_context``); relays after its 200.

    ``heads`` has the head of every CONNECT it received, in order;
    ``status`` is what it answers (anything but 200 ends the connection).
    """

    def __init__(self, tls_context: ssl.SSLContext | None = None, status: int = 200) -> None:
        self.heads: list[bytes] = []
        self.status = status
        self._tls_context = tls_context
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        # Every stream it opened (clients' and upstream), aborted at the end: a
        # task cancelled in its close (or a TLS close waiting for the peer's
        # close_notify) would leave the socket open when the loop closes.
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name="test-connect-proxy")

    def __enter__(self) -> ConnectProxy:
        self._thread.start()
        assert self._started.wait(WAIT)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(WAIT)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)
        assert not self._thread.is_alive()

    async def _shutdown(self) -> None:
        """Stop listening, end every client's task and wait until each socket is closed.

        In sweeps, until a sweep finds no task left: a task can appear while
        one is swept (a TLS handshake that completes just as its accept task
        is cancelled hands the client to a new task, whose stream would then
        wait for the peer's close_notify past the loop's close), and a
        client accepted just now has its task created but not yet started,
        its writer not yet in ``_writers``: a few loop turns let it start.
        """
        assert self._server is not None
        self._server.close()
        for _ in range(_SWEEPS):
            for _ in range(5):
                await asyncio.sleep(0)
            # The clients' tasks and, over TLS, asyncio's own for a client in its handshake.
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            # Aborted, not closed: a TLS close waits for the peer's close_notify.
            for writer in self._writers:
                writer.transport.abort()
            if not others:
                break
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
        closed = (writer.wait_closed() for writer in self._writers)
        await asyncio.wait_for(asyncio.gather(*closed, return_exceptions=True), WAIT)
        for _ in range(5):  # closing transports finish on the next turns
            await asyncio.sleep(0)
        await self._server.wait_closed()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self._tls_context)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass  # the client went away: nothing to relay
        finally:
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.heads.append(head)
        if len(head) > _HEAD_LIMIT or not head.startswith(b"CONNECT "):
            return
        if self.status != 200:
            writer.write(f"HTTP/1.1 {self.status} No\r\ncontent-length: 0\r\n\r\n".encode())
            await writer.drain()
            return
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        self._writers.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))
        finally:
            await _close(up_writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.CancelledError):
        await writer.wait_closed()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def origin(server_context: ServerContext) -> Iterator[Server]:
    """The embedded server over TLS, certified for ``origin.test`` only (the tests' ``ca``)."""
    with Server(tls_context=server_context("origin.test")) as srv:
        yield srv


@pytest.fixture
def origin_trust(ca: trustme.CA) -> ssl.SSLContext:
    """A client context trusting the origin's CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def proxy_ca() -> trustme.CA:
    """The CA of the TLS proxy's certificate: another CA than the origin's."""
    return trustme.CA()


@pytest.fixture
def tls_proxy(proxy_ca: trustme.CA) -> Iterator[ConnectProxy]:
    """A CONNECT proxy behind TLS, certified for ``localhost`` only (``proxy_ca``)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    proxy_ca.issue_cert("localhost").configure_cert(context)
    with ConnectProxy(context) as running:
        yield running


@pytest.fixture
def plain_proxy() -> Iterator[ConnectProxy]:
    """A CONNECT proxy over plain TCP."""
    with ConnectProxy() as running:
        yield running


@pytest.fixture
def opened() -> Iterator[list[tether.Connection]]:
    """Connections the test opens; closed and waited for at teardown."""
    conns: list[tether.Connection] = []
    yield conns
    for conn in conns:
        conn.close()
        assert conn.wait_stopped(WAIT)


def _get_root(conn: tether.Connection) -> bytes:
    stream = conn.request("GET", "/")
    response = conn.await_(stream, WAIT)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    return conn.await_body(stream, WAIT)


# -- the phases and the two TLS handshakes --------------------------------------------------


def test_through_an_https_proxy_each_phase_names_its_peer_and_each_tls_its_own_context(
    origin: Server,
    origin_trust: ssl.SSLContext,
    proxy_ca: trustme.CA,
    tls_proxy: ConnectProxy,
    opened: list[tether.Connection],
) -> None:
    proxy_trust = ssl.create_default_context()
    proxy_ca.configure_trust(proxy_trust)
    events = Events()
    conn = tether.open(
        "127.0.0.1",
        origin.port,
        transport="tls",
        tls_context=origin_trust,
        server_hostname="origin.test",
        proxy=f"https://alice:pa55word@localhost:{tls_proxy.port}",
        proxy_tls_context=proxy_trust,
        event_handler=events,
        retry=0,
    )
    opened.append(conn)
    expect(conn, tether.Up)
    assert _get_root(conn) == b"hello from tether\n"

    phases = [(n, d) for n, d in events.seen() if not n.startswith(("request", "response"))]
    assert [name for name, _ in phases] == [
        "init",
        "domain_lookup_start",
        "domain_lookup_end",
        "connect_start",
        "connect_end",
        "tls_handshake_start",  # with the proxy
        "tls_handshake_end",
        "proxy_handshake_start",
        "proxy_handshake_end",
        "tls_handshake_start",  # with the origin, inside the tunnel
        "tls_handshake_end",
    ]
    (lookup, looked_up, connect, connected, to_proxy, to_proxy_end) = (d for _, d in phases[1:7])
    (start, end, to_origin, to_origin_end) = (d for _, d in phases[7:])
    for data in (lookup, looked_up, connect, connected):
        assert (data["host"], data["port"]) == ("localhost", tls_proxy.port)
    assert looked_up["lookup_info"]["port"] == tls_proxy.port
    assert "protocol" not in connected  # more hops follow

    assert (to_proxy["host"], to_proxy["port"]) == ("localhost", tls_proxy.port)
    assert to_proxy["server_hostname"] == "localhost"
    assert to_proxy["tls_context"] is proxy_trust
    assert "protocol" not in to_proxy_end
    assert "error" not in to_proxy_end

    proxy_url = f"https://alice@localhost:{tls_proxy.port}"
    for data in (start, end):
        assert (data["host"], data["port"], data["proxy"]) == (
            "localhost",
            tls_proxy.port,
            proxy_url,
        )
    assert "protocol" not in end
    assert "error" not in end

    assert (to_origin["host"], to_origin["port"]) == ("127.0.0.1", origin.port)
    assert to_origin["server_hostname"] == "origin.test"  # server_hostname, not the proxy's
    assert to_origin["tls_context"] is origin_trust
    assert to_origin_end["protocol"] == "http"

    head = tls_proxy.heads[0]
    assert head.startswith(f"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\r\n".encode())
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:] if line)
    authorization = {name.lower(): value for name, value in fields.items()}
    assert authorization[b"proxy-authorization"] == b"Basic " + base64.b64encode(b"alice:pa55word")
    assert all("pa55word" not in repr(data) for _, data in events.seen())


def test_without_proxy_tls_context_the_proxy_is_verified_by_the_default_context(
    origin: Server,
    origin_trust: ssl.SSLContext,
    tls_proxy: ConnectProxy,
    opened: list[tether.Connection],
) -> None:
    """The origin's ``tls_context`` trusts the proxy's CA not: it is not used for the proxy."""
    events = Events()
    conn = tether.open(
        "127.0.0.1",
        origin.port,
        transport="tls",
        tls_context=origin_trust,
        server_hostname="origin.test",
        proxy=f"https://localhost:{tls_proxy.port}",
        event_handler=events,
        retry=0,
    )
    opened.append(conn)
    error = expect(conn, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert isinstance(error.reason.last_reason, ssl.SSLCertVerificationError)
    end = events.next("tls_handshake_end")
    assert (end["host"], end["port"]) == ("localhost", tls_proxy.port)
    assert isinstance(end["error"], ssl.SSLCertVerificationError)
    assert "proxy_handshake_start" not in events.names()
    assert tls_proxy.heads == []  # no CONNECT over an unverified TLS session
    assert origin.requests == []


def test_the_origin_is_verified_against_its_name_not_the_proxys(
    origin: Server,
    origin_trust: ssl.SSLContext,
    plain_proxy: ConnectProxy,
    opened: list[tether.Connection],
) -> None:
    """Without server_hostname the name is 127.0.0.1, the certificate's origin.test: refused."""
    events = Events()
    conn = tether.open(
        "127.0.0.1",
        origin.port,
        transport="tls",
        tls_context=origin_trust,
        proxy=f"http://localhost:{plain_proxy.port}",
        event_handler=events,
        retry=0,
    )
    opened.append(conn)
    error = expect(conn, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert isinstance(error.reason.last_reason, ssl.SSLCertVerificationError)
    end = events.next("tls_handshake_end")
    assert (end["host"], end["server_hostname"]) == ("127.0.0.1", "127.0.0.1")
    assert len(plain_proxy.heads) == 1  # the tunnel was up: the origin's TLS failed in it


def test_a_refused_connect_ends_the_proxy_handshake_phase_with_the_proxy_error(
    opened: list[tether.Connection],
) -> None:
    events = Events()
    with ConnectProxy(status=407) as refusing:
        conn = tether.open(
            "localhost",
            9,
            proxy=f"http://bob:hunter2@127.0.0.1:{refusing.port}",
            event_handler=events,
            retry=0,
        )
        opened.append(conn)
        error = expect(conn, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    refusal = error.reason.last_reason
    assert isinstance(refusal, tether.ProxyError)
    assert (refusal.status, refusal.proxy) == (407, f"http://bob@127.0.0.1:{refusing.port}")
    end = events.next("proxy_handshake_end")
    assert end["error"] is refusal
    assert end["proxy"] == f"http://bob@127.0.0.1:{refusing.port}"
    assert "hunter2" not in str(refusal)


# -- what open() refuses --------------------------------------------------------------------


def test_open_unix_takes_no_proxy(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="open_unix takes no proxy"):
        tether.open_unix(str(tmp_path / "s.sock"), proxy="http://127.0.0.1:3128")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"proxy": "http://127.0.0.1:3128"},
        {"proxy": "socks5h://127.0.0.1:1080"},
        {"proxy": None},
    ],
)
def test_proxy_tls_context_needs_an_https_proxy(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"proxy_tls_context is for an https:// proxy"):
        tether.open("localhost", 80, proxy_tls_context=ssl.create_default_context(), **options)


@pytest.mark.parametrize(
    ("proxy", "error", "message"),
    [
        ("socks4://127.0.0.1:1080", ValueError, "scheme 'socks4' is not supported"),
        ("ftp://127.0.0.1", ValueError, "scheme 'ftp' is unknown"),
        ("127.0.0.1:3128", ValueError, "has no scheme: give e.g. 'http://127.0.0.1:3128'"),
        ("http://", ValueError, "has no host"),
        ("http://u:secret@proxy:0", ValueError, r"'http://u:\*\*\*@proxy:0': bad port '0'"),
        ("http://proxy:3128/path", ValueError, "only '/' may follow the host and port"),
        ("http://::1:3128", ValueError, r"put an IPv6 address in brackets"),
        (3128, TypeError, "proxy must be a URL str, 'env', a tether.Proxy or None, not int"),
    ],
)
def test_bad_proxies_are_refused_by_open_with_a_clear_message(
    proxy: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        tether.open("localhost", 80, proxy=proxy)
    assert "secret" not in str(raised.value)


def test_opts_proxy_is_a_proxy_whose_repr_and_url_hide_the_password(
    plain_proxy: ConnectProxy, opened: list[tether.Connection]
) -> None:
    conn = tether.open(
        "localhost", 9, proxy=f"http://carol:0p3n%40sesame@127.0.0.1:{plain_proxy.port}"
    )
    opened.append(conn)
    proxy = conn.opts.proxy
    assert proxy == tether.Proxy(
        tether.ProxyScheme.HTTP, "127.0.0.1", plain_proxy.port, "carol", "0p3n@sesame"
    )
    assert "0p3n" not in repr(proxy)
    assert "0p3n" not in repr(conn.opts)
    assert proxy.url == f"http://carol@127.0.0.1:{plain_proxy.port}"


# -- proxy="env" ----------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variable set, whatever the machine running the tests has."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_proxy_env_goes_through_http_proxy(
    clean_env: pytest.MonkeyPatch,
    server: Server,
    plain_proxy: ConnectProxy,
    opened: list[tether.Connection],
) -> None:
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{plain_proxy.port}")
    clean_env.setenv("NO_PROXY", "example.org, .internal")
    conn = tether.open("localhost", server.port, proxy="env")
    opened.append(conn)
    assert conn.opts.proxy == tether.Proxy(tether.ProxyScheme.HTTP, "127.0.0.1", plain_proxy.port)
    expect(conn, tether.Up)
    assert _get_root(conn) == b"hello from tether\n"
    assert [h.split(b"\r\n")[0] for h in plain_proxy.heads] == [
        f"CONNECT localhost:{server.port} HTTP/1.1".encode()
    ]


@pytest.mark.parametrize("no_proxy", ["localhost", "*", "127.0.0.0/8,example.org", ".localhost"])
def test_proxy_env_connects_directly_to_what_no_proxy_matches(
    clean_env: pytest.MonkeyPatch,
    server: Server,
    plain_proxy: ConnectProxy,
    opened: list[tether.Connection],
    no_proxy: str,
) -> None:
    host = "127.0.0.1" if "/" in no_proxy else "localhost"
    clean_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{plain_proxy.port}")
    clean_env.setenv("no_proxy", no_proxy)
    conn = tether.open(host, server.port, proxy="env")
    opened.append(conn)
    assert conn.opts.proxy is None
    expect(conn, tether.Up)
    assert _get_root(conn) == b"hello from tether\n"
    assert plain_proxy.heads == []


def test_without_proxy_env_the_environment_is_never_read(
    clean_env: pytest.MonkeyPatch, server: Server, opened: list[tether.Connection]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, not listening: refuses
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "HTTPS_PROXY"):
            clean_env.setenv(name, dead)
        conn = tether.open("localhost", server.port, retry=0)
        opened.append(conn)
        assert conn.opts.proxy is None
        expect(conn, tether.Up)
        assert _get_root(conn) == b"hello from tether\n"


def test_proxy_env_with_a_bad_variable_is_refused_naming_it(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("https_proxy", "socks4://user:pw@127.0.0.1:1080")
    with pytest.raises(ValueError, match=r"^\$https_proxy: .*'socks4' is not supported") as raised:
        tether.open("localhost", 443, transport="tls", proxy="env")
    assert ":pw@" not in str(raised.value)


@pytest.mark.parametrize(
    ("variables", "proxy"),
    [
        ({}, None),  # the environment names no proxy
        ({"HTTPS_PROXY": "https://127.0.0.1:3129", "NO_PROXY": "localhost"}, None),
        ({"HTTPS_PROXY": "http://127.0.0.1:3128"}, "http://127.0.0.1:3128"),
        ({"HTTPS_PROXY": "https://127.0.0.1:3129"}, "https://127.0.0.1:3129"),
    ],
)
def test_proxy_env_takes_a_proxy_tls_context_for_an_https_proxy_it_may_name(
    clean_env: pytest.MonkeyPatch,
    opened: list[tether.Connection],
    variables: dict[str, str],
    proxy: str | None,
) -> None:
    """Code written for ``proxy="env"`` cannot know if the environment names an https:// proxy."""
    for name, value in variables.items():
        clean_env.setenv(name, value)
    context = ssl.create_default_context()
    conn = tether.open(
        "localhost", 9, transport="tls", proxy="env", proxy_tls_context=context, retry=0
    )
    opened.append(conn)
    assert (None if conn.opts.proxy is None else conn.opts.proxy.url) == proxy
    used = proxy is not None and proxy.startswith("https:")
    assert conn.opts.proxy_tls_context is (context if used else None)
