"""Gun's flow control (``flow``), against the aiohttp server.

Gun's ``test/flow_SUITE.erl`` for HTTP/1.1 and Websocket, translated, plus
what tether adds on top (``HttpOpts.flow``, ``WsOpts.flow``, a request's
``flow=``, ``Connection.update_flow``, ``ConnectionInfo.reading_paused``).
The rule: each ``Data`` or ``Ws`` event spends one credit of its stream;
once the stream being received has none left, tether stops reading the
connection (``info().reading_paused``) until ``update_flow`` gives more.
What one read brings is delivered whole, so the credit can go below zero,
and must then be paid back before reading resumes.

Gun's cases use ``sse_clock_h`` (one SSE event a second) and ``ws_echo_h``;
here ``/clock?period=0.1`` (one chunk ``"tick <n>\\n"`` every 0.1 s, for
ever) and the ``/websocket`` echo stand in for them, with periods and
waits about a tenth of Gun's.

One difference from Gun shows in the counts: Gun joins every chunk of one
read into one ``gun_data`` message, tether delivers one ``Data`` per chunk.
So after a pause, when the ticks the server wrote meanwhile wait in the
kernel, ``update_flow(stream, 2)`` delivers all of them at once (the
credit goes below zero), not exactly two as in Gun's ``flow_http``: the
tests check at least two, in order, and then a pause again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

import tether
from tests.events import expect, inbox, up
from tests.interop.aiohttp_server import AiohttpServer

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
PERIOD = 0.1  # /clock's tick period
CLOCK = f"/clock?period={PERIOD}"
# An absence check: no event for this long. Three ticks' time, so that a
# connection that reads while it should not is caught.
QUIET = 3 * PERIOD

E = TypeVar("E")
Connect = Callable[..., tether.Connection]


# -- helpers -------------------------------------------------------------------------


def nothing_comes(conn: tether.Connection, quiet: float = QUIET) -> None:
    """No event reaches the owner for ``quiet`` seconds."""
    with pytest.raises(tether.ReceiveTimeout):
        inbox(conn).receive(timeout=quiet)


def wait_reading_paused(conn: tether.Connection, paused: bool = True) -> None:
    """Poll ``info().reading_paused`` (bounded) until it says ``paused``."""
    deadline = time.monotonic() + WAIT
    while conn.info(timeout=WAIT).reading_paused is not paused:
        assert time.monotonic() < deadline, f"reading_paused never became {paused}"
        time.sleep(0.002)  # a poll for a state, not a settle


def reading_paused(conn: tether.Connection) -> bool:
    """The state once the actor has handled everything told before (an ask)."""
    return conn.info(timeout=WAIT).reading_paused


def expect_response(conn: tether.Connection, stream: tether.StreamRef) -> None:
    response = expect(conn, tether.Response)
    assert (response.stream, response.status, response.fin) == (stream, 200, False)


def expect_data(conn: tether.Connection, stream: tether.StreamRef, count: int) -> list[int]:
    """The next ``count`` events are ``Data`` of ``stream`` (not the last); their tick numbers."""
    chunks = []
    for _ in range(count):
        data = expect(conn, tether.Data)
        assert (data.stream, data.fin) == (stream, False)
        chunks.append(data.data)
    return ticks(chunks)


def data_until_quiet(conn: tether.Connection, stream: tether.StreamRef) -> list[int]:
    """Take ``Data`` of ``stream`` until none comes for ``QUIET``; their tick numbers.

    The connection must pause on its own: one that keeps reading fails once
    ``WAIT`` has passed.
    """
    chunks: list[bytes] = []
    deadline = time.monotonic() + WAIT
    while True:
        assert time.monotonic() < deadline, f"still reading after {len(chunks)} Data"
        try:
            data = inbox(conn).receive(timeout=QUIET)
        except tether.ReceiveTimeout:
            return ticks(chunks)
        assert isinstance(data, tether.Data), data
        assert (data.conn, data.stream, data.fin) == (conn, stream, False)
        chunks.append(data.data)


def ticks(chunks: list[bytes]) -> list[int]:
    """The tick numbers in /clock's chunks, each exactly ``b"tick <n>\\n"``.

    Or, with ``sse``, one server-sent event: ``b"data: tick <n>\\n\\n"``.
    """
    numbers = []
    for chunk in chunks:
        event = chunk.decode().removeprefix("data: ").removesuffix("\n\n")
        word, number = event.removesuffix("\n").split(" ")
        assert word == "tick", chunk
        numbers.append(int(number))
    return numbers


def upgrade(conn: tether.Connection, **opts: Any) -> tether.StreamRef:
    """Upgrade to the aiohttp echo; the Websocket's stream."""
    stream = conn.ws_upgrade("/websocket", opts=opts or None)
    assert expect(conn, tether.Upgrade).stream is stream
    return stream


