"""A connection's whole life under faults: drops, refusals, dead peers, owners that go away.

Everything goes through the public API (``tether.open`` with the default
Inbox owner, or an actor owner) on 127.0.0.1, against the embedded server,
with the fault-injection proxy of ``tests/faults.py`` in between where a
fault is needed. Timers (retry delays, closing timeouts, keepalive pings,
the owner check) run on a :class:`tether.testing.FakeClock`, so nothing
waits out a real delay: a test waits for the timer to be set
(``wait_pending``), checks that nothing happened yet, advances the clock and
waits for the event.

The owner's events are checked strictly in order (``expect``): an event
that is missing, extra or out of place fails the test. Every test ends with
the thread check of ``thread_baseline``.
"""

from __future__ import annotations

import contextlib
import math
import queue
import random
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pykka
import pytest

import tether
from tests.actors.conftest import Recorder
from tests.conftest import ConnectionTracker
from tests.events import expect, inbox
from tests.faults import FaultProxy
from tether.actors import _messages as msg
from tether.actors._mailbox import Mailbox
from tether.actors._scheduler import default_scheduler
from tether.server import Server
from tether.testing import FakeClock, use_fake_clock
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
HELLO = b"hello from tether\n"  # the body of the server's "/"
RETRY_TIMEOUT = 5.0  # Gun's default, and tether's
OWNER_CHECK = 2.0  # tether.actors._connection.OWNER_CHECK_INTERVAL

E = TypeVar("E")
Opener = Callable[..., tether.Connection]


# -- fixtures ------------------------------------------------------------------------


# The two openers set up the server (and proxy) before ``open_conn``, so the
# connections are closed before the proxy and the server stop.


@pytest.fixture
def via_proxy(proxy: FaultProxy, open_conn: ConnectionTracker) -> Opener:
    """Open a connection to the server through the fault proxy."""
    return lambda **options: open_conn("127.0.0.1", proxy.port, **options)


@pytest.fixture
def direct(server: Server, open_conn: ConnectionTracker) -> Opener:
    """Open a connection straight to the server."""
    return lambda **options: open_conn("127.0.0.1", server.port, **options)


# -- helpers -------------------------------------------------------------------------


def expect_up(conn: tether.Connection) -> None:
    assert expect(conn, tether.Up).protocol == "http"


def expect_down(
    conn: tether.Connection, protocol: str, reason: type[BaseException]
) -> tether.Down:
    down = expect(conn, tether.Down)
    assert down.protocol == protocol
    assert isinstance(down.reason, reason), down.reason
    return down


def settle(conn: tether.Connection) -> tether.ConnectionInfo:
    """Ask the actor for its state: it answers after handling all it was told before."""
    return conn.info(timeout=WAIT)


def assert_no_events(conn: tether.Connection) -> None:
    """After what the actor was told so far, the owner has nothing waiting."""
    settle(conn)
    assert inbox(conn).flush() == []


def cut(proxy: FaultProxy, accepted: int, *, refuse: bool = False) -> None:
    """Drop the proxy's one open connection, its ``accepted``-th; first ``refuse`` new ones.

    tether is up as soon as the kernel completes the TCP handshake, which can
    be before the proxy has accepted and connected upstream: wait for that
    (refusing earlier would reset the connection still in the accept queue).
    """
    assert proxy.wait_for(accepted=accepted, open_connections=1, timeout=WAIT)
    if refuse:
        proxy.refuse()
    assert proxy.drop() == 1


def get_ok(conn: tether.Connection) -> None:
    """A plain GET on the connection works."""
    stream = conn.get("/")
    assert conn.await_body(stream, timeout=WAIT) == HELLO


def upgrade(conn: tether.Connection, **opts: Any) -> tether.StreamRef:
    """Upgrade to the server's Websocket echo; return the Websocket's stream."""
    stream = conn.ws_upgrade("/websocket", opts=opts or None)
    event = expect(conn, tether.Upgrade)
    assert event.stream is stream
    assert conn.upgraded
    return stream


def echo(conn: tether.Connection, stream: tether.StreamRef, text: str) -> None:
    """Send ``text`` on the current Websocket; the next event is its echo on ``stream``."""
    conn.ws_send(text)
    assert expect(conn, tether.Ws) == tether.Ws(conn, stream, tether.Text(text))


def final_error(conn: tether.Connection) -> tether.RetriesExhausted:
    """The owner's next and last event: ``Error(conn, None, RetriesExhausted)``."""
    error = expect(conn, tether.Error)
    assert error.stream is None
    assert isinstance(error.reason, tether.RetriesExhausted), error.reason
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert inbox(conn).flush() == []
    return error.reason


