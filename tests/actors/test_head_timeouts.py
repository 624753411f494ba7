"""``http_opts`` ``response_timeout`` and ``ws_opts`` ``upgrade_timeout``, against aiohttp.

Both are off by default, as in Gun, which has neither (Gun leaves waiting
to the caller's ``gun:await`` timeout, which does not touch the stream;
``/work/notes/gun_research.md`` section 4). tether's: the seconds from a
request (or an upgrade request) going out to its response head (or the
``101``). Past them the stream gets ``Error`` with ``ResponseTimeout``
(``UpgradeTimeout``), and, since HTTP/1.1 cannot skip a response, the
connection is closed: ``Down`` (the stream is not listed again as killed;
the requests queued behind it are unprocessed), then a reconnect.

``/slow?delay=D`` and ``/websocket-slow?delay=D`` answer D seconds late.
Except in the first test, the timers run on a fake clock
(``tether.testing.use_fake_clock``): the timeout fires when the test
advances the clock, and the server's real delay only has to outlast the
test's few milliseconds until then.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

import tether
from tests.events import expect, inbox, up
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
# The server answers this late: far past the timeouts below, and short
# enough that aiohttp, which lets the handler run out when the client has
# gone, stops in time at teardown.
SLOW = "/slow?delay=1"
SLOW_WS = "/websocket-slow?delay=1"

E = TypeVar("E")
Connect = Callable[..., tether.Connection]


# -- helpers -------------------------------------------------------------------------


def settle(conn: tether.Connection) -> tether.ConnectionInfo:
    """Ask the actor for its state: it answers after handling all it was told before."""
    return conn.info(timeout=WAIT)


def assert_no_events(conn: tether.Connection) -> None:
    settle(conn)
    assert inbox(conn).flush() == []


def expect_timed_out(
    conn: tether.Connection,
    stream: tether.StreamRef,
    reason: type[tether.TetherError],
    unprocessed: tuple[tether.StreamRef, ...] = (),
) -> None:
    """``Error(stream, reason)``, then ``Down`` for that reason, then ``Up`` again."""
    error = expect(conn, tether.Error)
    assert error.stream is stream
    assert isinstance(error.reason, reason), error.reason
    assert isinstance(error.reason, TimeoutError)
    down = expect(conn, tether.Down)
    assert down.protocol == "http"
    assert down.reason is error.reason  # not Crashed
    assert down.killed_streams == ()  # reported by its Error already
    assert down.unprocessed_streams == unprocessed
    assert expect(conn, tether.Up).protocol == "http"


def wait_reading_paused(conn: tether.Connection, paused: bool = True) -> None:
    """Poll ``info().reading_paused`` (bounded) until it says ``paused``."""
    deadline = time.monotonic() + WAIT
    while conn.info(timeout=WAIT).reading_paused is not paused:
        assert time.monotonic() < deadline, f"reading_paused never became {paused}"
        time.sleep(0.002)  # a poll for a state, not a settle


def get_ok(conn: tether.Connection) -> None:
    assert conn.await_body(conn.get("/"), timeout=WAIT) == b"hello"


def echo(conn: tether.Connection, ws: tether.StreamRef, text: str) -> None:
    conn.ws_send(text)
    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Text(text))


# -- response_timeout ----------------------------------------------------------------


def test_a_late_response_head_is_a_response_timeout_then_down_and_up(connect: Connect) -> None:
    """On the real clock: the stream's Error, Down (not Crashed), Up; the next request works."""
    conn = up(connect, http_opts={"response_timeout": 0.2})
    slow = conn.get(SLOW)
    expect_timed_out(conn, slow, tether.ResponseTimeout)
    get_ok(conn)
    assert_no_events(conn)  # nothing more of the slow stream, ever