def expect_echo(conn: tether.Connection, ws: tether.StreamRef, text: str) -> None:
    assert expect(conn, tether.Ws) == tether.Ws(conn, ws, tether.Text(text))


# -- HTTP/1.1 (flow_SUITE) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_flow", "delivered"), [(None, 1), (2, 2)], ids=["http_opts", "request_wins"]
)
def test_default_flow_http(connect: Connect, request_flow: int | None, delivered: int) -> None:
    """Gun's default_flow_http: ``http_opts`` flow applies to every request; a request's own wins.

    Part 1: ``http_opts`` flow 1, one ``Data`` and then nothing. Part 2: the
    same connection option, the request says flow 2: two ``Data``, then
    nothing. Ticks are a period apart, so each comes in a read of its own.
    """
    conn = up(connect, http_opts={"flow": 1})
    stream = conn.get(CLOCK, flow=request_flow)
    expect_response(conn, stream)  # a head spends no credit
    assert expect_data(conn, stream, delivered) == list(range(delivered))
    wait_reading_paused(conn)
    nothing_comes(conn)
    assert reading_paused(conn)


def test_flow_http(connect: Connect) -> None:
    """Gun's flow_http: a request's flow 1, one ``Data``; ``update_flow(+2)`` lets more come.

    Gun expects exactly two ``gun_data`` after ``update_flow(2)``: one for all
    the ticks that waited in the kernel during the pause (Gun joins one
    read's chunks), one for the next. tether delivers the waiting ticks one
    ``Data`` each, so at least two, then it pauses again: the next tick
    comes only after more credit, and none is lost or repeated.
    """
    conn = up(connect)  # no flow in http_opts
    stream = conn.get(CLOCK, flow=1)
    expect_response(conn, stream)
    assert expect_data(conn, stream, 1) == [0]
    wait_reading_paused(conn)
    nothing_comes(conn)  # the server writes ticks meanwhile: they wait, unread

    conn.update_flow(stream, 2)
    resumed = data_until_quiet(conn, stream)
    assert len(resumed) >= 2
    assert resumed == list(range(1, 1 + len(resumed)))  # in order, from where it paused
    assert reading_paused(conn)

    conn.update_flow(stream, len(resumed) - 1)  # pays the debt back, and one more
    again = data_until_quiet(conn, stream)
    assert len(again) >= 1
    assert again[0] == resumed[-1] + 1


def test_no_flow_http(connect: Connect) -> None:
    """Gun's no_flow_http: without flow control, ``update_flow`` changes nothing.

    Gun checks three ``gun_data`` after ``update_flow(2)``: more than the two
    an update would have allowed.
    """
    conn = up(connect)
    stream = conn.get(CLOCK)
    expect_response(conn, stream)
    conn.update_flow(stream, 2)
    assert expect_data(conn, stream, 4) == [0, 1, 2, 3]
    assert not reading_paused(conn)


