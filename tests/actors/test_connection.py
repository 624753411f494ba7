"""A connection's life as its owner sees it: refused ports, retries, bad input, close, shutdown.

All through the public API, on real sockets on 127.0.0.1 (the aiohttp
server from ``tests/interop``, or a port nothing listens on).
"""

from __future__ import annotations

import math
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0

Connect = Callable[..., tether.Connection]


def drain(conn: tether.Connection) -> list[object]:
    """Whatever events still wait in the connection's inbox."""
    return inbox_of(conn).flush()


def final_error(conn: tether.Connection) -> tether.RetriesExhausted:
    """Wait for the owner's only event, the final Error, and return its reason."""
    event = inbox_of(conn).receive(timeout=WAIT)
    assert isinstance(event, tether.Error), event
    assert event.conn is conn
    assert event.stream is None
    assert isinstance(event.reason, tether.RetriesExhausted)
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    assert drain(conn) == []  # no Up, nothing after the Error
    return event.reason


# -- refused ports and retries -------------------------------------------------------


def test_refused_port_without_retry_ends_in_retries_exhausted(
    open_conn: ConnectionTracker, refused_port: int
) -> None:
    conn = open_conn("127.0.0.1", refused_port, retry=0)
    reason = final_error(conn)
    assert reason.attempts == 1
    assert isinstance(reason.last_reason, ConnectionRefusedError)


def test_refused_port_with_retries_tries_retry_plus_one_times(
    open_conn: ConnectionTracker, refused_port: int
) -> None:
    conn = open_conn("127.0.0.1", refused_port, retry=2, retry_timeout=0.05)
    reason = final_error(conn)
    assert reason.attempts == 3
    assert isinstance(reason.last_reason, ConnectionRefusedError)


def test_await_up_reports_a_connection_that_never_came_up(
    open_conn: ConnectionTracker, refused_port: int
) -> None:
    conn = open_conn("127.0.0.1", refused_port, retry=0)
    with pytest.raises(tether.ConnectionDownError) as info:
        conn.await_up(timeout=30)
    assert isinstance(info.value.reason, tether.RetriesExhausted)
    assert conn.wait_stopped(WAIT)