def test_a_request_queued_behind_a_late_one_is_unprocessed(
    fake: FakeTime, connect: Connect
) -> None:
    conn = up(connect, http_opts={"response_timeout": 0.2})
    slow = conn.get(SLOW)
    queued = conn.get("/")  # waits behind it: never sent
    assert fake.wait_pending(2)  # the owner check, and the slow request's head timer
    fake.advance(0.19)
    assert_no_events(conn)
    fake.advance(0.01)
    expect_timed_out(conn, slow, tether.ResponseTimeout, unprocessed=(queued,))
    get_ok(conn)


def test_a_response_in_time_is_unaffected(fake: FakeTime, connect: Connect) -> None:
    conn = up(connect, http_opts={"response_timeout": 0.5})
    for _ in range(3):
        get_ok(conn)
    assert settle(conn).state == "up"
    assert fake.scheduler.pending() == 1  # the owner check: each head timer was cancelled
    fake.advance(1.0)
    assert_no_events(conn)
    assert settle(conn).state == "up"
    get_ok(conn)


def test_the_timeout_counts_from_when_the_request_goes_out(
    fake: FakeTime, connect: Connect
) -> None:
    """A request queued behind another is timed from when it is sent, not when it was made.

    ``first`` answers after 0.3 s (real), while the fake clock reads 0.4:
    ``second`` goes out then, and times out at 0.4 + 0.5, not at 0.5.
    """
    conn = up(connect, http_opts={"response_timeout": 0.5})
    first = conn.get("/slow?delay=0.3")
    second = conn.get("/slow?delay=0.9")
    assert fake.wait_pending(2)
    fake.advance(0.4)
    assert conn.await_body(first, timeout=WAIT) == b"late"
    settle(conn)  # the actor is done with first's response: second went out
    assert fake.scheduler.pending() == 2  # the owner check, second's head timer
    fake.advance(0.4)  # 0.8: past 0.5 from when second was made
    assert_no_events(conn)
    fake.advance(0.1)  # 0.9: 0.5 from when it went out
    expect_timed_out(conn, second, tether.ResponseTimeout)


def test_a_streamed_body_is_timed_from_its_last_piece(fake: FakeTime, connect: Connect) -> None:
    """While the client still sends its body, the wait is its own, not the server's."""
    conn = up(connect, http_opts={"response_timeout": 0.5})
    stream = conn.headers("POST", "/echo")
    conn.data(stream, False, b"slow ")
    settle(conn)
    assert fake.scheduler.pending() == 1  # the owner check only: no head timer yet
    fake.advance(1.0)  # the body takes longer than response_timeout: no matter
    conn.data(stream, True, b"upload")
    assert conn.await_body(stream, timeout=WAIT) == b"slow upload"
    assert settle(conn).state == "up"


def test_response_timeout_does_not_time_an_upgrade(fake: FakeTime, connect: Connect) -> None:
    """An upgrade is timed by ``upgrade_timeout`` only; the Websocket after it not at all."""
    conn = up(connect, http_opts={"response_timeout": 0.2})
    stream = conn.ws_upgrade("/websocket-slow?delay=0.3")
    assert settle(conn).state == "up"
    assert fake.scheduler.pending() == 1  # the owner check only
    fake.advance(1.0)
    assert expect(conn, tether.Upgrade).stream is stream
    echo(conn, stream, "after the upgrade")
    fake.advance(1.0)
    echo(conn, stream, "still up")
    assert_no_events(conn)


