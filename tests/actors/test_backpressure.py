"""Backpressure both ways, against aiohttp and raw socket peers on 127.0.0.1 (issue 18).

Receive: a connection stops reading its socket once its owner has not
taken ``max_queue`` events (or ``max_queue_bytes`` bytes), for an Inbox and
for an actor owner alike, and reads again once the owner caught up; a
paused connection still notices the peer's close, and does not count a
pong it has not read as missing. Send: callers wait while ``send_buffer``
bytes are held, no byte waits longer than ``send_timeout``, and nothing that
waits on the network can hold up ``close()`` or the timers. The defects
F6-F10 of the issue each have a test here that failed before the fix.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest
from wsproto.utilities import generate_accept_token

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.interop.aiohttp_server import AiohttpServer
from tether.actors import _messages as msg
from tether.actors._connection import OWNER_CHECK_INTERVAL
from tether.actors._mailbox import Mailbox
from tether.actors._transport import READ_AHEAD
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
MiB = 1 << 20
# How far past its bound a connection may deliver: the read that crossed it,
# and what was read while its actor was busy (e.g. answering info()).
OVERSHOOT = 64 * 1024 + READ_AHEAD
Connect = Callable[..., tether.Connection]


# -- helpers ----------------------------------------------------------------------------


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state no event announces (polled, bounded by WAIT)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.002)


def paused(conn: tether.Connection) -> bool:
    return conn.info(timeout=WAIT).reading_paused


def seq(event: object) -> int:
    """The sequence number /push puts in front of each message."""
    assert isinstance(event, tether.Ws), event
    assert isinstance(event.frame, tether.Text), event.frame
    return int(event.frame.data.split(":", 1)[0])


def upgrade(conn: tether.Connection, path: str) -> tether.StreamRef:
    stream = conn.ws_upgrade(path)
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    return stream


def upgraded(conn: tether.Connection, path: str) -> tether.StreamRef:
    """Up, then upgraded."""
    assert conn.await_up(WAIT) == "http"
    return upgrade(conn, path)


def of_type(conn: tether.Connection, kind: type) -> Callable[[object], bool]:
    return lambda m: isinstance(m, kind) and getattr(m, "conn", None) is conn


def mailbox(conn: tether.Connection) -> Mailbox:
    ref = conn._ref
    assert ref is not None
    inbox: Mailbox = ref.actor_inbox  # type: ignore[assignment]
    return inbox


Script = Callable[[socket.socket, threading.Event], None]


def reads_nothing(client: socket.socket, stop: threading.Event) -> None:
    stop.wait(60.0)  # until the test ends


def trickles(client: socket.socket, stop: threading.Event) -> None:
    """Reads 128 bytes every 50 ms: a write never stalls long, a backlog never ends."""
    while not stop.wait(0.05):  # the peer's pace, not a settle
        if not client.recv(128):
            return


def _request(client: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        assert chunk, "the client closed before its request"
        head += chunk
    return head


def ws_reads_nothing(client: socket.socket, stop: threading.Event) -> None:
    """Accepts a Websocket upgrade, then reads nothing (no pong either)."""
    head = _request(client)
    key = next(
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    client.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
        b"sec-websocket-accept: " + generate_accept_token(key) + b"\r\n\r\n"
    )
    stop.wait(60.0)


def chunks_then_closes(client: socket.socket, stop: threading.Event) -> None:
    """Answers with 200 small chunks (200 Data events) and closes: 2 KiB, and FIN."""
    _request(client)
    body = b"".join(b"5\r\nchunk\r\n" for _ in range(200))
    client.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n" + body)


class RawPeer:
    """A raw TCP server for one connection, playing ``script`` on it (a thread)."""

    def __init__(self, script: Script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        # Small kernel buffers on the server's side: what the client cannot
        # send stays in tether, where the test can see it.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(script,), daemon=True, name="raw-peer"
        )
        self._thread.start()

    def _serve(self, script: Script) -> None:
        with contextlib.suppress(OSError):
            client, _ = self.listener.accept()
            with client:
                script(client, self._stop)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(WAIT)


ConnectRaw = Callable[..., tether.Connection]


@pytest.fixture
def connect_raw(open_conn: ConnectionTracker) -> Iterator[ConnectRaw]:
    """``connect_raw(script, **options)``: a connection (retry=0) to a raw peer, once Up."""
    peers: list[RawPeer] = []

    def connect(script: Script, **options: Any) -> tether.Connection:
        peer = RawPeer(script)
        peers.append(peer)
        conn = open_conn("127.0.0.1", peer.port, retry=0, **options)
        assert conn.await_up(WAIT) == "http"
        return conn

    yield connect
    open_conn.close_all()  # before the peers go: their close is not the test's subject
    for peer in peers:
        peer.close()


# -- receive: the bound ------------------------------------------------------------------


def test_a_slow_inbox_owner_pauses_the_reads_and_still_gets_every_message_in_order(
    connect: Connect,
) -> None:
    conn = connect(retry=0, max_queue=64)
    stream = upgraded(conn, "/push?count=3000&size=1024")
    until(lambda: len(inbox_of(conn)) > 64, "the bound crossed")
    until(lambda: paused(conn), "the reads paused")
    # The bound, plus what was read past it (1 KiB messages), not 3,000.
    assert 64 < len(inbox_of(conn)) <= 64 + OVERSHOOT // 1024 + 1
    for expected in range(3000):
        assert seq(conn.await_(stream, WAIT)) == expected  # nothing lost, nothing twice
    until(lambda: not paused(conn), "reading again")  # asked of the I/O thread: soon


def test_the_byte_bound_pauses_the_reads_too(connect: Connect) -> None:
    conn = connect(retry=0, max_queue=10_000, max_queue_bytes=256 * 1024)
    stream = upgraded(conn, "/push?count=200&size=16384")
    until(lambda: len(inbox_of(conn)) * 16384 > 256 * 1024, "the bound crossed")
    until(lambda: paused(conn), "the reads paused")
    held = [seq(e) for e in inbox_of(conn).flush(of_type(conn, tether.Ws))]
    assert 256 * 1024 < len(held) * 16384 <= 256 * 1024 + OVERSHOOT + 16384
    # Taking them (here: flush) lets it read again: the next ones come.
    assert seq(conn.await_(stream, WAIT)) == len(held)


class SlowOwner(pykka.ThreadingActor):
    """An owner actor that handles no Websocket message until ``gate`` opens."""

    def __init__(self, gate: threading.Event, got: queue.Queue[object]) -> None:
        super().__init__()
        self.gate, self.got = gate, got

    def on_receive(self, message: Any) -> None:
        if isinstance(message, tether.Ws):
            assert self.gate.wait(WAIT)
        self.got.put(message)


def test_a_slow_actor_owner_pauses_the_reads_and_can_be_stopped(
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    start_actor: Callable[..., pykka.ActorRef[Any]],
) -> None:
    gate, got = threading.Event(), queue.Queue[object]()
    owner = start_actor(SlowOwner, gate, got)
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, owner=owner, retry=0, max_queue=64)
    assert isinstance(got.get(timeout=WAIT), tether.Up)
    conn.ws_upgrade("/push?count=2000&size=1024")
    assert isinstance(got.get(timeout=WAIT), tether.Upgrade)
    until(lambda: owner.actor_inbox.qsize() > 64, "the bound crossed")
    until(lambda: paused(conn), "the reads paused")
    # What waits in the owner's pykka inbox is bounded (one is being handled).
    assert owner.actor_inbox.qsize() <= 64 + OVERSHOOT // 1024 + 1
    gate.set()
    for expected in range(2000):
        assert seq(got.get(timeout=WAIT)) == expected
    until(lambda: not paused(conn), "reading again")
    owner.stop(timeout=WAIT)  # its mailbox is short: the stop comes soon
    assert conn.wait_stopped(WAIT)  # owner gone: the connection stops (owner monitoring)


class CrashOnFirstMessage(SlowOwner):
    """An owner actor that crashes on its first Websocket message once ``gate`` opens.

    The messages behind it stay in its inbox, untaken.
    """

    def on_receive(self, message: Any) -> None:
        if isinstance(message, tether.Ws):
            assert self.gate.wait(WAIT)
            raise RuntimeError("the owner crashes")  # noqa: TRY004 - a crash, not a type check
        self.got.put(message)


class CrashOnFirstMessageOwner(CrashOnFirstMessage, tether.OwnerActor):
    """The same, as a ``tether.OwnerActor`` (its mailbox counts the bound itself)."""


@pytest.mark.parametrize("kind", ["inbox", "crashed actor", "crashed OwnerActor"])
def test_an_owner_that_goes_with_the_reads_paused_still_gets_a_graceful_close(
    kind: str,
    fake: FakeTime,
    aiohttp_server: AiohttpServer,
    open_conn: ConnectionTracker,
    start_actor: Callable[..., pykka.ActorRef[Any]],
) -> None:
    # The events the owner left untaken must not hold the reads: the close
    # handshake (Gun's owner_down: 1001) needs the server's answer, behind them.
    gate, got = threading.Event(), queue.Queue[object]()
    inbox = tether.Inbox()
    actor = CrashOnFirstMessage if kind == "crashed actor" else CrashOnFirstMessageOwner
    owner: Any = inbox if kind == "inbox" else start_actor(actor, gate, got)
    conn = open_conn(aiohttp_server.host, aiohttp_server.port, owner=owner, max_queue=64)
    first = inbox.receive(WAIT) if kind == "inbox" else got.get(timeout=WAIT)
    assert isinstance(first, tether.Up)
    conn.ws_upgrade("/push?count=3000&size=1024")
    until(lambda: paused(conn), "the reads paused")
    if kind == "inbox":
        inbox.close()
    else:
        gate.set()
        assert owner.actor_stopped.wait(WAIT)  # it crashed on the first message
    assert fake.wait_pending(1)  # the owner check
    fake.advance(OWNER_CHECK_INTERVAL)
    assert conn.wait_stopped(WAIT)
    assert aiohttp_server.next_ws_end().close_code == 1001


def test_without_a_bound_the_owner_gets_everything_read_at_once_as_gun_does(
    connect: Connect,
) -> None:
    conn = connect(retry=0, max_queue=None)
    upgraded(conn, "/push?count=3000&size=1024")
    until(lambda: len(inbox_of(conn)) == 3000, "every message read without being taken")
    assert not paused(conn)


def test_a_paused_connection_sees_the_peer_close_and_reads_to_the_end(
    connect_raw: ConnectRaw,
) -> None:
    # Nobody takes anything: the reads pause after a few of the 200 chunks,
    # but the peer's close (its FIN, behind 2 KiB: in the kernel's buffer)
    # is still seen, and what is left is read to the end before the Down.
    conn = connect_raw(chunks_then_closes, max_queue=8)
    stream = conn.get("/")
    assert conn.wait_stopped(WAIT)  # Down, then the final Error (retry=0)
    events = inbox_of(conn).flush(lambda m: getattr(m, "conn", None) is conn)
    data = [e for e in events if isinstance(e, tether.Data)]
    assert b"".join(e.data for e in data) == b"chunk" * 200  # all of it, in order
    down = next(e for e in events if isinstance(e, tether.Down))
    assert events.index(down) > events.index(data[-1])
    assert stream in down.killed_streams  # the body never ended: cut mid-response


def test_an_owner_waiting_only_for_down_gets_it_behind_unread_data(
    connect: Connect, aiohttp_server: AiohttpServer
) -> None:
    # Selective receive: the owner waits for the Down only, while the events
    # pile up past the bound. The peer's close waits behind what was not
    # read (TCP holds the FIN behind it): the waiting receive lifts the
    # bound, so the rest is read and the Down comes, after all of it.
    conn = connect(retry=0, max_queue=32)
    stream = upgraded(conn, "/push?count=0&size=1024")  # for ever
    until(lambda: paused(conn), "the reads paused")
    at_pause = len(inbox_of(conn))
    assert aiohttp_server.drop_connections() == 1
    down = inbox_of(conn).receive(WAIT, of_type(conn, tether.Down))
    assert isinstance(down, tether.Down)
    assert stream in down.killed_streams
    received = [seq(e) for e in inbox_of(conn).flush(of_type(conn, tether.Ws))]
    assert received == list(range(len(received)))  # in order, none missing
    assert len(received) > at_pause  # read past the bound while it waited


def test_a_pong_not_read_while_paused_is_not_missing(connect: Connect) -> None:
    # Keepalive pings go on while paused, and the server answers them, but
    # its pongs wait unread behind its messages: the connection must not
    # call the peer dead for that.
    # pong_timeout is short, but not so short that a loaded machine's
    # scheduling alone (no read for that long) could pass for a dead peer.
    conn = connect(retry=0, max_queue=32, ws_opts={"keepalive": 0.1, "pong_timeout": 0.3})
    stream = upgraded(conn, "/push?count=0&size=1024")
    until(lambda: len(inbox_of(conn)) > 32, "the bound crossed")
    until(lambda: paused(conn), "the reads paused")
    # Pong deadlines pass while paused; a PongTimeout would stop it (retry=0).
    assert not conn.wait_stopped(1.0)
    for _ in range(2000):  # the owner catches up: pongs are read again
        conn.await_(stream, WAIT)
    assert conn.info(timeout=WAIT).state == "up"


def test_receive_bound_options_are_validated_at_open() -> None:
    for bad, error in ((0, ValueError), (-1, ValueError), (1.5, TypeError), ("8", TypeError)):
        with pytest.raises(error, match="max_queue"):
            tether.open("127.0.0.1", 1, max_queue=bad)
        with pytest.raises(error, match="max_queue_bytes"):
            tether.open("127.0.0.1", 1, max_queue_bytes=bad)
        with pytest.raises(error, match="send_buffer"):
            tether.open("127.0.0.1", 1, send_buffer=bad)


# -- send: the buffer, the deadline --------------------------------------------------------


def test_senders_wait_while_a_server_reads_nothing(connect_raw: ConnectRaw) -> None:
    # 200 x 1 MiB to a server that reads nothing: without a bound, all 200
    # calls returned at once and held 200 MiB until a write timeout.
    conn = connect_raw(ws_reads_nothing, send_timeout=0.5)
    upgrade(conn, "/")
    accepted = 0
    try:
        for _ in range(200):
            conn.ws_send(bytes(MiB))
            accepted += 1
    except (tether.SendTimeout, tether.ConnectionStoppedError):
        pass  # it waited, then gave up (or the write deadline ended the connection)
    # The send buffer (1 MiB), one message past it, and what the kernel's
    # buffers took: far from 200.
    assert 1 <= accepted <= 16, accepted
    down = inbox_of(conn).receive(WAIT, of_type(conn, tether.Down))
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.WriteTimeout)


def test_a_message_larger_than_the_send_buffer_still_goes_out(connect: Connect) -> None:
    conn = connect(retry=0, send_buffer=1024)
    stream = upgraded(conn, "/websocket-nocompress")
    big = "x" * MiB
    conn.ws_send(big)  # into an empty buffer: taken, whatever its size
    conn.ws_send("after")  # waits until the big one left, then goes
    assert conn.await_(stream, WAIT) == tether.Ws(conn, stream, tether.Text(big))
    assert conn.await_(stream, WAIT) == tether.Ws(conn, stream, tether.Text("after"))


def test_a_trickling_reader_ends_in_a_write_timeout(connect_raw: ConnectRaw) -> None:
    # F7: the deadline bounds how long a byte waits, not how long one send
    # stalls: a peer taking 128 bytes now and then never stalled a send for
    # long, and the backlog never ended.
    conn = connect_raw(trickles, send_timeout=0.5)
    stream = conn.post("/upload", body=bytes(8 * MiB))
    down = inbox_of(conn).receive(WAIT, of_type(conn, tether.Down))
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.WriteTimeout)
    assert stream in down.killed_streams


@pytest.mark.parametrize("script", [reads_nothing, trickles], ids=["reads-nothing", "trickles"])
def test_close_stops_at_once_while_a_backlog_waits(
    script: Script, connect_raw: ConnectRaw
) -> None:
    # F6: close() used to wait behind the blocking drain of the backlog
    # (15 s against a server reading nothing, for ever against a trickle).
    conn = connect_raw(script)
    stream = conn.post("/upload", body=bytes(32 * MiB))
    until(lambda: conn.info(timeout=WAIT).send_buffered > 0, "a backlog waits")
    conn.close()
    assert conn.wait_stopped(WAIT)
    down = inbox_of(conn).receive(WAIT, of_type(conn, tether.Down))
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)  # not a WriteTimeout
    assert stream in down.killed_streams


def test_keepalive_still_detects_a_dead_peer_while_a_backlog_waits(
    connect_raw: ConnectRaw,
) -> None:
    # F7: the ping and pong-deadline ticks waited behind the blocking drain.
    # No pong will ever come.
    conn = connect_raw(ws_reads_nothing, ws_opts={"keepalive": 0.1, "pong_timeout": 0.2})
    upgrade(conn, "/")
    conn.ws_send(bytes(32 * MiB))
    assert conn.info(timeout=WAIT).send_buffered > 0  # a backlog waits
    down = inbox_of(conn).receive(WAIT, of_type(conn, tether.Down))
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.PongTimeout)


def test_a_kept_write_timeout_does_not_keep_the_unsent_bytes(connect_raw: ConnectRaw) -> None:
    # F8: the reason's traceback held the drain's frame, and with it the backlog.
    conn = connect_raw(ws_reads_nothing, send_timeout=0.3)
    upgrade(conn, "/")
    tracing = tracemalloc.is_tracing()  # already, under PYTHONTRACEMALLOC: left on
    if not tracing:
        tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    try:
        conn.ws_send(bytes(40 * MiB))
        down = inbox_of(conn).receive(WAIT, of_type(conn, tether.Down))
        assert isinstance(down, tether.Down)
        assert isinstance(down.reason, tether.WriteTimeout)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        if not tracing:
            tracemalloc.stop()
    assert down.reason.__traceback__ is None
    assert held < 8 * MiB, f"{held} bytes still held while the Down is kept"


# -- close() overtakes; nothing is dropped silently --------------------------------------


class Gate:
    """An event handler that holds the connection actor in ``phase`` until released."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        if name == self.phase and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(WAIT)