class HeldInbox(tether.Inbox):
    """An Inbox that, once armed, holds an Error in ``tell`` until the test lets it through."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()

    def tell(self, message: object, /) -> None:
        if self.armed.is_set() and isinstance(message, tether.Error):
            self.holding.set()
            self.release.wait(WAIT)
        super().tell(message)


@pytest.mark.parametrize("timeout", [WAIT, math.inf])
def test_await_up_gets_the_final_error_told_after_the_stop(
    open_conn: ConnectionTracker, timeout: float
) -> None:
    # The handle is marked stopped just before the final Error is told: an
    # await_up starting in between must still report that Error, not just
    # "stopped" (regression: it raised ConnectionStoppedError, losing the reason).
    # It waits for the actor's end meanwhile, without limit with inf.
    inbox = HeldInbox()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        conn = open_conn("127.0.0.1", listener.getsockname()[1], owner=inbox, retry=0)
        assert conn.await_up() == "http"
        inbox.armed.set()
        server_side, _ = listener.accept()
        server_side.close()  # lost, and retry=0: Down, then the final Error
    assert inbox.holding.wait(WAIT)
    assert not conn.is_alive()
    down = inbox.receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    outcome: list[BaseException] = []
    calling = threading.Event()

    def await_up() -> None:
        calling.set()
        try:
            conn.await_up(timeout=timeout)
        except BaseException as exc:  # handed to the test thread
            outcome.append(exc)

    waiter = threading.Thread(target=await_up)
    waiter.start()
    assert calling.wait(WAIT)
    inbox.release.set()
    waiter.join(WAIT)
    assert len(outcome) == 1
    assert isinstance(outcome[0], tether.ConnectionDownError), outcome
    assert isinstance(outcome[0].reason, tether.RetriesExhausted)


@pytest.mark.parametrize("timeout", [math.inf, 1e300], ids=["inf", "1e300"])
def test_awaits_with_an_infinite_timeout_wait_without_limit(
    connect: Connect, timeout: float
) -> None:
    conn = connect()
    assert conn.await_up(timeout=timeout) == "http"
    stream = conn.get("/")
    response = conn.await_(stream, timeout=timeout)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    assert conn.await_body(stream, timeout=timeout) == b"hello"


# -- options are checked at open --------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"retry": -1}, ValueError, "retry"),
        ({"retry": "3"}, TypeError, "retry"),
        ({"transport": "udp"}, ValueError, "transport"),
        ({"retry_timeout": -0.5}, ValueError, "retry_timeout"),
        ({"no_such_option": 1}, TypeError, "no_such_option"),
        ({"ws_opts": {"nope": 1}}, ValueError, "nope"),
        ({"ws_opts": {"compress": True, "client_max_window_bits": 8}}, ValueError, "client_max"),
        ({"ws_opts": {"compress": True, "server_max_window_bits": 16}}, ValueError, "server_max"),
        ({"ws_opts": {"compress": True, "server_max_window_bits": "9"}}, TypeError, "server_max"),
        ({"ws_opts": {"compress": True, "client_no_context_takeover": 1}}, TypeError, "client_no"),
        ({"ws_opts": {"server_no_context_takeover": True}}, ValueError, "server_no_context"),
        ({"ws_opts": {"client_max_window_bits": 10}}, ValueError, "needs compress=True"),
        ({"http_opts": {"version": "HTTP/2"}}, ValueError, "version"),
        # A timer set to an infinite delay would never fire (and stopped the timer thread).
        ({"retry_timeout": math.inf}, ValueError, "retry_timeout must be finite"),
        ({"retry_timeout": math.nan}, ValueError, "retry_timeout"),
        ({"connect_timeout": math.inf}, ValueError, "connect_timeout must be finite"),
        ({"http_opts": {"keepalive": math.inf}}, ValueError, "http_opts keepalive"),
        ({"http_opts": {"closing_timeout": math.inf}}, ValueError, "http_opts closing_timeout"),
        ({"ws_opts": {"keepalive": math.inf}}, ValueError, "ws_opts keepalive"),
        ({"ws_opts": {"pong_timeout": math.inf}}, ValueError, "ws_opts pong_timeout"),
        ({"ws_opts": {"closing_timeout": math.inf}}, ValueError, "ws_opts closing_timeout"),
    ],
)
def test_bad_options_raise_at_open(
    open_conn: ConnectionTracker, options: dict[str, Any], error: type, named: str
) -> None:
    # Ports nothing listens on: nothing must be attempted anyway (no thread is left).
    with pytest.raises(error, match=named):
        open_conn("127.0.0.1", 9, **options)


@pytest.mark.parametrize(
    ("host", "told"),
    [
        ("ws://127.0.0.1/x", "is a URL; give the host name and the port: "
         "tether.open('127.0.0.1', 9), then conn.ws_upgrade('/x')"),
        ("127.0.0.1:9", "has a port glued on"),
        ("[::1]", "has brackets; give the IPv6 address without them"),
        ("local host", "is not a host name or an IP address"),
    ],
)  # fmt: skip
def test_a_host_that_is_no_host_name_raises_at_open(
    open_conn: ConnectionTracker, host: str, told: str
) -> None:
    # Nothing is attempted (no thread is left), instead of attempts that time out.
    with pytest.raises(ValueError, match=re.escape(f"host {host!r} {told}")):
        open_conn(host, 9)


# -- bad input raises at the call, and sends nothing --------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("bad name", "x")],
        [("x-ok", "line\r\ninjected: yes")],
        [("x-ok", "lf\nonly")],
    ],
)
def test_invalid_header_raises_invalid_request_error(connect: Connect, headers: Any) -> None:
    conn = connect()
    conn.await_up()
    with pytest.raises(tether.InvalidRequestError):
        conn.get("/", headers)
    with pytest.raises(ValueError):  # InvalidRequestError is a ValueError
        conn.ws_upgrade("/websocket", headers)
    assert_still_serves(conn)


def test_bad_bodies_and_frames_raise_type_error(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    with pytest.raises(TypeError):
        conn.post("/echo", body="not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        conn.ws_send(123)
    assert_still_serves(conn)


@pytest.mark.parametrize(
    "frames",
    [
        tether.Close(1005),
        [tether.Text("a"), tether.Close(1006)],
        (tether.Close(1000, "x" * 124),),
        [],
    ],
    ids=["close-1005", "close-1006-in-a-list", "close-reason-too-long", "no-frames"],
)
def test_frames_that_may_not_be_sent_raise_value_error(connect: Connect, frames: Any) -> None:
    # Checked before anything else (the connection is not even upgraded):
    # a received Close's code or an over-long reason never reaches the wire.
    conn = connect()
    conn.await_up()
    with pytest.raises(ValueError):
        conn.ws_send(frames)
    assert_still_serves(conn)


BODY = b"0123456789"


@pytest.mark.parametrize(
    ("headers", "body", "named"),
    [
        ([("content-length", "5")], BODY, "content-length 5 does not match the body, 10 bytes"),
        ([("content-length", "50")], BODY, "content-length 50 does not match"),
        ([("content-length", "abc")], BODY, "content-length 'abc' is not"),
        ([("content-length", "-10")], BODY, "content-length '-10' is not"),
        ([("content-length", "10"), ("content-length", "10")], BODY, "one content-length"),
        ([("content-length", "10"), ("transfer-encoding", "chunked")], BODY, "both"),
        ([("transfer-encoding", "gzip")], BODY, "transfer-encoding 'gzip'"),
        ([("content-length", "3")], None, "content-length 3 does not match the body, 0"),
    ],
)
def test_framing_headers_that_cannot_frame_the_body_raise_at_the_call(
    connect: Connect, headers: Any, body: bytes | None, named: str
) -> None:
    conn = connect()
    conn.await_up()
    with pytest.raises(tether.InvalidRequestError, match=named):
        conn.request("POST", "/echo", headers, body)
    assert_still_serves(conn)


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ([("content-length", "abc")], "content-length 'abc'"),
        ([("content-length", "5"), ("transfer-encoding", "chunked")], "both"),
        ([("transfer-encoding", "gzip, chunked")], "transfer-encoding 'gzip, chunked'"),
    ],
)
def test_framing_headers_of_a_streamed_body_are_checked_at_the_call(
    connect: Connect, headers: Any, named: str
) -> None:
    conn = connect()
    conn.await_up()
    with pytest.raises(tether.InvalidRequestError, match=named):
        conn.headers("POST", "/echo", headers)
    assert_still_serves(conn)


@pytest.mark.parametrize("pieces", [[BODY], [b"01", b""]], ids=["too-much", "too-little"])
def test_a_streamed_body_that_misses_its_content_length_is_an_error_then_a_reconnect(
    connect: Connect, pieces: list[bytes]
) -> None:
    conn = connect()
    assert conn.await_up() == "http"
    stream = conn.headers("POST", "/echo", [("content-length", "5")])
    for index, piece in enumerate(pieces):
        conn.data(stream, index == len(pieces) - 1, piece)
    inbox = inbox_of(conn)
    error = inbox.receive(timeout=WAIT)
    assert isinstance(error, tether.Error), error
    assert error.stream is stream
    assert isinstance(error.reason, tether.InvalidRequestError)
    # Half a request cannot be taken back: the connection closes, and comes back.
    down = inbox.receive(timeout=WAIT)
    assert isinstance(down, tether.Down), down
    assert down.reason is error.reason
    assert not isinstance(down.reason, tether.Crashed)
    assert down.killed_streams == ()  # reported by the Error
    assert conn.await_up() == "http"
    echoed = conn.post("/echo", [("content-length", "10")], BODY)
    assert conn.await_body(echoed) == BODY


def test_a_content_length_that_frames_the_body_goes_through(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    whole = conn.post("/echo", [("Content-Length", "10")], BODY)
    assert conn.await_body(whole) == BODY
    streamed = conn.headers("POST", "/echo", [("content-length", "10")])
    conn.data(streamed, False, BODY[:4])
    conn.data(streamed, True, BODY[4:])
    assert conn.await_body(streamed) == BODY
    empty = conn.request("GET", "/", [("content-length", "0")])
    assert conn.await_body(empty) == b"hello"
    assert drain(conn) == []


@pytest.mark.parametrize("text", ["\ud800", "tether \udfff !", "日本\ud83d"])
def test_text_that_is_not_utf8_is_refused_when_built(text: str) -> None:
    # A lone surrogate: a str Python allows, that UTF-8 cannot encode.
    with pytest.raises(ValueError, match="lone surrogate"):
        tether.Text(text)
    received = tether.Close(1000, text)  # received frames are never checked
    with pytest.raises(ValueError, match=r"close reason .*lone surrogate"):
        received.check_sendable()


def test_ws_send_of_text_that_is_not_utf8_raises_and_the_websocket_stays_up(
    connect: Connect,
) -> None:
    conn = connect()
    conn.await_up()
    stream = conn.ws_upgrade("/websocket")
    assert isinstance(conn.await_(stream), tether.Upgrade)
    for frames in ("\ud800", ["sent?", "\ud800"], tether.Close(1000, "\ud800")):
        with pytest.raises(ValueError, match="lone surrogate"):
            conn.ws_send(frames)
    # Nothing was sent (not even "sent?"), and the connection did not crash.
    conn.ws_send("still up, é")
    assert conn.await_(stream) == tether.Ws(conn, stream, tether.Text("still up, é"))
    assert drain(conn) == []


def test_ws_send_before_an_upgrade_raises_not_upgraded(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    with pytest.raises(tether.NotUpgradedError) as info:
        conn.ws_send("x")
    assert info.value.frames == (tether.Text("x"),)
    assert_still_serves(conn)


def assert_still_serves(conn: tether.Connection) -> None:
    """Nothing the refused calls did reached the owner, and HTTP works as before."""
    assert drain(conn) == []
    stream = conn.get("/")
    assert conn.await_body(stream) == b"hello"


# -- closing -------------------------------------------------------------------------------


def test_close_tells_down_closed_by_user_and_stops(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    conn.close()
    down = inbox_of(conn).receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert down.protocol == "http"
    assert isinstance(down.reason, tether.ClosedByUser)
    assert conn.wait_stopped(WAIT)
    assert not conn.is_alive()
    with pytest.raises(tether.ConnectionStoppedError):
        conn.get("/")


def test_shutdown_of_an_idle_http_connection_stops_it(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    conn.shutdown()
    assert conn.wait_stopped(WAIT)
    down = inbox_of(conn).receive(timeout=WAIT)
    assert isinstance(down, tether.Down)
    assert isinstance(down.reason, tether.ClosedByUser)
    assert drain(conn) == []


def test_shutdown_lets_a_running_request_finish(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    stream = conn.post("/echo", body=b"last words")
    conn.shutdown()
    assert conn.await_body(stream) == b"last words"
    assert conn.wait_stopped(WAIT)


def test_closing_the_inbox_owner_stops_the_connection(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    inbox_of(conn).close()  # the owner is gone: its periodic check notices (every 2 s)
    assert conn.wait_stopped(WAIT)


# -- a bad frame right after a message ------------------------------------------------------


def test_a_bad_frame_after_a_message_closes_after_the_owner_could_answer(
    server: Server, open_conn: ConnectionTracker
) -> None:
    conn = open_conn(server.host, server.port, retry=0)
    conn.await_up(WAIT)
    stream = conn.ws_upgrade("/ws")
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    conn.ws_send(tether.Text("!then-bad"))  # "before", then an RSV2 frame, in one write
    inbox = inbox_of(conn)
    assert inbox.receive(WAIT) == tether.Ws(conn, stream, tether.Text("before"))
    error = inbox.receive(WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RemoteProtocolError)
    assert error.reason.close_code == 1002
    conn.ws_send(tether.Text("the answer"))  # still goes out: no Error for it
    down = inbox.receive(WAIT)  # the linger ends: close frame, TCP closed
    assert isinstance(down, tether.Down), down
    assert down.reason is error.reason
    assert conn.wait_stopped(WAIT)
    last = inbox.receive(WAIT)  # retry=0: the final Error, and no refusal of the answer
    assert isinstance(last, tether.Error)
    assert isinstance(last.reason, tether.RetriesExhausted)
    with pytest.raises(tether.ReceiveTimeout):  # the connection stopped: nothing can follow
        inbox.receive(0.01)
