"""HTTP/2 against real servers on 127.0.0.1: hypercorn (TLS by ALPN, and h2c), nghttpd, h2.

One connection, many streams: requests, streamed bodies, trailers, cancel,
PING, Websocket over HTTP/2 (RFC 8441) beside requests, GOAWAY with its
unprocessed streams resent after the reconnect, a server reset.
"""

from __future__ import annotations

import select
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

import tether
from tests._ports import free_port, wait_listening
from tests.conftest import ConnectionTracker
from tests.faults import FaultProxy
from tests.interop.h2_script_server import ScriptServer
from tests.interop.hypercorn_server import HypercornServer
from tests.protocol.test_proxy_sockets import microsocks  # noqa: F401 - a fixture
from tether.actors._tls import default_context

TIMEOUT = 5.0

Opener = Callable[..., tether.Connection]


@pytest.fixture(params=["tls", "h2c"])
def hypercorn(
    request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path, thread_baseline: int
) -> Iterator[HypercornServer]:
    """hypercorn over TLS (HTTP/2 chosen by ALPN) or TCP (HTTP/2 with prior knowledge)."""
    tls = request.param == "tls"
    with HypercornServer(ca if tls else None, tmp_path) as server:
        yield server


@pytest.fixture
def h2_conn(hypercorn: HypercornServer, open_conn: ConnectionTracker) -> Opener:
    """Open an HTTP/2 connection to ``hypercorn``: TLS with tether's default ALPN, or h2c."""

    def _open(**options: Any) -> tether.Connection:
        if hypercorn._ca is not None:
            context = tether_context(hypercorn._ca)
            options = {"transport": "tls", "tls_context": context, **options}
        else:
            options = {"protocols": ("http2",), **options}
        return open_conn(hypercorn.host, hypercorn.port, **options)

    return _open


def tether_context(ca: trustme.CA) -> Any:
    """tether's default TLS context (its ALPN offer) trusting ``ca``."""
    context = default_context(("http2", "http"))
    ca.configure_trust(context)
    return context


def test_up_says_http2_and_requests_share_one_connection(
    h2_conn: Opener, hypercorn: HypercornServer
) -> None:
    conn = h2_conn()
    assert conn.await_up(timeout=TIMEOUT) == "http2"
    stream = conn.get("/")
    response = conn.await_(stream, timeout=TIMEOUT)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    assert conn.await_body(stream, timeout=TIMEOUT) == b"hello"
    assert hypercorn.next_request().version == (2, 0)
    assert conn.info().protocol == "http2"


def test_streamed_body_trailers_and_post(h2_conn: Opener) -> None:
    conn = h2_conn()
    conn.await_up(timeout=TIMEOUT)
    streamed = conn.get("/stream")
    trailed = conn.get("/trailers", [("te", "trailers")])
    posted = conn.post("/echo", body=b"x" * 200_000)
    assert conn.await_body(streamed, timeout=TIMEOUT) == b"onetwothree"
    assert conn.await_body(posted, timeout=TIMEOUT) == b"x" * 200_000
    events = []
    while not events or not isinstance(events[-1], tether.Trailers):
        events.append(conn.await_(trailed, timeout=TIMEOUT))
    assert events[-1].headers == (("x-checksum", "42"),)
    assert b"".join(e.data for e in events if isinstance(e, tether.Data)) == b"body"


def test_many_concurrent_streams_on_one_connection(h2_conn: Opener) -> None:
    conn = h2_conn()
    conn.await_up(timeout=TIMEOUT)
    local = conn.info().local_address
    # More than hypercorn's max_concurrent_streams (100): the excess waits its turn.
    streams = [conn.get("/stream") for _ in range(250)]
    assert [conn.await_body(s, timeout=TIMEOUT) for s in streams] == [b"onetwothree"] * 250
    assert conn.info().local_address == local  # the same TCP connection throughout