def test_close_overtakes_the_commands_of_eight_busy_senders(connect: Connect) -> None:
    # F9: close() was queued behind every command (8 threads for 0.3 s: 3.8 s).
    gate = Gate("ws_send_frame")
    conn = connect(retry=0, event_handler=gate, send_buffer=None)
    upgraded(conn, "/websocket-nocompress")
    conn.ws_send("held")  # the actor is held while it sends this one
    assert gate.entered.wait(WAIT)

    def send_many() -> None:
        for n in range(200):
            conn.ws_send(str(n))  # queued behind the held one

    senders = [threading.Thread(target=send_many) for _ in range(8)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(WAIT)
    conn.close()  # in front of the 1,600 queued sends
    gate.release.set()
    assert conn.wait_stopped(WAIT)
    events = inbox_of(conn).flush(lambda m: getattr(m, "conn", None) is conn)
    down = events[-1]  # the last event: nothing follows close()'s Down
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)
    # None of them went out; each is given back in an Error (before the
    # Down), none dropped.
    refused = [
        frame
        for event in events
        if isinstance(event, tether.Error) and isinstance(event.reason, tether.NotUpgradedError)
        for frame in event.reason.frames
    ]
    assert len(refused) == 8 * 200
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")  # refused at the call from now on


def test_frames_queued_when_the_last_connection_is_lost_are_reported(
    connect: Connect, aiohttp_server: AiohttpServer
) -> None:
    # F10: with retry=0 (or retries spent), frames still queued when the
    # connection was lost were dropped without a word.
    gate = Gate("ws_recv_frame")
    conn = connect(retry=0, event_handler=gate, send_buffer=None)
    upgraded(conn, "/websocket-nocompress")
    conn.ws_send("echo me")
    assert gate.entered.wait(WAIT)  # the actor is held on the echo
    assert aiohttp_server.drop_connections() == 1
    assert mailbox(conn).wait_queued(lambda m: isinstance(m, msg.Closed), WAIT)
    frames = [tether.Text(f"late {n}") for n in range(30)]
    for frame in frames:
        conn.ws_send(frame)  # behind the loss, which the actor has not seen yet
    gate.release.set()
    assert conn.wait_stopped(WAIT)
    events = inbox_of(conn).flush(lambda m: getattr(m, "conn", None) is conn)
    final = events[-1]
    assert isinstance(final, tether.Error)
    assert final.stream is None
    assert isinstance(final.reason, tether.RetriesExhausted)  # still the last event
    refused = [
        frame
        for event in events
        if isinstance(event, tether.Error) and isinstance(event.reason, tether.NotUpgradedError)
        for frame in event.reason.frames
    ]
    assert refused == frames
