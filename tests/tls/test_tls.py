"""TLS end to end on 127.0.0.1: HTTPS and WSS, verification failures, SNI, reconnects.

The servers present trustme certificates. A client context that trusts the
test CA connects; the default context (the system trust store), a
certificate for another name and a certificate from another CA are each
refused before ``Up``: the owner's only event is the final ``Error`` whose
``RetriesExhausted.last_reason`` is the ``ssl.SSLCertVerificationError``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

import tether
from tests.conftest import ConnectionTracker, ServerContext, events_until_gave_up, inbox_of
from tests.interop.aiohttp_server import AiohttpServer
from tests.tls.conftest import client_context
from tether.server import Server

WAIT = 5.0


def up(conn: tether.Connection) -> tether.Connection:
    assert conn.await_up(timeout=WAIT) == "http"
    return conn


def get(conn: tether.Connection, path: str = "/") -> tuple[int, bytes]:
    stream = conn.get(path)
    response = conn.await_(stream, timeout=WAIT)
    assert isinstance(response, tether.Response), response
    return response.status, b"" if response.fin else conn.await_body(stream, timeout=WAIT)


def upgrade(conn: tether.Connection, path: str = "/ws") -> tether.StreamRef:
    stream = conn.ws_upgrade(path)
    event = conn.await_(stream, timeout=WAIT)
    assert isinstance(event, tether.Upgrade), event
    return stream


def echo(conn: tether.Connection, stream: tether.StreamRef, frame: tether.Frame) -> None:
    conn.ws_send(frame)
    event = conn.await_(stream, timeout=WAIT)
    assert isinstance(event, tether.Ws), event
    assert event.frame == frame


def assert_refused_before_up(conn: tether.Connection) -> ssl.SSLCertVerificationError:
    """No Up, no Down: the final Error only, carrying the verification error."""
    events = events_until_gave_up(conn)
    assert len(events) == 1, events
    [error] = events
    assert isinstance(error, tether.Error)
    assert error.stream is None
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert error.reason.attempts == 1
    reason = error.reason.last_reason
    assert isinstance(reason, ssl.SSLCertVerificationError), reason
    return reason


# -- it works ---------------------------------------------------------------------


def test_https_get_with_a_context_trusting_the_ca(tls_server, trusting, open_conn):
    conn = up(open_conn("localhost", tls_server.port, transport="tls", tls_context=trusting))
    assert get(conn) == (200, b"hello from tether\n")
    assert get(conn, "/big/200000") == (200, b"x" * 200_000)  # many TLS records
    assert tls_server.requests == [("GET", "/"), ("GET", "/big/200000")]
    assert tls_server.url.startswith("https://")


def test_request_bodies_go_through_tls_intact(tls_server, trusting, open_conn):
    conn = up(open_conn("localhost", tls_server.port, transport="tls", tls_context=trusting))
    body = bytes(range(256)) * 1000
    stream = conn.post("/echo", body=body)
    assert conn.await_(stream, timeout=WAIT).status == 200
    assert conn.await_body(stream, timeout=WAIT) == body


def test_wss_upgrade_and_echo(tls_server, trusting, open_conn):
    conn = up(open_conn("localhost", tls_server.port, transport="tls", tls_context=trusting))
    stream = upgrade(conn)
    echo(conn, stream, tether.Text("hello over TLS"))
    echo(conn, stream, tether.Binary(b"\x00\xff" * 40_000))


def test_wss_close_handshake_then_reconnect_over_tls(tls_server, trusting, open_conn):
    conn = up(
        open_conn(
            "localhost", tls_server.port, transport="tls", tls_context=trusting, retry_timeout=0
        )
    )
    stream = upgrade(conn)
    conn.ws_send(tether.Close(1000, "bye"))
    event = conn.await_(stream, timeout=WAIT)
    assert event == tether.Ws(conn, stream, tether.Close(1000, "bye"))
    down = inbox_of(conn).receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert down.protocol == "ws"
    assert isinstance(down.reason, tether.WsClosed)
    up(conn)
    assert get(conn) == (200, b"hello from tether\n")


def test_server_close_notify_ends_the_response_cleanly(tls_server, trusting, open_conn):
    """``/close``: the server sends close_notify then FIN; a clean close, not an SSL error."""
    conn = up(
        open_conn("localhost", tls_server.port, transport="tls", tls_context=trusting, retry=0)
    )
    assert get(conn, "/close") == (200, b"bye")
    down = inbox_of(conn).receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ConnectionClosed), down.reason
    assert down.killed_streams == ()


# -- verification -----------------------------------------------------------------


def test_default_context_rejects_a_certificate_the_system_does_not_trust(tls_server, open_conn):
    conn = open_conn("localhost", tls_server.port, transport="tls", retry=0)
    reason = assert_refused_before_up(conn)
    assert reason.verify_code == 20  # X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    assert not conn.is_alive()


def test_certificate_for_another_hostname_is_refused(
    thread_baseline, server_context: ServerContext, trusting, open_conn
):
    with Server(tls_context=server_context("other.test")) as srv:
        conn = open_conn("localhost", srv.port, transport="tls", tls_context=trusting, retry=0)
        reason = assert_refused_before_up(conn)
    assert reason.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    assert "localhost" in reason.verify_message


def test_certificate_from_an_untrusted_ca_is_refused(tls_server, other_ca: trustme.CA, open_conn):
    conn = open_conn(
        "localhost",
        tls_server.port,
        transport="tls",
        tls_context=client_context(other_ca),
        retry=0,
    )
    reason = assert_refused_before_up(conn)
    assert reason.verify_code == 20
    assert tls_server.requests == []  # nothing was sent in clear or otherwise


def test_a_refused_certificate_is_retried_per_the_retry_rules(tls_server, open_conn):
    conn = open_conn("localhost", tls_server.port, transport="tls", retry=2, retry_timeout=0)
    [error] = events_until_gave_up(conn)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RetriesExhausted)
    assert error.reason.attempts == 3
    assert isinstance(error.reason.last_reason, ssl.SSLCertVerificationError)


# -- SNI and hostname checks ------------------------------------------------------------


def test_sni_carries_the_host_name_and_it_is_verified(
    tls_server, trusting, server_names: queue.Queue[str | None], open_conn
):
    conn = up(open_conn("localhost", tls_server.port, transport="tls", tls_context=trusting))
    assert server_names.get(timeout=WAIT) == "localhost"
    assert get(conn)[0] == 200


def test_an_ip_address_is_verified_against_the_certificate_and_not_sent_as_sni(
    tls_server, trusting, server_names: queue.Queue[str | None], open_conn
):
    # RFC 6066 section 3: "Literal IPv4 and IPv6 addresses are not permitted" in SNI.
    conn = up(open_conn("127.0.0.1", tls_server.port, transport="tls", tls_context=trusting))
    assert server_names.get(timeout=WAIT) is None
    assert get(conn)[0] == 200


def test_an_ip_address_missing_from_the_certificate_is_refused(
    thread_baseline, server_context: ServerContext, trusting, open_conn
):
    with Server(tls_context=server_context("localhost")) as srv:
        conn = open_conn("127.0.0.1", srv.port, transport="tls", tls_context=trusting, retry=0)
        assert assert_refused_before_up(conn).verify_code == 64  # X509_V_ERR_IP_ADDRESS_MISMATCH


def test_server_hostname_is_the_name_verified(
    thread_baseline, server_context: ServerContext, trusting, open_conn
):
    """server_hostname replaces the host in SNI and in the check: the host's certificate fails."""
    with Server(tls_context=server_context("localhost")) as srv:
        conn = open_conn(
            "localhost",
            srv.port,
            transport="tls",
            tls_context=trusting,
            server_hostname="other.test",
            retry=0,
        )
        reason = assert_refused_before_up(conn)
    assert reason.verify_code == 62  # X509_V_ERR_HOSTNAME_MISMATCH
    assert "other.test" in reason.verify_message


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"server_hostname": "localhost"}, ValueError),  # without transport="tls"
        ({"transport": "tls", "server_hostname": "a b"}, ValueError),
        ({"transport": "tls", "server_hostname": "https://localhost"}, ValueError),
        ({"transport": "tls", "server_hostname": ""}, TypeError),
        ({"transport": "tls", "server_hostname": b"localhost"}, TypeError),
    ],
)
def test_a_bad_server_hostname_is_refused_at_open(options, error):
    with pytest.raises(error, match="server_hostname"):
        tether.open("localhost", 443, **options)