def test_cancel_resets_one_stream_and_the_rest_goes_on(
    h2_conn: Opener, hypercorn: HypercornServer
) -> None:
    conn = h2_conn()
    conn.await_up(timeout=TIMEOUT)
    waiting = conn.get("/wait")
    assert hypercorn.next_request().path == "/wait"
    conn.cancel(waiting)
    assert conn.stream_info(waiting) is None
    after = conn.get("/")
    assert conn.await_body(after, timeout=TIMEOUT) == b"hello"
    hypercorn.release()
    inbox = conn.inbox
    assert inbox is not None
    with pytest.raises(tether.ReceiveTimeout):
        inbox.receive(timeout=0.3, match=lambda m: getattr(m, "stream", None) is waiting)


def test_ping_is_answered(h2_conn: Opener) -> None:
    conn = h2_conn()
    conn.await_up(timeout=TIMEOUT)
    ref = conn.ping()
    inbox = conn.inbox
    assert inbox is not None
    assert inbox.receive(timeout=TIMEOUT) == tether.PingAck(conn, ref)


def test_websocket_over_http2_beside_requests(h2_conn: Opener, hypercorn: HypercornServer) -> None:
    conn = h2_conn()
    conn.await_up(timeout=TIMEOUT)
    ws = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    upgrade = conn.await_(ws, timeout=TIMEOUT)
    assert isinstance(upgrade, tether.Upgrade)
    assert ("sec-websocket-protocol", "mychat") in upgrade.headers
    second = conn.ws_upgrade("/websocket")
    assert isinstance(conn.await_(second, timeout=TIMEOUT), tether.Upgrade)
    conn.ws_send([tether.Text("hello"), tether.Binary(b"\x00\x01")], stream=ws)
    conn.ws_send(tether.Text("other"), stream=second)
    assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Text("hello")  # type: ignore[union-attr]
    assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Binary(b"\x00\x01")  # type: ignore[union-attr]
    assert conn.await_(second, timeout=TIMEOUT).frame == tether.Text("other")  # type: ignore[union-attr]
    # Requests go on beside the Websockets (HTTP/1.1 would refuse them: UpgradedError).
    assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"
    conn.ws_send(tether.Close(1000, "bye"), stream=ws)
    assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Close(1000, "bye")  # type: ignore[union-attr]
    hypercorn.next_ws_end()  # (hypercorn reports 1006 for any close the client began)
    assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"


def test_protocols_http_keeps_http11_over_tls(
    ca: trustme.CA, tmp_path: Path, open_conn: ConnectionTracker, thread_baseline: int
) -> None:
    with HypercornServer(ca, tmp_path) as server:
        context = tether_context(ca)
        context.set_alpn_protocols(["http/1.1"])
        conn = open_conn(server.host, server.port, transport="tls", tls_context=context)
        assert conn.await_up(timeout=TIMEOUT) == "http"
        assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"
        assert server.next_request().version == (1, 1)
        ref = conn.ping()
        error = conn.inbox.receive(timeout=TIMEOUT)  # type: ignore[union-attr]
        assert isinstance(error, tether.Error)
        assert error.stream is ref
        assert isinstance(error.reason, tether.UnsupportedByProtocol)


def test_http2_through_a_socks5_proxy_is_chosen_by_the_origins_alpn(
    ca: trustme.CA,
    tmp_path: Path,
    open_conn: ConnectionTracker,
    thread_baseline: int,
    microsocks: int,  # noqa: F811 - the fixture
) -> None:
    with HypercornServer(ca, tmp_path) as server:
        conn = open_conn(
            server.host,
            server.port,
            transport="tls",
            tls_context=tether_context(ca),
            proxy=f"socks5://127.0.0.1:{microsocks}",
        )
        assert conn.await_up(timeout=TIMEOUT) == "http2"
        assert conn.await_body(conn.get("/stream"), timeout=TIMEOUT) == b"onetwothree"
        assert server.next_request().version == (2, 0)


def test_tcp_speaks_http11_unless_asked(
    open_conn: ConnectionTracker, thread_baseline: int
) -> None:
    with HypercornServer() as server:
        conn = open_conn(server.host, server.port)
        assert conn.await_up(timeout=TIMEOUT) == "http"
        assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"


# -- GOAWAY, resets: a scripted h2 server -----------------------------------------


