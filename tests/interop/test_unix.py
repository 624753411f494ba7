"""``tether.open_unix``: HTTP/1.1 and Websocket over a Unix socket, against aiohttp and uvicorn.

aiohttp serves on its ``UnixSite``, uvicorn on a bound ``AF_UNIX`` socket
(what ``uvicorn --uds`` does). The socket paths come from the ``unix_path``
fixture (short enough for ``sun_path``). Reconnects, failed attempts (a
missing socket file, a socket nobody listens on), TLS over the socket and
supervision are the ones a TCP connection has.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import tether
from tests.conftest import ConnectionTracker, ServerContext, events_until_gave_up, inbox_of
from tests.interop._loop_server import LoopServer
from tests.interop.aiohttp_server import AiohttpServer
from tests.interop.uvicorn_server import UvicornServer
from tests.supervision.test_connections import Handler, crash_on_request_and_recover

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
WS_HEADERS = [("sec-websocket-protocol", "mychat")]

ServerFactory = Callable[[str], LoopServer]
SERVERS: dict[str, ServerFactory] = {
    "aiohttp": lambda path: AiohttpServer(unix_path=path),
    "uvicorn": lambda path: UvicornServer(unix_path=path),
}


@pytest.fixture(params=sorted(SERVERS))
def unix_server(request: pytest.FixtureRequest, unix_path: str) -> Iterator[LoopServer]:
    """aiohttp or uvicorn serving the interop routes on the Unix socket ``unix_path``."""
    with SERVERS[request.param](unix_path) as server:
        yield server


@pytest.fixture
def aiohttp_unix(unix_path: str) -> Iterator[AiohttpServer]:
    with AiohttpServer(unix_path=unix_path) as server:
        yield server


def open_unix(
    open_conn: ConnectionTracker, path: str | os.PathLike[str], **options: Any
) -> tether.Connection:
    """``tether.open_unix``, closed at teardown."""
    return open_conn.track(tether.open_unix(path, **options))


def test_http_and_websocket_over_a_unix_socket(
    unix_server: LoopServer, unix_path: str, open_conn: ConnectionTracker
) -> None:
    conn = open_unix(open_conn, unix_path)
    assert conn.await_up(WAIT) == "http"

    assert conn.await_body(conn.get("/"), WAIT) == b"hello"
    assert unix_server.next_request().header("host") == "localhost"

    ws = conn.ws_upgrade("/websocket", WS_HEADERS)
    upgrade = conn.await_(ws, WAIT)
    assert isinstance(upgrade, tether.Upgrade)
    assert unix_server.next_request().header("host") == "localhost"
    conn.ws_send(tether.Text("over the socket"))
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("over the socket"))


def test_info_shows_the_socket_path(
    aiohttp_unix: AiohttpServer, unix_path: str, open_conn: ConnectionTracker
) -> None:
    """gun:info's origin_host/origin_port for a Unix socket: localhost and 80."""
    conn = open_unix(open_conn, Path(unix_path))  # os.PathLike works too
    assert conn.await_up(WAIT) == "http"
    info = conn.info()
    assert (info.host, info.port, info.transport, info.state) == ("localhost", 80, "tcp", "up")
    assert info.unix_path == unix_path
    assert (info.local_address, info.peer_address) == (None, None)
    assert conn.unix_path == unix_path
    assert unix_path in repr(conn)


def test_a_dropped_connection_is_reconnected(
    aiohttp_unix: AiohttpServer, unix_path: str, open_conn: ConnectionTracker
) -> None:
    conn = open_unix(open_conn, unix_path, retry_timeout=0.05)
    assert conn.await_up(WAIT) == "http"
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"

    assert aiohttp_unix.drop_connections() == 1
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert down.protocol == "http"
    assert conn.await_up(WAIT) == "http"
    assert conn.await_body(conn.get("/"), WAIT) == b"hello"


def test_a_restarted_server_is_reached_by_the_retries(
    unix_path: str, open_conn: ConnectionTracker
) -> None:
    """The server goes away, then comes back on the same path.

    Meanwhile its socket file stays, refusing (Python < 3.13), or is gone
    (3.13's asyncio removes it when the server closes): a failed attempt either way.
    """
    with AiohttpServer(unix_path=unix_path):
        conn = open_unix(open_conn, unix_path, retry=100, retry_timeout=0.05)
        assert conn.await_up(WAIT) == "http"
    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)

    with contextlib.suppress(FileNotFoundError):  # a new server binds anew
        os.unlink(unix_path)
    with AiohttpServer(unix_path=unix_path):
        assert conn.await_up(WAIT) == "http"
        assert conn.await_body(conn.get("/"), WAIT) == b"hello"
        conn.close()  # before the server goes again


def test_a_missing_socket_is_retried_then_given_up(
    unix_path: str, open_conn: ConnectionTracker
) -> None:
    conn = open_unix(open_conn, unix_path, retry=2, retry_timeout=0.01)

    [final] = events_until_gave_up(conn)  # no Up, and no Down: it never was up
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    assert final.reason.attempts == 3
    last = final.reason.last_reason
    assert isinstance(last, FileNotFoundError)
    assert last.filename == unix_path
    assert unix_path in str(final.reason)  # the message names the path