# -- losing and ending connections --------------------------------------------------------


def test_reconnect_over_tls_after_a_server_drop(tls_server, trusting, open_conn):
    conn = up(
        open_conn(
            "localhost", tls_server.port, transport="tls", tls_context=trusting, retry_timeout=0
        )
    )
    upgrade(conn)
    assert tls_server.drop_connections() == 1
    down = inbox_of(conn).receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert down.protocol == "ws"
    up(conn)
    assert get(conn) == (200, b"hello from tether\n")  # a fresh TLS session works


@pytest.mark.parametrize("how", ["close", "shutdown"])
@pytest.mark.parametrize("ws", [False, True], ids=["https", "wss"])
def test_close_and_shutdown_over_tls_leave_nothing_behind(
    tls_server, trusting, open_conn: ConnectionTracker, how, ws
):
    """``open_conn`` depends on ``thread_baseline``: every thread must be gone afterwards."""
    conn = up(open_conn("localhost", tls_server.port, transport="tls", tls_context=trusting))
    if ws:
        upgrade(conn)
    getattr(conn, how)()
    assert conn.wait_stopped(WAIT)
    assert tls_server.wait_for_connections(0, WAIT)


def test_close_during_the_handshake_leaves_nothing_behind(thread_baseline, open_conn):
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never answers
        conn = open_conn("localhost", listener.getsockname()[1], transport="tls")
        accepted, _ = listener.accept()
        with accepted:
            accepted.settimeout(WAIT)
            assert accepted.recv(1) == b"\x16"  # the ClientHello is out
            conn.close()
            assert conn.wait_stopped(WAIT)
            received = 1
            while chunk := accepted.recv(65536):  # the rest of the hello, then EOF
                received += len(chunk)
                assert received < 65536


