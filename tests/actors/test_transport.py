"""The transport: connecting by name and by address, one I/O thread for every connection."""

from __future__ import annotations

import queue
import socket
import threading

import pytest

import tether
from tests.conftest import ConnectionTracker
from tether import WriteTimeout
from tether.actors._ioloop import IoLoop
from tether.actors._messages import Connected, Writable
from tether.actors._transport import TcpTransport
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"], ids=["name", "address"])
def test_a_host_name_and_an_address_both_connect(
    host: str, server: Server, open_conn: ConnectionTracker
) -> None:
    # A name is resolved and connected by a short-lived thread; an address is
    # connected without blocking by the I/O thread. Both end in Up and serve.
    conn = open_conn(host, server.port, retry=0)
    assert conn.await_up(WAIT) == "http"
    assert conn.await_body(conn.get("/"), WAIT) == b"hello from tether\n"


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback")
def test_an_ipv6_address_connects(open_conn: ConnectionTracker) -> None:
    with Server(host="::1") as server:
        conn = open_conn("::1", server.port, retry=0)
        assert conn.await_up(WAIT) == "http"
        assert conn.await_body(conn.get("/"), WAIT) == b"hello from tether\n"
        conn.close()
        assert conn.wait_stopped(WAIT)


def test_connections_share_one_io_thread(server: Server, open_conn: ConnectionTracker) -> None:
    # Each connection costs its actor thread; the reads of all of them are
    # done by one shared "tether-io" thread (not a reader thread each).
    conns = [open_conn("127.0.0.1", server.port, retry=0) for _ in range(8)]
    for conn in conns:
        assert conn.await_up(WAIT) == "http"
    for conn in conns:  # every one is read: each gets its response
        assert conn.await_body(conn.get("/"), WAIT) == b"hello from tether\n"
    io_threads = [t for t in threading.enumerate() if t.name == "tether-io"]
    assert len(io_threads) == 1
    for conn in conns:
        conn.close()
    for conn in conns:
        assert conn.wait_stopped(WAIT)
    # With no socket left the I/O thread ends (thread_baseline checks it too).
    io_threads[0].join(WAIT)
    assert not io_threads[0].is_alive()


def test_a_failing_reader_does_not_stop_the_io_of_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A bug in one socket's handler is logged and ends that socket's reads
    # (its owner is told it lost them); the other sockets are still read.
    loop = IoLoop()
    got: queue.Queue[tuple[str, bytes | None, BaseException | None]] = queue.Queue()

    def failing(data: bytes | None, end: BaseException | None) -> None:
        got.put(("bad", data, end))
        if data is not None:
            raise RuntimeError("bug in a handler")

    def healthy(data: bytes | None, end: BaseException | None) -> None:
        got.put(("good", data, end))

    bad_local, bad_peer = socket.socketpair()
    good_local, good_peer = socket.socketpair()
    with bad_peer, good_peer:
        bad = loop.add(bad_local, failing)
        good = loop.add(good_local, healthy)
        bad_peer.sendall(b"boom")
        assert got.get(timeout=WAIT) == ("bad", b"boom", None)
        name, data, end = got.get(timeout=WAIT)
        assert (name, data) == ("bad", None)
        assert isinstance(end, OSError)
        good_peer.sendall(b"still read")
        assert got.get(timeout=WAIT) == ("good", b"still read", None)
        loop.close(bad)
        loop.close(good)
    assert "bug in a handler" in caplog.text


class _Reports:
    """Collects a transport's reports (told from the I/O thread)."""

    def __init__(self) -> None:
        self.seen: queue.Queue[object] = queue.Queue()

    def __call__(self, report: object) -> None:
        self.seen.put(report)

    def next(self, kind: type) -> object:
        while True:
            report = self.seen.get(timeout=WAIT)
            if isinstance(report, kind):
                return report


def _connected_pair(reports: _Reports) -> tuple[TcpTransport, socket.socket, socket.socket]:
    listener = socket.create_server(("127.0.0.1", 0))
    transport = TcpTransport(reports, 1, "127.0.0.1", listener.getsockname()[1], WAIT)
    transport.start()
    accepted, _ = listener.accept()
    reports.next(Connected)
    return transport, accepted, listener


def _flush_while_reading(
    transport: TcpTransport, reports: _Reports, peer: socket.socket, size: int
) -> bytes:
    """Send the backlog as the actor does (on each Writable) while ``peer`` reads it."""
    received = bytearray()

    def read_all() -> None:
        peer.settimeout(WAIT)
        while len(received) < size:
            chunk = peer.recv(1 << 20)
            if not chunk:
                break
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    while transport.backlog_size:
        assert reports.next(Writable) == Writable(1)
        transport.flush()  # never blocks: sends what the socket takes
    reader.join(WAIT)
    assert not reader.is_alive()
    assert transport.waiting_since is None
    return bytes(received)


def test_what_the_socket_cannot_take_at_once_waits_and_goes_out_in_order() -> None:
    # A write never blocks the thread handling the actor's message: what
    # does not fit waits in a backlog (the actor is told when the socket can
    # take more), and later writes queue behind it, so the peer reads
    # everything in order.
    reports = _Reports()
    transport, accepted, listener = _connected_pair(reports)
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the socket buffers hold
    with accepted, listener:
        transport.write(big)
        transport.write(b"after")
        assert transport.waiting_since is not None
        assert 0 < transport.backlog_size <= len(big) + 5
        received = _flush_while_reading(transport, reports, accepted, len(big) + 5)
        assert received == big + b"after"
        transport.close()


def test_a_peer_that_never_reads_leaves_the_backlog_waiting_without_blocking() -> None:
    # Nothing blocks: the write returns, each flush returns, and the oldest
    # byte's time stays what it was (the actor's send_timeout counts from it).
    reports = _Reports()
    transport, accepted, listener = _connected_pair(reports)
    with accepted, listener:
        transport.write(b"x" * (16 << 20))  # returns: the rest waits
        since = transport.waiting_since
        assert since is not None
        transport.flush()  # nothing more fits: returns at once
        transport.write(b"later")
        assert transport.waiting_since == since
        transport.close()
        assert transport.backlog_size == 0  # dropped with the socket, not kept


def test_a_request_body_the_server_never_reads_ends_in_down_with_a_write_timeout(
    open_conn: ConnectionTracker,
) -> None:
    # The connection goes down (Gun's send_timeout_close) instead of hanging.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = open_conn(
            "127.0.0.1", listener.getsockname()[1], retry=0, send_timeout=0.2, send_buffer=None
        )
        assert conn.await_up(WAIT) == "http"
        accepted, _ = listener.accept()
        with accepted:
            stream = conn.post("/upload", body=b"x" * (16 << 20))
            inbox = conn.inbox
            assert inbox is not None
            down = inbox.receive(WAIT, lambda m: isinstance(m, tether.Down))
            assert isinstance(down, tether.Down)
            assert isinstance(down.reason, WriteTimeout)
            assert stream in down.killed_streams