def test_a_socket_nobody_listens_on_is_refused(
    unix_path: str, open_conn: ConnectionTracker
) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(unix_path)  # bound, never listening: connects are refused
        conn = open_unix(open_conn, unix_path, retry=0)
        [final] = events_until_gave_up(conn)
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    last = final.reason.last_reason
    assert isinstance(last, ConnectionRefusedError)
    assert last.filename == unix_path


def test_a_full_listen_backlog_is_a_failed_attempt(
    unix_path: str, open_conn: ConnectionTracker
) -> None:
    """A listener that never accepts, its backlog full: the attempt fails at once, no wait."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        listener.bind(unix_path)
        listener.listen(0)
        while True:  # fill the backlog (the kernel takes one more than it says)
            filler = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            filler.setblocking(False)
            try:
                filler.connect(unix_path)
            except BlockingIOError:
                break
        conn = open_unix(open_conn, unix_path, retry=1, retry_timeout=0.01)
        [final] = events_until_gave_up(conn)
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    assert final.reason.attempts == 2
    last = final.reason.last_reason
    assert isinstance(last, BlockingIOError)
    assert "backlog is full" in str(last)
    assert unix_path in str(last)


# -- TLS over the socket -------------------------------------------------------------------


def test_tls_over_a_unix_socket_verifies_localhost(
    unix_path: str,
    open_conn: ConnectionTracker,
    ca: trustme.CA,
    server_context: ServerContext,
) -> None:
    """Gun runs TLS over a Unix socket too (origin port 443); the name checked is localhost."""
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with AiohttpServer(ssl_context=server_context("localhost"), unix_path=unix_path):
        conn = open_unix(open_conn, unix_path, transport="tls", tls_context=client)
        assert conn.await_up(WAIT) == "http"
        assert conn.await_body(conn.get("/"), WAIT) == b"hello"
        info = conn.info()
        assert (info.transport, info.port, info.unix_path) == ("tls", 443, unix_path)
        conn.close()


def test_tls_over_a_unix_socket_refuses_a_certificate_for_another_name(
    unix_path: str,
    open_conn: ConnectionTracker,
    ca: trustme.CA,
    server_context: ServerContext,
) -> None:
    client = ssl.create_default_context()
    ca.configure_trust(client)
    with AiohttpServer(ssl_context=server_context("other.test"), unix_path=unix_path):
        conn = open_unix(open_conn, unix_path, transport="tls", tls_context=client, retry=0)
        [final] = events_until_gave_up(conn)
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    assert isinstance(final.reason.last_reason, ssl.SSLCertVerificationError)


# -- supervision -------------------------------------------------------------------------


def test_a_crashed_unix_connection_is_restarted_by_the_default_supervisor(
    aiohttp_unix: AiohttpServer, unix_path: str, open_conn: ConnectionTracker
) -> None:
    handler = Handler("request_start")
    conn = open_unix(open_conn, unix_path, event_handler=handler)

    crash_on_request_and_recover(conn, handler)  # Down(Crashed), Up, served again

    ids = [child.id for child in tether.supervision.default_supervisor().which_children()]
    assert sum(unix_path in child_id for child_id in ids) == 1


def test_a_unix_connection_without_supervisor_ends_with_its_crash(
    aiohttp_unix: AiohttpServer, unix_path: str, open_conn: ConnectionTracker
) -> None:
    handler = Handler("request_start")
    conn = open_unix(open_conn, unix_path, event_handler=handler, supervise=False)
    assert conn.await_up(WAIT) == "http"
    conn.get("/")

    down = inbox_of(conn).receive(WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.Crashed)
    error = inbox_of(conn).receive(WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.Crashed)
    assert conn.wait_stopped(WAIT)


# -- what open_unix refuses at the call ----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "error"),
    [
        pytest.param(42, TypeError, id="not-a-path"),
        pytest.param(None, TypeError, id="none"),
        pytest.param("", ValueError, id="empty"),
        pytest.param("/tmp/a\0b", ValueError, id="nul-inside"),
        pytest.param("/tmp/" + "x" * 103, ValueError, id="108-bytes"),
    ],
)
def test_open_unix_refuses_a_path_that_cannot_be_connected(path: object, error: type) -> None:
    with pytest.raises(error, match="path"):
        tether.open_unix(path)  # type: ignore[arg-type]


def test_the_longest_path_is_accepted(open_conn: ConnectionTracker) -> None:
    """107 bytes (Linux's sun_path less its NUL) pass; the attempt then fails as any other."""
    path = "/tmp/" + "x" * 102
    conn = open_unix(open_conn, path, retry=0)
    [final] = events_until_gave_up(conn)
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    assert isinstance(final.reason.last_reason, FileNotFoundError)


def test_open_unix_checks_its_options_as_open_does(unix_path: str) -> None:
    with pytest.raises(TypeError, match="unknown option"):
        tether.open_unix(unix_path, bogus=1)
    with pytest.raises(ValueError, match="transport"):
        tether.open_unix(unix_path, transport="udp")