@pytest.mark.parametrize("holds", [False, True], ids=["closes", "holds"])
def test_goaway_lists_the_streams_and_the_reconnect_serves_them(
    open_conn: ConnectionTracker, thread_baseline: int, holds: bool
) -> None:
    # "closes": the GOAWAY names the first stream as the last processed and the
    # server closes: the other two are unprocessed. "holds": it names every
    # stream as one it may still answer, then answers none and keeps the
    # connection open: Gun's closing_timeout ends the wait (not the server), and
    # those streams are killed. Either way the reconnect serves them again.
    with ScriptServer(goaway_after=3, goaway_holds=holds) as server:
        conn = open_conn(
            server.host,
            server.port,
            protocols=("http2",),
            retry_timeout=0.1,
            http_opts={"closing_timeout": 0.3},
        )
        conn.await_up(timeout=TIMEOUT)
        first, second, third = (conn.get(f"/{n}") for n in ("a", "b", "c"))
        assert conn.await_body(first, timeout=TIMEOUT) == b"conn1 /a"
        inbox = conn.inbox
        assert inbox is not None
        down = inbox.receive(timeout=TIMEOUT, match=lambda m: isinstance(m, tether.Down))
        assert isinstance(down, tether.Down)
        assert down.protocol == "http2"
        assert isinstance(down.reason, tether.GoAway)
        assert down.reason.error_code == 0
        killed, unprocessed = ({second, third}, set()) if holds else (set(), {second, third})
        assert set(down.killed_streams) == killed
        assert set(down.unprocessed_streams) == unprocessed
        assert conn.await_up(timeout=TIMEOUT) == "http2"
        assert conn.await_body(conn.get("/b"), timeout=TIMEOUT) == b"conn2 /b"


def test_a_server_reset_fails_only_its_stream(
    open_conn: ConnectionTracker, thread_baseline: int
) -> None:
    with ScriptServer() as server:
        conn = open_conn(server.host, server.port, protocols=("http2",))
        conn.await_up(timeout=TIMEOUT)
        reset = conn.get("/reset")
        fine = conn.get("/fine")
        with pytest.raises(tether.StreamReset) as raised:
            conn.await_body(reset, timeout=TIMEOUT)
        assert raised.value.error_code == 7  # REFUSED_STREAM: safe to send again
        assert conn.await_body(fine, timeout=TIMEOUT) == b"conn1 /fine"


def test_a_websocket_close_handshake_is_bounded_by_its_own_closing_timeout(
    open_conn: ConnectionTracker, thread_baseline: int
) -> None:
    # The server never answers the close frame: shutdown() gives up after the
    # Websocket's closing_timeout, as over HTTP/1.1, not http_opts' (15 s).
    with ScriptServer() as server:
        conn = open_conn(
            server.host, server.port, protocols=("http2",), ws_opts={"closing_timeout": 0.2}
        )
        conn.await_up(timeout=TIMEOUT)
        ws = conn.ws_upgrade("/silent")
        assert isinstance(conn.await_(ws, timeout=TIMEOUT), tether.Upgrade)
        conn.shutdown()
        inbox = conn.inbox
        assert inbox is not None
        down = inbox.receive(timeout=TIMEOUT, match=lambda m: isinstance(m, tether.Down))
        assert isinstance(down, tether.Down)
        assert isinstance(down.reason, tether.ClosedByUser)
        assert "closing_timeout" in str(down.reason)
        assert down.killed_streams == (ws,)  # still open: its close was never answered
        assert conn.wait_stopped(TIMEOUT)