class Phases:
    """An ``event_handler`` that counts the phases of the connection's life."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: list[str] = []

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._names.append(name)

    def count(self, name: str) -> int:
        with self._lock:
            return self._names.count(name)


# -- the virtual clock -------------------------------------------------------------


def test_fake_clock_runs_timers_only_when_advanced_in_deadline_order() -> None:
    before = default_scheduler()
    with use_fake_clock(start=100.0) as fake:
        assert default_scheduler() is fake.scheduler
        ran: list[int] = []
        for delay in (3.0, 1.0, 2.0):
            fake.scheduler.call_later(delay, lambda delay=delay: ran.append(int(delay)))
        assert fake.wait_pending(3)

        fake.advance(0.999)
        assert ran == []
        assert fake.scheduler.pending() == 3
        fake.advance(2.001)  # returns once the due callbacks have run
        assert ran == [1, 2, 3]
        assert fake.clock() == pytest.approx(103.0)
        assert fake.scheduler.pending() == 0
    assert default_scheduler() is before


def test_fake_clock_never_goes_back() -> None:
    clock = FakeClock()
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="forward"):
            clock.advance(bad)
    assert clock() == 0.0


# -- drops and reconnects ----------------------------------------------------------


@pytest.mark.parametrize("dropper", ["proxy", "server"])
def test_server_side_drop_gives_down_then_up(
    dropper: str, server: Server, proxy: FaultProxy, open_conn: ConnectionTracker
) -> None:
    port = proxy.port if dropper == "proxy" else server.port
    conn = open_conn("127.0.0.1", port)
    expect_up(conn)
    if dropper == "proxy":
        cut(proxy, 1)
    else:
        assert server.wait_for_connections(1, WAIT)
        assert server.drop_connections() == 1

    down = expect_down(conn, "http", tether.ConnectionClosed)
    assert (down.killed_streams, down.unprocessed_streams) == ((), ())
    expect_up(conn)
    assert conn.is_alive()
    get_ok(conn)
    assert_no_events(conn)


def test_a_useful_reconnect_resets_the_retry_count(via_proxy: Opener, proxy: FaultProxy) -> None:
    # retry=1: without the reset, the second drop in a row would be the last.
    # Each connection is useful (the server answers a request on it) before
    # it drops: one that the server never sent anything on would not count
    # (tether.actors._connection.PROVEN_AFTER; tests/actors/test_retry_storms.py).
    conn = via_proxy(retry=1)
    expect_up(conn)
    for accepted in (1, 2, 3):
        get_ok(conn)
        cut(proxy, accepted)
        expect_down(conn, "http", tether.ConnectionClosed)
        expect_up(conn)
    assert conn.is_alive()
    get_ok(conn)


def test_down_tells_killed_and_unprocessed_streams_apart(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy()
    expect_up(conn)
    slow = conn.get("/delay/2000")  # sent, its response 2 s away
    queued = conn.get("/")  # waits behind it: HTTP/1.1 without pipelining
    settle(conn)
    cut(proxy, 1)

    down = expect_down(conn, "http", tether.ConnectionClosed)
    assert down.killed_streams == (slow,)
    assert down.unprocessed_streams == (queued,)
    expect_up(conn)
    get_ok(conn)
    # Nothing more ever comes for the two lost streams.
    leftovers = inbox(conn).flush()
    assert [e for e in leftovers if getattr(e, "stream", None) in (slow, queued)] == []


def test_a_websocket_comes_back_as_http_after_a_drop(via_proxy: Opener, proxy: FaultProxy) -> None:
    conn = via_proxy()
    expect_up(conn)
    ws = upgrade(conn)
    echo(conn, ws, "before")
    cut(proxy, 1)

    down = expect_down(conn, "ws", tether.ConnectionClosed)
    assert down.killed_streams == (ws,)
    assert down.unprocessed_streams == ()
    expect_up(conn)
    assert not conn.upgraded
    get_ok(conn)
    assert_no_events(conn)  # in particular, no Upgrade


def test_reupgrade_opens_a_new_websocket_after_each_drop(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy(ws_opts={"reupgrade": True})
    expect_up(conn)
    streams = [upgrade(conn)]
    for accepted in (1, 2):
        cut(proxy, accepted)
        assert expect_down(conn, "ws", tether.ConnectionClosed).killed_streams == (streams[-1],)
        expect_up(conn)
        again = expect(conn, tether.Upgrade)
        assert again.protocols == ("websocket",)
        assert again.stream not in streams  # a new stream
        assert conn.upgraded
        echo(conn, again.stream, f"after drop {accepted}")  # ws_send targets the new one
        with pytest.raises(tether.NotUpgradedError):
            conn.ws_send("to the old one", stream=streams[-1])
        streams.append(again.stream)
    assert_no_events(conn)


def test_a_close_the_user_sent_is_not_reupgraded(via_proxy: Opener) -> None:
    conn = via_proxy(ws_opts={"reupgrade": True})
    expect_up(conn)
    ws = upgrade(conn)
    conn.ws_send(tether.Close(1000, "bye"))

    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Close(1000, "bye"))
    down = expect_down(conn, "ws", tether.WsClosed)
    assert (down.reason.code, down.reason.by_server) == (1000, False)
    expect_up(conn)
    assert not conn.upgraded
    get_ok(conn)  # a re-upgrade would have been sent first and refused this request
    assert_no_events(conn)


def test_a_close_the_server_sent_is_followed_by_a_reupgrade(via_proxy: Opener) -> None:
    conn = via_proxy(ws_opts={"reupgrade": True})
    expect_up(conn)
    ws = upgrade(conn)
    conn.ws_send("!close 4000 see you")

    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Close(4000, "see you"))
    down = expect_down(conn, "ws", tether.WsClosed)
    assert (down.reason.code, down.reason.by_server) == (4000, True)
    expect_up(conn)
    again = expect(conn, tether.Upgrade)
    assert again.stream is not ws
    echo(conn, again.stream, "back")


def test_ws_send_between_down_and_up_raises_not_upgraded(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy()
    expect_up(conn)
    ws = upgrade(conn)
    cut(proxy, 1)
    expect_down(conn, "ws", tether.ConnectionClosed)

    # The handle knew before the owner was told Down: the call itself raises.
    with pytest.raises(tether.NotUpgradedError) as raised:
        conn.ws_send(["one", b"two"], stream=ws)
    assert raised.value.frames == (tether.Text("one"), tether.Binary(b"two"))
    with pytest.raises(tether.NotUpgradedError):
        conn.ws_send("three")
    expect_up(conn)
    assert_no_events(conn)  # nothing was sent, nothing is reported twice


class HoldingInbox(tether.Inbox):
    """An Inbox whose ``tell`` (on the connection's thread) holds one event until released."""

    def __init__(self, hold: Callable[[object], bool]) -> None:
        super().__init__()
        self._hold = hold
        self.holding = threading.Event()
        self.release = threading.Event()

    def tell(self, message: object, /) -> None:
        if not self.holding.is_set() and self._hold(message):
            self.holding.set()
            self.release.wait(WAIT)
        super().tell(message)


def wait_told_closed(conn: tether.Connection) -> None:
    """Wait until the transport has told ``conn``'s (busy) actor that its socket closed."""
    assert conn._ref is not None
    mailbox = conn._ref.actor_inbox
    assert isinstance(mailbox, Mailbox)
    assert mailbox.wait_queued(lambda m: isinstance(m, msg.Closed), WAIT)


@pytest.mark.parametrize("explicit", [True, False], ids=["stream", "current"])
def test_frames_that_raced_a_drop_come_back_as_an_error_of_their_stream(
    explicit: bool, via_proxy: Opener, proxy: FaultProxy
) -> None:
    # The connection actor is held delivering an echo while the proxy drops
    # the connection: the handle still believes in the Websocket, so a
    # ws_send is accepted, and reaches the actor after the drop.
    owner = HoldingInbox(lambda m: isinstance(m, tether.Ws) and m.frame == tether.Text("hold"))
    conn = via_proxy(owner=owner)
    try:
        expect_up(conn)
        ws = upgrade(conn)
        conn.ws_send("hold")
        assert owner.holding.wait(WAIT)
        cut(proxy, 1)
        wait_told_closed(conn)  # the transport has told the actor of the close
        # Told after the close. Without stream=, it was meant for the current
        # Websocket, ws: the Error must name it, not look like the connection's.
        conn.ws_send("raced", stream=ws if explicit else None)
    finally:
        owner.release.set()

    assert expect(conn, tether.Ws).frame == tether.Text("hold")
    expect_down(conn, "ws", tether.ConnectionClosed)
    error = expect(conn, tether.Error)
    assert error.stream is ws
    assert isinstance(error.reason, tether.NotUpgradedError)
    assert error.reason.frames == (tether.Text("raced"),)
    assert conn.await_up(timeout=WAIT) == "http"  # not mistaken for a connection failure
    assert_no_events(conn)


def test_a_cut_in_the_middle_of_a_frame_delivers_no_partial_message(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy()
    expect_up(conn)
    ws = upgrade(conn)
    echo(conn, ws, "whole")
    proxy.cut_after(1000)  # of a 100,000-byte binary frame
    conn.ws_send("!big 100000")

    down = expect_down(conn, "ws", tether.ConnectionClosed)  # no Ws before it
    assert down.killed_streams == (ws,)
    expect_up(conn)
    assert not conn.upgraded
    get_ok(conn)
    assert_no_events(conn)


# -- retries ---------------------------------------------------------------------------


def test_retries_running_out_stop_the_connection(
    fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy(retry=2)
    expect_up(conn)
    get_ok(conn)  # useful: the count starts again from here (PROVEN_AFTER)
    cut(proxy, 1, refuse=True)
    expect_down(conn, "http", tether.ConnectionClosed)

    lost = conn.get("/")  # kept for the next Up, which never comes

    # Retry 1 is immediate and refused; retry 2 waits retry_timeout.
    assert fake.wait_pending(2)  # the retry, and the owner check
    assert_no_events(conn)
    fake.advance(RETRY_TIMEOUT)
    refused = expect(conn, tether.Error)  # the request first, then the connection
    assert refused.stream is lost
    assert isinstance(refused.reason, tether.RetriesExhausted)
    reason = final_error(conn)
    assert reason.attempts == 2
    assert isinstance(reason.last_reason, ConnectionRefusedError)


def test_retry_zero_means_no_reconnect(via_proxy: Opener, proxy: FaultProxy) -> None:
    phases = Phases()
    conn = via_proxy(retry=0, event_handler=phases)
    expect_up(conn)
    get_ok(conn)
    cut(proxy, 1)

    expect_down(conn, "http", tether.ConnectionClosed)
    reason = final_error(conn)
    assert reason.attempts == 0
    assert isinstance(reason.last_reason, tether.ConnectionClosed)
    assert proxy.accepted == 1  # the proxy still accepts: nobody came back
    assert phases.count("connect_start") == 1


def test_reconnects_when_the_server_comes_back(
    fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy()  # retry 5, retry_timeout 5 s
    expect_up(conn)
    cut(proxy, 1, refuse=True)
    expect_down(conn, "http", tether.ConnectionClosed)

    assert fake.wait_pending(2)  # the immediate retry was refused; the next is set
    proxy.accept()  # the server is back, but tether only tries again on time
    waiting = conn.get("/")  # made while down: sent after the next Up
    fake.advance(RETRY_TIMEOUT - 0.1)
    assert settle(conn).state == "waiting"
    assert conn.is_alive()
    assert_no_events(conn)
    assert proxy.accepted == 1

    fake.advance(0.1)
    expect_up(conn)
    assert conn.await_body(waiting, timeout=WAIT) == HELLO
    get_ok(conn)
    assert proxy.accepted == 2


@pytest.mark.parametrize("stop", ["close", "shutdown"])
def test_closing_while_waiting_to_reconnect_stops_at_once(
    stop: str, fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    phases = Phases()
    conn = via_proxy(event_handler=phases)
    expect_up(conn)
    cut(proxy, 1, refuse=True)
    expect_down(conn, "http", tether.ConnectionClosed)
    assert fake.wait_pending(2)  # the retry, and the owner check
    waiting = conn.get("/")
    getattr(conn, stop)()

    refused = expect(conn, tether.Error)
    assert refused.stream is waiting
    assert isinstance(refused.reason, tether.ClosedByUser)
    assert conn.wait_stopped(WAIT)
    assert fake.scheduler.pending() == 0  # the retry timer is gone
    proxy.accept()
    fake.advance(RETRY_TIMEOUT)
    assert phases.count("connect_start") == 2  # the first connect and the immediate retry
    assert inbox(conn).flush() == []  # no second Down, no final Error


def test_a_port_refused_at_open_never_yields_up(
    fake: FakeTime, open_conn: ConnectionTracker, refused_port: int
) -> None:
    phases = Phases()
    conn = open_conn("127.0.0.1", refused_port, event_handler=phases)  # retry 5
    # The first retry is immediate, the other four wait retry_timeout each.
    for _ in range(4):
        assert fake.wait_pending(2)  # the retry, and the owner check (from the start)
        assert_no_events(conn)
        fake.advance(RETRY_TIMEOUT)
    reason = final_error(conn)  # and no Up, no Down before it
    assert reason.attempts == 6
    assert isinstance(reason.last_reason, ConnectionRefusedError)
    assert phases.count("connect_start") == 6


def test_retry_backoff_policy_is_asked_with_attempt_numbers(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    asked: list[int] = []

    def policy(attempt: int) -> float:
        asked.append(attempt)
        return 0.0

    conn = via_proxy(retry=3, retry_backoff=policy)
    expect_up(conn)
    get_ok(conn)
    cut(proxy, 1)
    expect_down(conn, "http", tether.ConnectionClosed)
    expect_up(conn)
    assert asked == [1]

    get_ok(conn)
    cut(proxy, 2, refuse=True)
    expect_down(conn, "http", tether.ConnectionClosed)
    reason = final_error(conn)
    assert asked == [1, 1, 2, 3]  # counted again from 1 after the successful reconnect
    assert reason.attempts == 3


def _raising_policy(attempt: int) -> float:
    raise RuntimeError(f"policy bug at attempt {attempt}")


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (_raising_policy, RuntimeError),
        (lambda attempt: -1.0, ValueError),
        (lambda attempt: math.nan, ValueError),
    ],
    ids=["raises", "negative", "nan"],
)
def test_a_broken_retry_backoff_is_reported_and_retry_timeout_used(
    fake: FakeTime,
    via_proxy: Opener,
    proxy: FaultProxy,
    policy: Callable[[int], float],
    reason: type[Exception],
) -> None:
    conn = via_proxy(retry_backoff=policy, retry_timeout=3.0)
    expect_up(conn)
    cut(proxy, 1)
    expect_down(conn, "http", tether.ConnectionClosed)

    error = expect(conn, tether.Error)
    assert error.stream is None
    assert isinstance(error.reason, reason)
    assert conn.is_alive()  # not the final Error
    assert fake.wait_pending(2)  # the retry, and the owner check
    fake.advance(2.9)
    assert settle(conn).state == "waiting"
    assert_no_events(conn)
    fake.advance(0.1)
    expect_up(conn)
    get_ok(conn)


@pytest.mark.parametrize(
    "delay", [math.inf, threading.TIMEOUT_MAX * 2], ids=["inf", "beyond_TIMEOUT_MAX"]
)
def test_a_retry_backoff_too_long_to_wait_is_reported_and_retry_timeout_used(
    fake: FakeTime, open_conn: ConnectionTracker, refused_port: int, delay: float
) -> None:
    # Waited out, it would leave the connection "waiting" for good (and inf
    # stopped the real timer thread of every connection).
    conn = open_conn(
        "127.0.0.1",
        refused_port,
        retry=1,
        retry_backoff=lambda attempt: delay,
        retry_timeout=3.0,
    )
    error = expect(conn, tether.Error)
    assert error.stream is None
    assert isinstance(error.reason, ValueError)
    assert "retry_backoff" in str(error.reason)
    assert conn.is_alive()  # not the final Error
    assert fake.wait_pending(2)  # the retry, and the owner check
    fake.advance(3.0)
    reason = final_error(conn)  # the retry was made, retry_timeout later
    assert reason.attempts == 2


def test_exponential_backoff_stays_within_its_bounds() -> None:
    base, cap = 0.5, 4.0
    backoff = tether.ExponentialBackoff(base, cap, _rng=random.Random(20240501))
    for attempt in range(1, 12):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        delays = [backoff(attempt) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays), attempt
        assert max(delays) > 0.8 * ceiling  # full jitter: the whole range is used
    assert 0.0 <= backoff(10_000) <= cap  # no overflow for huge attempt numbers
    for bad in ({"base": 0}, {"cap": -1.0}, {"base": math.inf}, {"cap": math.inf}):
        with pytest.raises(ValueError, match="ExponentialBackoff"):
            tether.ExponentialBackoff(**bad)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0, ValueError),
        (-1.0, ValueError),
        (math.nan, ValueError),
        ("1", TypeError),
        (True, TypeError),
    ],
)
def test_connect_timeout_is_validated_at_open(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="connect_timeout"):
        tether.open("127.0.0.1", 1, connect_timeout=value)


@contextlib.contextmanager
def silent_port() -> Iterator[int]:
    """A port whose SYNs go unanswered: a listener with a full accept queue (Linux)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0), backlog=0))
        port = listener.getsockname()[1]
        for _ in range(16):
            probe = socket.socket()
            probe.settimeout(0.2)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                probe.close()
                yield port
                return
            stack.enter_context(probe)
        pytest.skip("this system answers SYNs past a full accept queue")


def test_connect_timeout_gives_up_on_a_silent_port(open_conn: ConnectionTracker) -> None:
    with silent_port() as port:
        conn = open_conn("127.0.0.1", port, retry=0, connect_timeout=0.2)
        reason = final_error(conn)
    assert reason.attempts == 1
    assert isinstance(reason.last_reason, tether.ConnectTimeout)
    assert isinstance(reason.last_reason, TimeoutError)


def test_connect_timeout_covers_a_tls_handshake_the_server_never_answers(
    fake: FakeTime, open_conn: ConnectionTracker
) -> None:
    # The TCP connect succeeds at once; the server then never says a word.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        conn = open_conn("127.0.0.1", port, transport="tls", retry=0, connect_timeout=3.0)
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.recv(5)[:1] == b"\x16"  # a TLS handshake record: the ClientHello
            assert fake.wait_pending(2)  # the connect deadline, and the owner check
            assert_no_events(conn)
            fake.advance(3.0)
            reason = final_error(conn)
    assert isinstance(reason.last_reason, tether.ConnectTimeout)
    assert "TLS handshake" in str(reason.last_reason)


# -- owner monitoring ------------------------------------------------------------------


class RecordingOwnerActor(Recorder, tether.OwnerActor):
    """The Recorder as an OwnerActor."""


class RecordingPooledOwner(Recorder, tether.PooledOwnerActor):
    """The Recorder as a PooledOwnerActor."""


@pytest.mark.parametrize(
    ("kind", "says_so"),
    [(Recorder, False), (RecordingOwnerActor, True), (RecordingPooledOwner, True)],
    ids=["plain", "owner", "pooled"],
)
def test_a_stopped_owner_actor_stops_its_idle_connection(
    kind: type[pykka.ThreadingActor],
    says_so: bool,
    fake: FakeTime,
    server: Server,
    open_conn: ConnectionTracker,
    start_actor: Callable[..., pykka.ActorRef[Any]],
) -> None:
    seen: queue.Queue[Any] = queue.Queue()
    owner = start_actor(kind, seen)
    conn = open_conn("127.0.0.1", server.port, owner=owner)
    assert seen.get(timeout=WAIT) == tether.Up(conn, "http")
    assert fake.wait_pending(1)  # the owner check
    owner.stop(block=True, timeout=WAIT)

    if not says_so:
        # Idle, and a plain pykka actor tells nobody it stopped: only the
        # periodic check notices. tether's owner actors say so (their Inbox
        # closes): the clock never moves for them.
        assert settle(conn).state == "up"
        fake.advance(OWNER_CHECK)
    assert conn.wait_stopped(WAIT)
    assert server.wait_for_connections(0, WAIT)
    assert seen.empty()


def test_a_closed_inbox_stops_its_idle_connection_at_once(
    fake: FakeTime, direct: Opener, server: Server
) -> None:
    # An Inbox says it closed (Gun's monitor on the owner): no owner check
    # is needed, the fake clock never moves.
    conn = direct()
    expect_up(conn)
    assert fake.wait_pending(1)
    inbox(conn).close()

    assert conn.wait_stopped(WAIT)
    assert server.wait_for_connections(0, WAIT)


def test_an_inbox_closed_after_set_owner_leaves_the_connection_alone(
    fake: FakeTime, direct: Opener, server: Server
) -> None:
    conn = direct()
    expect_up(conn)
    old = inbox(conn)
    conn.set_owner(tether.Inbox())
    old.close()  # no longer the owner: nothing to monitor

    assert settle(conn).state == "up"
    fake.advance(OWNER_CHECK)
    assert settle(conn).state == "up"
    inbox(conn).close()  # the new owner's monitor moved with it
    assert conn.wait_stopped(WAIT)
    assert server.wait_for_connections(0, WAIT)


@pytest.mark.parametrize("owner_kind", ["inbox", "actor"])
def test_a_connection_that_never_connected_stops_with_its_owner(
    owner_kind: str,
    fake: FakeTime,
    open_conn: ConnectionTracker,
    refused_port: int,
    start_actor: Callable[..., pykka.ActorRef[Any]],
) -> None:
    # Issue 19, bug 1: the owner was watched only once up, so a connection
    # whose owner went away while it retried a refused port went on retrying
    # (retry=5, retry_timeout=5: 20 s). Gun monitors the owner from the start.
    seen: queue.Queue[Any] = queue.Queue()
    actor = start_actor(Recorder, seen) if owner_kind == "actor" else None
    conn = open_conn("127.0.0.1", refused_port, owner=actor)  # retry 5, retry_timeout 5.0
    assert fake.wait_pending(2)  # the second retry, and the owner check
    assert settle(conn).state == "waiting"
    if actor is not None:
        actor.stop(block=True, timeout=WAIT)
    else:
        inbox(conn).close()
    fake.advance(OWNER_CHECK)  # the next owner check, well before the next retry
    assert conn.wait_stopped(WAIT)
    assert seen.empty()  # nothing told to an owner that is gone


# -- keepalive and dead peers ------------------------------------------------------------

KEEPALIVE = {"keepalive": 1.0, "pong_timeout": 0.5}


def test_pong_timeout_detects_a_dead_peer(
    fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy(ws_opts=KEEPALIVE)
    expect_up(conn)
    ws = upgrade(conn)
    proxy.stall()  # the TCP connection stays open; nothing gets through

    fake.advance(1.0)  # the keepalive ping goes out (and is held)
    settle(conn)  # the actor has sent it and set its pong deadline
    fake.advance(0.5)
    down = expect_down(conn, "ws", tether.PongTimeout)
    assert isinstance(down.reason, TimeoutError)
    assert down.killed_streams == (ws,)

    proxy.resume()
    expect_up(conn)
    get_ok(conn)


def test_a_late_pong_within_its_timeout_does_not_count_as_a_dead_peer(
    fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    # pong_timeout longer than the ping interval: two pings can be out at once,
    # and each must be judged by its own pong.
    conn = via_proxy(ws_opts={"keepalive": 1.0, "pong_timeout": 1.5})
    expect_up(conn)
    ws = upgrade(conn)
    fake.advance(1.0)  # t=1: ping 1, due by 2.5
    echo(conn, ws, "pong 1 is in")
    assert proxy.wait_for(accepted=1, open_connections=1, timeout=WAIT)
    proxy.stall()
    fake.advance(1.0)  # t=2: ping 2 (held), due by 3.5
    settle(conn)
    fake.advance(0.5)  # t=2.5: ping 1's deadline; its pong came long ago
    assert settle(conn).state == "up"
    assert_no_events(conn)

    fake.advance(1.0)  # t=3.5: ping 2's deadline, no pong: now the peer is dead
    assert isinstance(expect_down(conn, "ws", tether.PongTimeout).reason, TimeoutError)
    proxy.resume()
    expect_up(conn)


def test_answered_pings_keep_the_websocket_up_silently(fake: FakeTime, via_proxy: Opener) -> None:
    conn = via_proxy(ws_opts=KEEPALIVE)
    expect_up(conn)
    ws = upgrade(conn)
    for second in (1, 2, 3):
        fake.advance(1.0)  # a ping; the previous pong deadline passes too
        # Sent after the ping, so echoed after the pong: the pong is in.
        echo(conn, ws, f"second {second}")
    fake.advance(0.5)  # past the last pong deadline

    info = settle(conn)
    assert (info.state, info.protocol) == ("up", "ws")
    conn.ws_send("!ping from the server")  # answered, but not shown either
    echo(conn, ws, "still here")
    assert_no_events(conn)  # no Down, no Ping or Pong events


def test_pings_and_pongs_reach_the_owner_unless_silenced(
    fake: FakeTime, via_proxy: Opener
) -> None:
    conn = via_proxy(ws_opts={**KEEPALIVE, "silence_pings": False})
    expect_up(conn)
    ws = upgrade(conn)
    fake.advance(1.0)
    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Pong(b"tether-keepalive"))
    conn.ws_send("!ping hello")
    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Ping(b"hello"))
    fake.advance(0.5)
    assert settle(conn).protocol == "ws"
    assert_no_events(conn)


# -- shutdown and close ----------------------------------------------------------------


def test_graceful_shutdown_lets_the_response_in_flight_arrive(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy()
    expect_up(conn)
    assert proxy.wait_for(accepted=1, open_connections=1, timeout=WAIT)
    proxy.stall()  # the response cannot arrive before shutdown() is under way
    slow = conn.get("/delay/50")
    conn.shutdown()
    late = conn.get("/")  # made while shutting down: refused
    assert settle(conn).state == "closing"
    proxy.resume()

    refused = expect(conn, tether.Error)
    assert refused.stream is late
    assert isinstance(refused.reason, tether.ClosedByUser)
    response = expect(conn, tether.Response)
    assert (response.stream, response.status, response.fin) == (slow, 200, False)
    assert expect(conn, tether.Data) == tether.Data(conn, slow, True, b"delayed")
    down = expect_down(conn, "http", tether.ClosedByUser)
    assert (down.killed_streams, down.unprocessed_streams) == ((), ())
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert inbox(conn).flush() == []


def test_a_connection_lost_while_shutting_down_is_not_reconnected(
    via_proxy: Opener, proxy: FaultProxy
) -> None:
    conn = via_proxy()
    expect_up(conn)
    slow = conn.get("/delay/2000")
    conn.shutdown()
    assert settle(conn).state == "closing"
    cut(proxy, 1)

    down = expect_down(conn, "http", tether.ConnectionClosed)
    assert down.killed_streams == (slow,)
    assert conn.wait_stopped(WAIT)
    assert inbox(conn).flush() == []  # no Up, no final Error: it was asked to stop
    assert proxy.accepted == 1


def test_shutdown_closes_a_websocket_with_a_close_frame(direct: Opener, server: Server) -> None:
    # 1001, going away, as Gun's shutdown (the embedded server echoes the code).
    conn = direct()
    expect_up(conn)
    ws = upgrade(conn)
    conn.shutdown()

    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Close(1001, ""))
    down = expect_down(conn, "ws", tether.WsClosed)
    assert (down.reason.code, down.reason.by_server) == (1001, False)
    assert down.killed_streams == (ws,)
    assert conn.wait_stopped(WAIT)
    assert inbox(conn).flush() == []
    assert server.wait_for_connections(0, WAIT)


def test_a_websocket_upgraded_during_shutdown_is_closed_with_a_close_frame(
    fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    # shutdown() lets the upgrade in flight finish; the Websocket it makes is
    # then closed as shutdown() closes one, not left open until closing_timeout.
    conn = via_proxy()
    expect_up(conn)
    assert proxy.wait_for(accepted=1, open_connections=1, timeout=WAIT)
    proxy.stall()
    stream = conn.ws_upgrade("/websocket")
    conn.shutdown()
    assert settle(conn).state == "closing"
    proxy.resume()

    assert expect(conn, tether.Upgrade).stream is stream
    assert expect(conn, tether.Ws) == tether.Ws(conn, stream, tether.Close(1001, ""))
    down = expect_down(conn, "ws", tether.WsClosed)
    assert (down.reason.code, down.reason.by_server) == (1001, False)
    assert conn.wait_stopped(WAIT)  # no clock advance needed
    assert inbox(conn).flush() == []


@pytest.mark.parametrize("where", ["http", "ws", "ws_upgrade"])
def test_closing_timeout_bounds_a_shutdown_the_server_never_answers(
    where: str, fake: FakeTime, via_proxy: Opener, proxy: FaultProxy
) -> None:
    # "ws_upgrade": the timeout comes from ws_upgrade's opts, which win over open's.
    if where == "ws_upgrade":
        conn = via_proxy()
    else:
        conn = via_proxy(http_opts={"closing_timeout": 3.0}, ws_opts={"closing_timeout": 3.0})
    expect_up(conn)
    protocol = "http" if where == "http" else "ws"
    if protocol == "ws":
        stream = upgrade(conn, **({"closing_timeout": 3.0} if where == "ws_upgrade" else {}))
        assert proxy.wait_for(accepted=1, open_connections=1, timeout=WAIT)
        proxy.stall()  # the close frame never gets an answer
    else:
        assert proxy.wait_for(accepted=1, open_connections=1, timeout=WAIT)
        proxy.stall()
        stream = conn.get("/")  # never answered
    conn.shutdown()
    assert settle(conn).state == "closing"

    fake.advance(2.9)
    assert settle(conn).state == "closing"
    assert_no_events(conn)
    fake.advance(0.1)
    down = expect_down(conn, protocol, tether.ClosedByUser)
    assert down.killed_streams == (stream,)
    assert conn.wait_stopped(WAIT)
    assert inbox(conn).flush() == []


def test_close_kills_the_streams_at_once(direct: Opener) -> None:
    conn = direct()
    expect_up(conn)
    slow = conn.get("/delay/2000")
    queued = conn.get("/")
    conn.close()  # overtakes them if they still wait in the mailbox: then never sent

    down = expect_down(conn, "http", tether.ClosedByUser)
    # Each is in the Down: killed if it went out, unprocessed if not; the
    # second cannot have gone out while the first was unanswered.
    assert set(down.killed_streams + down.unprocessed_streams) == {slow, queued}
    assert queued in down.unprocessed_streams
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert inbox(conn).flush() == []  # no final Error after a close
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")


# -- HTTP keepalive (Gun's http_opts keepalive: an empty line while idle) ---------------


class _RecordingServer:
    """One-connection raw server: records every byte and answers each request with 200."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        with client:
            while True:
                data = client.recv(65536)
                if not data:
                    return
                with self.cond:
                    self.received += data
                    self.cond.notify_all()
                if b"GET " in data:
                    client.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    def wait_for(self, predicate: Callable[[bytes], bool]) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.received), WAIT)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(WAIT)