@pytest.fixture
def corrupting_server(
    thread_baseline, server_context: ServerContext
) -> Iterator[tuple[int, threading.Event]]:
    """A TLS server that completes the handshake, then sends a record that fails its MAC."""
    context = server_context()
    sent = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def serve() -> None:
            raw, _ = listener.accept()
            raw.settimeout(WAIT)
            with context.wrap_socket(raw, server_side=True) as tls:
                tls.recv(65536)  # the request
                # A TLS 1.2/1.3 application_data record whose contents are noise.
                raw_copy = socket.socket(fileno=os.dup(tls.fileno()))
                with raw_copy:
                    raw_copy.sendall(b"\x17\x03\x03\x00\x40" + b"\xa5" * 0x40)
                sent.set()
                tls.settimeout(WAIT)
                with contextlib.suppress(OSError):
                    tls.recv(65536)  # until the client goes away

        thread = threading.Thread(target=serve, name="corrupting-tls-server")
        thread.start()
        yield listener.getsockname()[1], sent
        thread.join(WAIT + 1)


def test_a_corrupted_record_after_up_is_a_down_with_the_ssl_error(
    corrupting_server, trusting, open_conn
):
    port, sent = corrupting_server
    conn = up(open_conn("localhost", port, transport="tls", tls_context=trusting, retry=0))
    stream = conn.get("/")
    assert sent.wait(WAIT)
    events = events_until_gave_up(conn)
    down = events[0]
    assert isinstance(down, tether.Down), events
    assert isinstance(down.reason, ssl.SSLError), down.reason
    assert down.killed_streams == (stream,)


# -- a third-party TLS server ----------------------------------------------------------------


def test_aiohttp_https_and_wss(tls_aiohttp: AiohttpServer, trusting, open_conn):
    # retry=0: a reconnect racing the server's stop could leave asyncio a TLS
    # transport in mid-handshake, which aiohttp's cleanup does not know about.
    conn = up(
        open_conn("localhost", tls_aiohttp.port, transport="tls", tls_context=trusting, retry=0)
    )
    assert get(conn) == (200, b"hello")
    stream = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    assert isinstance(conn.await_(stream, timeout=WAIT), tether.Upgrade)
    echo(conn, stream, tether.Text("hello aiohttp over TLS"))
    echo(conn, stream, tether.Binary(b"\x01" * 100_000))
    conn.ws_send(tether.Close(1000))
    assert conn.await_(stream, timeout=WAIT) == tether.Ws(conn, stream, tether.Close(1000))
    assert tls_aiohttp.next_ws_end().close_code == 1000


def test_aiohttp_certificate_refused_by_the_default_context(tls_aiohttp: AiohttpServer, open_conn):
    conn = open_conn("localhost", tls_aiohttp.port, transport="tls", retry=0)
    assert assert_refused_before_up(conn).verify_code == 20