def test_a_websocket_upgraded_during_shutdown_is_closed_with_a_close_frame(
    open_conn: ConnectionTracker, thread_baseline: int
) -> None:
    # shutdown() lets the upgrade in flight finish; the Websocket it makes is
    # then closed as shutdown() closes one (1001), not left open until a timeout.
    with HypercornServer() as server:
        proxy = FaultProxy(server.port).start()
        try:
            conn = open_conn(server.host, proxy.port, protocols=("http2",))
            assert conn.await_up(timeout=TIMEOUT) == "http2"
            assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"  # settings seen
            proxy.stall()
            ws = conn.ws_upgrade("/websocket")
            conn.shutdown()
            info = conn.info(TIMEOUT)
            assert info is not None
            assert info.state == "closing"
            proxy.resume()
            assert isinstance(conn.await_(ws, timeout=TIMEOUT), tether.Upgrade)
            assert conn.await_(ws, timeout=TIMEOUT) == tether.Ws(conn, ws, tether.Close(1001, ""))
            inbox = conn.inbox
            assert inbox is not None
            down = inbox.receive(timeout=TIMEOUT, match=lambda m: isinstance(m, tether.Down))
            assert isinstance(down, tether.Down)
            assert isinstance(down.reason, tether.ClosedByUser)
            assert str(down.reason) == "shutdown() completed"
            assert conn.wait_stopped(TIMEOUT)
            server.next_ws_end()  # (hypercorn reports 1006 for any close the client began)
        finally:
            proxy.stop()


def test_reconnect_after_the_server_closes_and_reupgrade(
    open_conn: ConnectionTracker, thread_baseline: int
) -> None:
    server = HypercornServer().start()
    try:
        conn = open_conn(
            server.host,
            server.port,
            protocols=("http2",),
            retry_timeout=0.1,
            ws_opts={"reupgrade": True},
        )
        assert conn.await_up(timeout=TIMEOUT) == "http2"
        ws = conn.ws_upgrade("/websocket")
        assert isinstance(conn.await_(ws, timeout=TIMEOUT), tether.Upgrade)
        # The server closes it (a close the user did not send keeps reupgrade on).
        conn.ws_send(tether.Text("close me"), stream=ws)
        assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Close(1000, "")  # type: ignore[union-attr]
        assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"
        port = server.port
    finally:
        server.stop()
    inbox = conn.inbox
    assert inbox is not None
    down = inbox.receive(timeout=TIMEOUT, match=lambda m: isinstance(m, tether.Down))
    assert isinstance(down, tether.Down)
    assert down.protocol == "http2"
    with HypercornServer(port=port) as again_server:
        assert conn.await_up(timeout=TIMEOUT) == "http2"
        again = inbox.receive(timeout=TIMEOUT)
        assert isinstance(again, tether.Upgrade)  # a new stream: the Websocket again
        assert again.stream is not ws
        conn.ws_send(tether.Text("back"))
        assert conn.await_(again.stream, timeout=TIMEOUT).frame == tether.Text("back")  # type: ignore[union-attr]
        assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"
        conn.ws_send(tether.Text("close me"))
        assert conn.await_(again.stream, timeout=TIMEOUT).frame == tether.Close(1000, "")  # type: ignore[union-attr]
        again_server.next_ws_end()


def test_http_keepalive_pings_on_http2(open_conn: ConnectionTracker, thread_baseline: int) -> None:
    with ScriptServer() as server:
        conn = open_conn(
            server.host,
            server.port,
            protocols=("http2",),
            http_opts={"keepalive": 0.05},
        )
        conn.await_up(timeout=TIMEOUT)
        # The PINGs are not events; a server that answers them keeps the connection up.
        assert conn.await_body(conn.get("/a"), timeout=TIMEOUT) == b"conn1 /a"
        assert server.pings.get(timeout=TIMEOUT) >= 1
        assert conn.await_body(conn.get("/b"), timeout=TIMEOUT) == b"conn1 /b"


# -- nghttpd ------------------------------------------------------------------------

NGHTTPD = shutil.which("nghttpd") or (
    "/usr/sbin/nghttpd" if Path("/usr/sbin/nghttpd").exists() else None
)