def test_flow_is_per_request_and_only_where_asked(connect: Connect) -> None:
    """Requests without flow on the same connection are not limited by another's."""
    conn = up(connect)
    assert conn.await_body(conn.get("/", flow=1), timeout=WAIT) == b"hello"  # ended: no pause
    assert not reading_paused(conn)
    stream = conn.get(CLOCK)  # flow is not sticky
    expect_response(conn, stream)
    assert expect_data(conn, stream, 3) == [0, 1, 2]


def test_update_flow_for_another_stream_does_not_resume_reading(connect: Connect) -> None:
    """Only the stream being received controls reading (Gun: "We only update the active state
    when the current stream is being updated").

    An unknown stream, and a request queued behind the paused one (its own
    credit grows, but its response cannot come before the one on the wire
    ends), leave the connection paused; credit for the paused stream resumes it.
    """
    conn = up(connect)
    stream = conn.get(CLOCK, flow=1)
    queued = conn.get("/", flow=1)
    expect_response(conn, stream)
    assert expect_data(conn, stream, 1) == [0]
    wait_reading_paused(conn)

    conn.update_flow(tether.StreamRef(), 5)  # no such stream: nothing happens
    conn.update_flow(queued, 5)
    assert reading_paused(conn)
    nothing_comes(conn)

    conn.update_flow(stream, 1)
    assert data_until_quiet(conn, stream)[0] == 1
    assert reading_paused(conn)


def test_update_flow_after_the_response_ended_does_nothing(connect: Connect) -> None:
    conn = up(connect, http_opts={"flow": 1})
    stream = conn.get("/")
    assert conn.await_body(stream, timeout=WAIT) == b"hello"
    conn.update_flow(stream, 3)  # ended: no error, no event
    assert not reading_paused(conn)
    # The next request has its own credit of 1 (http_opts), untouched by that update.
    clock = conn.get(CLOCK)
    expect_response(conn, clock)
    assert expect_data(conn, clock, 1) == [0]
    wait_reading_paused(conn)
    nothing_comes(conn)


def test_a_stream_cancelled_while_paused_is_drained_and_the_next_request_answered(
    connect: Connect,
) -> None:
    """Gun drains a cancelled stream whatever its flow (gun_http.erl send_data, is_alive=false).

    A 4 MiB chunked body with flow 1 pauses the connection after its first
    read; a request queued behind it waits. Cancelling the paused stream
    resumes reading: its body is read to its end, silently, and the queued
    request is answered on the same connection.
    """
    conn = up(connect)
    big = conn.get("/stream?count=64&size=65536", flow=1)
    after = conn.get("/")
    expect_response(conn, big)
    wait_reading_paused(conn)
    taken = inbox(conn).flush()  # the Data of the first read (one or two chunks)
    assert taken
    assert all(isinstance(e, tether.Data) and e.stream is big and not e.fin for e in taken)
    nothing_comes(conn)  # the queued request is not answered while paused

    conn.cancel(big)
    response = expect(conn, tether.Response)  # nothing more of the cancelled stream
    assert (response.stream, response.status) == (after, 200)
    assert conn.await_body(after, timeout=WAIT) == b"hello"
    assert not reading_paused(conn)
    assert inbox(conn).flush() == []
    assert conn.info(timeout=WAIT).state == "up"  # the same connection: no Down


# -- Websocket (flow_SUITE) ------------------------------------------------------------


def test_flow_ws(connect: Connect) -> None:
    """Gun's flow_ws: ``ws_upgrade`` with flow 1, one echo, then nothing until ``update_flow``.

    Gun's arithmetic: credit 1, spent by the first echo; the second echo
    waits unread; +2 delivers it and the third; the fourth waits again. Each
    message is sent once the previous one's fate is known, so each echo
    comes in a read of its own (Gun sleeps 500 ms between sends for that).
    """
    conn = up(connect)
    ws = upgrade(conn, flow=1)  # an Upgrade spends no credit
    conn.ws_send("Hello! 1")
    expect_echo(conn, ws, "Hello! 1")
    wait_reading_paused(conn)
    conn.ws_send("Hello! 2")
    nothing_comes(conn)

    conn.update_flow(ws, 2)
    expect_echo(conn, ws, "Hello! 2")
    conn.ws_send("Hello! 3")
    expect_echo(conn, ws, "Hello! 3")
    wait_reading_paused(conn)
    conn.ws_send("Hello! 4")
    nothing_comes(conn)

    conn.update_flow(ws, 1)
    expect_echo(conn, ws, "Hello! 4")