def test_http_keepalive_sends_empty_lines_while_idle_and_requests_still_work(
    fake: FakeTime, open_conn: ConnectionTracker
) -> None:
    raw = _RecordingServer()
    try:
        conn = open_conn("127.0.0.1", raw.port, http_opts={"keepalive": 1.0})
        expect_up(conn)
        assert fake.wait_pending(2)  # the owner check and the keepalive timer
        fake.advance(1.0)
        settle(conn)  # the first ping went out and the next one is scheduled
        fake.advance(1.0)
        settle(conn)
        assert raw.wait_for(lambda data: data == b"\r\n\r\n")
        assert conn.await_body(conn.get("/")) == b"ok"
        assert raw.wait_for(lambda data: data.startswith(b"\r\n\r\nGET / HTTP/1.1\r\n"))
    finally:
        open_conn.close_all()
        raw.close()


def test_http_keepalive_is_off_by_default(fake: FakeTime, open_conn: ConnectionTracker) -> None:
    raw = _RecordingServer()
    try:
        conn = open_conn("127.0.0.1", raw.port)
        expect_up(conn)
        assert fake.wait_pending(1)  # the owner check only
        fake.advance(30.0)
        assert conn.await_body(conn.get("/")) == b"ok"
        assert raw.wait_for(lambda data: data.startswith(b"GET / HTTP/1.1\r\n"))
    finally:
        open_conn.close_all()
        raw.close()