@pytest.fixture(params=["tls", "h2c"])
def nghttpd(
    request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path
) -> Iterator[tuple[int, dict[str, Any]]]:
    """nghttpd serving ``tmp_path/docs``; yields its port and the options to reach it."""
    if NGHTTPD is None:
        pytest.skip("nghttpd is not installed (Debian: nghttp2-server)")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.html").write_bytes(b"nghttpd index")
    (docs / "big.bin").write_bytes(bytes(range(256)) * 4096)  # 1 MiB: windows must move
    port = free_port()
    args = [NGHTTPD, "-a", "127.0.0.1", "-d", str(docs), str(port)]
    options: dict[str, Any]
    if request.param == "tls":
        cert = ca.issue_cert("127.0.0.1")
        key, pem = tmp_path / "key.pem", tmp_path / "cert.pem"
        cert.private_key_pem.write_to_path(key)
        cert.cert_chain_pems[0].write_to_path(pem)
        args += [str(key), str(pem)]
        options = {"transport": "tls", "tls_context": tether_context(ca)}
    else:
        args.insert(1, "--no-tls")
        options = {"protocols": ("http2",)}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, proc)
        yield port, options
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)


def test_nghttpd_gets(nghttpd: tuple[int, dict[str, Any]], open_conn: ConnectionTracker) -> None:
    port, options = nghttpd
    conn = open_conn("127.0.0.1", port, **options)
    assert conn.await_up(timeout=TIMEOUT) == "http2"
    big = [conn.get("/big.bin") for _ in range(8)]
    small = [conn.get("/") for _ in range(50)]
    missing = conn.get("/nope")
    assert all(conn.await_body(s, timeout=TIMEOUT) == b"nghttpd index" for s in small)
    assert all(conn.await_body(s, timeout=TIMEOUT) == bytes(range(256)) * 4096 for s in big)
    response = conn.await_(missing, timeout=TIMEOUT)
    assert isinstance(response, tether.Response)
    assert response.status == 404


def test_shutdown_closes_every_websocket_then_the_connection(h2_conn: Opener) -> None:
    conn = h2_conn()
    conn.await_up(timeout=TIMEOUT)
    first = conn.ws_upgrade("/websocket")
    second = conn.ws_upgrade("/websocket")
    for ws in (first, second):
        assert isinstance(conn.await_(ws, timeout=TIMEOUT), tether.Upgrade)
    conn.shutdown()
    for ws in (first, second):
        assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Close(1001, "")  # type: ignore[union-attr]
    down = conn.inbox.receive(timeout=TIMEOUT)  # type: ignore[union-attr]
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)
    assert conn.wait_stopped(TIMEOUT)


def test_hypercorns_goaway_after_1000_requests_then_reconnect(h2_conn: Opener) -> None:
    # hypercorn sends GOAWAY(NO_ERROR) after 1000 requests on a connection
    # (keep_alive_max_requests) and closes at once, often before tether has
    # read the GOAWAY (a write then fails first): the streams it did not
    # answer are in the Down, whichever list; the connection comes back.
    # Sometimes its GOAWAY's last stream id covers every stream sent, which
    # it then neither answers nor closes: closing_timeout ends the wait.
    conn = h2_conn(retry_timeout=0.1, http_opts={"closing_timeout": 1.0})
    conn.await_up(timeout=TIMEOUT)
    inbox = conn.inbox
    assert inbox is not None
    answered, lost = 0, []
    for _ in range(11):
        streams = [conn.get("/") for _ in range(100)]
        for stream in streams:
            try:
                body = conn.await_body(stream, timeout=TIMEOUT)
            except (tether.StreamLost, tether.ConnectionClosed):
                lost.append(stream)
            else:
                assert body == b"hello"
                answered += 1
    (down,) = inbox.flush(match=lambda m: isinstance(m, tether.Down))
    assert isinstance(down, tether.Down)
    assert lost
    assert set(down.killed_streams) | set(down.unprocessed_streams) <= set(lost)
    assert answered >= 1000
    assert conn.await_up(timeout=TIMEOUT) == "http2"
    assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"