def test_no_flow_ws(connect: Connect) -> None:
    """Gun's no_flow_ws: a Websocket without flow control ignores ``update_flow``."""
    conn = up(connect)
    ws = upgrade(conn)
    conn.update_flow(ws, 2)
    for n in range(3):  # more than the two an update would have allowed
        conn.ws_send(f"message {n}")
        expect_echo(conn, ws, f"message {n}")
    assert not reading_paused(conn)


def test_sse_flow_http(connect: Connect) -> None:
    """Gun's sse_flow_http: flow 1 on an event stream, one event; ``update_flow(+2)``, more.

    Gun parses the stream with its ``gun_sse_h`` content handler and counts
    ``{sse, Event}`` messages; tether has no content handlers (the owner
    parses), so its credit counts ``Data``, here one event each (the server
    writes each event a period apart). As in flow_http, the events that
    waited during the pause come one ``Data`` each, then it pauses again.
    """
    conn = up(connect)
    stream = conn.get(CLOCK + "&sse", flow=1)
    response = expect(conn, tether.Response)
    assert (response.stream, response.status) == (stream, 200)
    assert ("content-type", "text/event-stream") in response.headers
    assert expect_data(conn, stream, 1) == [0]
    wait_reading_paused(conn)
    nothing_comes(conn)  # Gun: {error, timeout} after one event

    conn.update_flow(stream, 2)
    resumed = data_until_quiet(conn, stream)
    assert len(resumed) >= 2
    assert resumed == list(range(1, 1 + len(resumed)))
    assert reading_paused(conn)


def test_reading_paused_shows_a_spent_credit_and_update_flow_clears_it(connect: Connect) -> None:
    conn = up(connect)
    ws = upgrade(conn, flow=1)
    assert not reading_paused(conn)
    conn.ws_send("one")
    expect_echo(conn, ws, "one")
    wait_reading_paused(conn)
    assert conn.info(timeout=WAIT).state == "up"  # paused is not down
    conn.update_flow(ws, 1)
    assert not reading_paused(conn)  # nothing was waiting: it stays unpaused
    conn.ws_send("two")
    expect_echo(conn, ws, "two")
    wait_reading_paused(conn)


def test_a_credit_spent_below_zero_must_be_paid_back(connect: Connect) -> None:
    """One read's frames are all delivered (the credit goes below zero, as in Gun's gun_ws).

    Three echoes wait in the kernel while paused; one more credit lets one
    read in, which brings all three (credit 1 - 3 = -2). Two more credits
    only bring it back to zero: still paused. One more resumes reading.
    """
    conn = up(connect)
    ws = upgrade(conn, flow=1)
    conn.ws_send("first")
    expect_echo(conn, ws, "first")
    wait_reading_paused(conn)
    conn.ws_send(["a", "b", "c"])
    nothing_comes(conn)  # meanwhile the three echoes reach our kernel buffer

    conn.update_flow(ws, 1)
    for text in ("a", "b", "c"):
        expect_echo(conn, ws, text)
    wait_reading_paused(conn)

    conn.update_flow(ws, 2)
    assert reading_paused(conn)
    conn.ws_send("d")
    nothing_comes(conn)
    conn.update_flow(ws, 1)
    expect_echo(conn, ws, "d")


def test_ws_opts_flow_of_open_applies_to_the_upgrade_and_the_websocket(
    connect: Connect,
) -> None:
    conn = up(connect, ws_opts={"flow": 1})
    ws = upgrade(conn)  # no opts: open()'s ws_opts
    conn.ws_send("one")
    expect_echo(conn, ws, "one")
    wait_reading_paused(conn)
    conn.ws_send("two")
    nothing_comes(conn)
    conn.update_flow(ws, 1)
    expect_echo(conn, ws, "two")