def test_a_head_left_unread_by_backpressure_is_not_late(fake: FakeTime, connect: Connect) -> None:
    """Not read is not late: while tether itself stops reading, the head timer waits.

    ``max_queue=1``: the owner has not taken the first response's two events,
    so tether stops reading before the second response, which the server
    sends 50 ms later (real time: by then tether has surely stopped reading;
    sent at once, it could be read in the turn that pauses). Its head waits
    in the kernel past ``response_timeout``;
    that is the owner's slowness, not the server's, and must not cost the
    response and the connection. (A keepalive pong deadline is judged the
    same way.)
    """
    conn = up(connect, http_opts={"response_timeout": 0.2}, max_queue=1)
    first, second = conn.get("/"), conn.get("/slow?delay=0.05")
    wait_reading_paused(conn)  # the owner takes nothing until the end
    assert fake.wait_pending(2)  # the owner check, and second's head timer
    fake.advance(0.2)
    assert settle(conn).state == "up"
    fake.advance(0.2)
    assert settle(conn).state == "up"

    for stream, body in ((first, b"hello"), (second, b"late")):
        response = expect(conn, tether.Response)
        assert (response.stream, response.status) == (stream, 200)
        assert expect(conn, tether.Data) == tether.Data(conn, stream, True, body)
    assert_no_events(conn)
    wait_reading_paused(conn, False)  # the owner took them all: reading again
    get_ok(conn)


# -- upgrade_timeout -----------------------------------------------------------------


@pytest.mark.parametrize("where", ["ws_upgrade", "open"])
def test_a_late_upgrade_is_an_upgrade_timeout_then_down_and_up(
    where: str, fake: FakeTime, connect: Connect
) -> None:
    """``upgrade_timeout`` from ``ws_upgrade``'s opts, or from ``open``'s ``ws_opts``."""
    if where == "open":
        conn = up(connect, ws_opts={"upgrade_timeout": 0.2})
        stream = conn.ws_upgrade(SLOW_WS)
    else:
        conn = up(connect)
        stream = conn.ws_upgrade(SLOW_WS, opts={"upgrade_timeout": 0.2})
    assert fake.wait_pending(2)  # the owner check, and the upgrade's timer
    fake.advance(0.19)
    assert_no_events(conn)
    fake.advance(0.01)
    expect_timed_out(conn, stream, tether.UpgradeTimeout)
    assert not conn.upgraded
    get_ok(conn)
    assert_no_events(conn)  # no Upgrade, ever


def test_an_upgrade_in_time_is_unaffected(fake: FakeTime, connect: Connect) -> None:
    conn = up(connect, ws_opts={"upgrade_timeout": 0.5})
    stream = conn.ws_upgrade("/websocket")
    assert expect(conn, tether.Upgrade).stream is stream
    echo(conn, stream, "up")
    fake.advance(1.0)
    echo(conn, stream, "still up")
    assert_no_events(conn)


def test_upgrade_timeout_does_not_time_a_request(fake: FakeTime, connect: Connect) -> None:
    conn = up(connect, ws_opts={"upgrade_timeout": 0.2})
    stream = conn.get("/slow?delay=0.3")
    assert settle(conn).state == "up"
    assert fake.scheduler.pending() == 1  # the owner check only
    fake.advance(1.0)
    assert conn.await_body(stream, timeout=WAIT) == b"late"
    assert_no_events(conn)


# -- bad values ----------------------------------------------------------------------

BAD_SECONDS: list[tuple[object, type[Exception]]] = [
    (0, ValueError),
    (-1, ValueError),
    (math.inf, ValueError),
    (math.nan, ValueError),
    ("x", TypeError),
    (True, TypeError),
]


@pytest.mark.parametrize(("value", "error"), BAD_SECONDS)
def test_a_bad_response_timeout_raises_at_open(value: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="response_timeout"):
        tether.open("127.0.0.1", 1, http_opts={"response_timeout": value})


@pytest.mark.parametrize(("value", "error"), BAD_SECONDS)
def test_a_bad_upgrade_timeout_raises_at_open_and_at_ws_upgrade(
    connect: Connect, value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="upgrade_timeout"):
        tether.open("127.0.0.1", 1, ws_opts={"upgrade_timeout": value})
    conn = up(connect)
    with pytest.raises(error, match="upgrade_timeout"):
        conn.ws_upgrade("/websocket", opts={"upgrade_timeout": value})
    assert not conn.upgraded
    get_ok(conn)  # nothing of it reached the connection
    assert_no_events(conn)