def test_the_event_handler_phases_over_http2(h2_conn: Opener, hypercorn: HypercornServer) -> None:
    seen: list[tuple[str, dict[str, Any]]] = []
    conn = h2_conn(event_handler=lambda name, data: seen.append((name, data)))
    conn.await_up(timeout=TIMEOUT)
    stream = conn.get("/")
    assert conn.await_body(stream, timeout=TIMEOUT) == b"hello"
    conn.close()
    assert conn.wait_stopped(TIMEOUT)
    protocols = [d["protocol"] for n, d in seen if n.endswith("_end") and "protocol" in d]
    assert protocols == ["http2"]  # the TLS handshake's (ALPN), or the TCP connect's (h2c)
    mine = [n for n, d in seen if d.get("stream") is stream]
    assert mine == [
        "request_start",
        "request_headers",
        "request_end",
        "response_start",
        "response_headers",
        "response_end",
    ]
    assert seen[-1][0] == "terminate"


# -- Node's http2 module ---------------------------------------------------------------

NODE = shutil.which("node")
NODE_SERVER = Path(__file__).parent / "node_h2_server.js"


@pytest.fixture(params=["tls", "h2c"])
def node_h2(
    request: pytest.FixtureRequest, ca: trustme.CA, tmp_path: Path
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Node's http2 server; yields its port and the options to reach it."""
    if NODE is None:
        pytest.skip("node is not installed")
    args = [NODE, str(NODE_SERVER)]
    options: dict[str, Any] = {"protocols": ("http2",)}
    if request.param == "tls":
        cert = ca.issue_cert("127.0.0.1")
        key, pem = tmp_path / "key.pem", tmp_path / "cert.pem"
        cert.private_key_pem.write_to_path(key)
        cert.cert_chain_pems[0].write_to_path(pem)
        args += [str(key), str(pem)]
        options = {"transport": "tls", "tls_context": tether_context(ca)}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    with proc.stdout:
        try:
            line = _read_line(proc.stdout)
            assert line.startswith(b"READY "), line
            yield int(line.split()[1]), options
        finally:
            proc.terminate()
            proc.wait(TIMEOUT)


def _read_line(stream: Any) -> bytes:
    """One line of a child's stdout, waited for with a bound."""
    ready, _, _ = select.select([stream], [], [], TIMEOUT)
    assert ready, "the server printed nothing in time"
    return bytes(stream.readline())


def test_node_http2(node_h2: tuple[int, dict[str, Any]], open_conn: ConnectionTracker) -> None:
    port, options = node_h2
    conn = open_conn("127.0.0.1", port, **options)
    assert conn.await_up(timeout=TIMEOUT) == "http2"
    gets = [conn.get("/") for _ in range(50)]
    trailed = conn.get("/trailers")
    reset = conn.get("/reset")
    posted = conn.post("/echo", body=b"y" * 300_000)
    assert [conn.await_body(s, timeout=TIMEOUT) for s in gets] == [b"hello"] * 50
    assert conn.await_body(posted, timeout=TIMEOUT) == b"y" * 300_000
    with pytest.raises(tether.StreamReset):
        conn.await_body(reset, timeout=TIMEOUT)
    events = []
    while not events or not isinstance(events[-1], tether.Trailers):
        events.append(conn.await_(trailed, timeout=TIMEOUT))
    assert events[-1].headers == (("x-checksum", "42"),)
    ref = conn.ping()
    assert conn.inbox.receive(timeout=TIMEOUT) == tether.PingAck(conn, ref)  # type: ignore[union-attr]


def test_a_slow_owner_pauses_the_reads_and_the_windows_bound_the_rest(
    nghttpd: tuple[int, dict[str, Any]], open_conn: ConnectionTracker
) -> None:
    port, options = nghttpd
    conn = open_conn("127.0.0.1", port, max_queue=10_000, max_queue_bytes=256 * 1024, **options)
    assert conn.await_up(timeout=TIMEOUT) == "http2"
    inbox = conn.inbox
    assert inbox is not None
    streams = [conn.get("/big.bin") for _ in range(4)]  # 4 MiB on one connection
    deadline = time.monotonic() + TIMEOUT
    while not conn.info(timeout=TIMEOUT).reading_paused:  # no event says it: polled, bounded
        assert time.monotonic() < deadline, "the reads never paused"
        time.sleep(0.005)
    taken = inbox.flush(match=lambda m: isinstance(m, tether.Data))
    held = sum(len(m.data) for m in taken)  # type: ignore[attr-defined]
    assert held < 1024 * 1024  # the bound and a read past it: not the 4 MiB the server has
    # So no stream is whole yet: the rest of each comes once the owner took these.
    body = bytes(range(256)) * 4096
    for stream in streams:
        first = b"".join(m.data for m in taken if m.stream is stream)  # type: ignore[attr-defined]
        assert first + conn.await_body(stream, timeout=TIMEOUT) == body


def test_permessage_deflate_over_http2(h2_conn: Opener) -> None:
    conn = h2_conn(ws_opts={"compress": True})
    conn.await_up(timeout=TIMEOUT)
    ws = conn.ws_upgrade("/websocket")
    upgrade = conn.await_(ws, timeout=TIMEOUT)
    assert isinstance(upgrade, tether.Upgrade)
    extensions = dict(upgrade.headers).get("sec-websocket-extensions", "")
    assert extensions.startswith("permessage-deflate")
    text = "compressible " * 2000
    conn.ws_send(tether.Text(text), stream=ws)
    assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Text(text)  # type: ignore[union-attr]
    conn.ws_send(tether.Text("close me"), stream=ws)
    assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Close(1000, "")  # type: ignore[union-attr]


def test_an_owner_that_goes_stops_an_http2_connection(
    hypercorn: HypercornServer, thread_baseline: int
) -> None:
    owner = tether.Inbox()
    options: dict[str, Any] = {"protocols": ("http2",)}
    if hypercorn._ca is not None:
        options = {"transport": "tls", "tls_context": tether_context(hypercorn._ca)}
    conn = tether.open(hypercorn.host, hypercorn.port, owner=owner, **options)
    try:
        assert conn.await_up(timeout=TIMEOUT) == "http2"
        ws = conn.ws_upgrade("/websocket")
        assert isinstance(conn.await_(ws, timeout=TIMEOUT), tether.Upgrade)
        owner.close()  # Gun's owner monitoring: the connection shuts itself down
        assert conn.wait_stopped(TIMEOUT)
        assert hypercorn.next_ws_end() is not None  # its Websocket was closed (1001) first
    finally:
        if conn.is_alive():
            conn.close()


def test_a_pool_sends_many_requests_on_one_http2_connection(
    hypercorn: HypercornServer, thread_baseline: int
) -> None:
    options: dict[str, Any] = {"protocols": ("http2",)}
    if hypercorn._ca is not None:
        options = {"transport": "tls", "tls_context": tether_context(hypercorn._ca)}
    pool = tether.start_pool(
        hypercorn.host, hypercorn.port, size=1, checkout_timeout=1.0, **options
    )
    try:
        pool.await_up(timeout=TIMEOUT)
        waiting = [pool.get("/wait") for _ in range(3)]  # in flight together on one connection
        info = pool.info().connections[0]
        assert (info.protocol, info.streams, info.capacity) == ("http2", 3, 100)
        assert pool.await_body(pool.get("/"), timeout=TIMEOUT) == b"hello"
        hypercorn.release()
        assert [pool.await_body(s, timeout=TIMEOUT) for s in waiting] == [b"released"] * 3
    finally:
        pool.stop()


def test_websocket_keepalive_over_http2(h2_conn: Opener) -> None:
    conn = h2_conn(ws_opts={"keepalive": 0.05, "silence_pings": False, "pong_timeout": 2.0})
    conn.await_up(timeout=TIMEOUT)
    ws = conn.ws_upgrade("/websocket")
    assert isinstance(conn.await_(ws, timeout=TIMEOUT), tether.Upgrade)
    # The server's pongs to tether's keepalive pings, told since silence_pings is off.
    for _ in range(2):
        assert conn.await_(ws, timeout=TIMEOUT).frame == tether.Pong(b"tether-keepalive")  # type: ignore[union-attr]
    assert conn.await_body(conn.get("/"), timeout=TIMEOUT) == b"hello"  # still up: no PongTimeout
    conn.ws_send(tether.Text("close me"), stream=ws)
    while conn.await_(ws, timeout=TIMEOUT).frame != tether.Close(1000, ""):  # type: ignore[union-attr]
        pass  # pongs still on their way