def test_http_opts_flow_does_not_apply_to_an_upgrade(connect: Connect) -> None:
    """Gun applies ``http_opts`` flow to HTTP requests only, never to ``ws_upgrade``."""
    conn = up(connect, http_opts={"flow": 1})
    ws = upgrade(conn)
    for n in range(3):
        conn.ws_send(f"message {n}")
        expect_echo(conn, ws, f"message {n}")
    assert not reading_paused(conn)


def test_ws_opts_flow_does_not_apply_to_http_requests(connect: Connect) -> None:
    conn = up(connect, ws_opts={"flow": 1})
    stream = conn.get(CLOCK)
    expect_response(conn, stream)
    assert expect_data(conn, stream, 3) == [0, 1, 2]
    assert not reading_paused(conn)


def test_ws_upgrade_opts_flow_wins_over_open(connect: Connect) -> None:
    conn = up(connect, ws_opts={"flow": 1})
    ws = upgrade(conn, flow=3)
    for n in range(3):
        conn.ws_send(f"message {n}")
        expect_echo(conn, ws, f"message {n}")
    wait_reading_paused(conn)


def test_update_flow_for_another_stream_does_not_resume_a_websocket(connect: Connect) -> None:
    conn = up(connect)
    ws = upgrade(conn, flow=1)
    conn.ws_send("one")
    expect_echo(conn, ws, "one")
    wait_reading_paused(conn)
    conn.update_flow(tether.StreamRef(), 5)
    assert reading_paused(conn)


# -- bad values raise at the call ----------------------------------------------------------

BAD_FLOWS: list[tuple[object, type[Exception]]] = [
    (0, ValueError),
    (-1, ValueError),
    (1.5, TypeError),
    (True, TypeError),
    ("2", TypeError),
]


@pytest.mark.parametrize(("value", "error"), BAD_FLOWS)
def test_a_bad_flow_raises_at_the_call(connect: Connect, value: object, error: type[Exception]):
    conn = up(connect)
    with pytest.raises(error, match="flow"):
        conn.get("/", flow=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="flow"):
        conn.request("POST", "/echo", body=b"x", flow=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="flow"):
        conn.headers("POST", "/echo", flow=value)  # type: ignore[arg-type]
    with pytest.raises(error, match="flow"):
        conn.ws_upgrade("/websocket", opts={"flow": value})
    # Nothing of it reached the connection.
    assert conn.await_body(conn.get("/"), timeout=WAIT) == b"hello"
    assert inbox(conn).flush() == []


@pytest.mark.parametrize(("value", "error"), BAD_FLOWS)
@pytest.mark.parametrize("option", ["http_opts", "ws_opts"])
def test_a_bad_flow_option_raises_at_open(
    aiohttp_server: AiohttpServer, option: str, value: object, error: type[Exception]
) -> None:
    options: dict[str, Any] = {option: {"flow": value}}
    with pytest.raises(error, match="flow"):
        tether.open(aiohttp_server.host, aiohttp_server.port, **options)


def test_a_bad_update_flow_increment_raises_at_the_call(connect: Connect) -> None:
    conn = up(connect)
    stream = conn.get(CLOCK, flow=1)
    expect_response(conn, stream)
    assert expect_data(conn, stream, 1) == [0]
    wait_reading_paused(conn)
    cases: list[tuple[object, type[Exception]]] = [*BAD_FLOWS, (None, TypeError)]
    for value, error in cases:
        with pytest.raises(error, match="increment"):
            conn.update_flow(stream, value)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="stream"):
        conn.update_flow(object(), 1)  # type: ignore[arg-type]
    assert reading_paused(conn)
    nothing_comes(conn)  # no Down(Crashed): the connection never saw them
    conn.update_flow(stream, 1)
    assert data_until_quiet(conn, stream)[0] == 1
