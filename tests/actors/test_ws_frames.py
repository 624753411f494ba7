"""Websocket frames over loopback, against the embedded server's echo.

tether reads whole message frames itself and gives wsproto the rest
(``tether/protocol/_reader.py``); the in-memory tests compare the two
read by read. Here the frames cross a real socket, in whatever reads the
kernel makes of them: big frames over many reads, bursts of small frames
whose headers reads cut anywhere (through a proxy that forwards the
server's bytes in small writes), control frames and fragmented messages in
between, and a bad frame at the end of a burst.
"""

from __future__ import annotations

import os

import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.faults import FaultProxy
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
BIG_WAIT = 30.0  # megabytes through the pure-Python server on a busy machine
BURST = 1000


def upgraded(
    server: Server | FaultProxy, open_conn: ConnectionTracker, **ws_opts: object
) -> tuple[tether.Connection, tether.StreamRef]:
    conn = open_conn("127.0.0.1", server.port, retry=0, ws_opts=ws_opts)
    assert conn.await_up(WAIT) == "http"
    stream = conn.ws_upgrade("/ws")
    assert isinstance(conn.await_(stream, WAIT), tether.Upgrade)
    return conn, stream


def frames_received(conn: tether.Connection, count: int, timeout: float = WAIT) -> list[object]:
    """The frames of the next ``count`` events, which must all be ``Ws``."""
    inbox = inbox_of(conn)
    frames = []
    for _ in range(count):
        event = inbox.receive(timeout)
        assert isinstance(event, tether.Ws), event
        frames.append(event.frame)
    return frames


def test_big_messages_in_one_frame_come_back_whole(server: Server, open_conn) -> None:
    conn, _ = upgraded(server, open_conn, max_message_size=8 << 20)
    payload = os.urandom(3 << 20)
    text = "€ tether 日本語 " * 50_000  # 1.3 MB of UTF-8, characters cut by the reads
    conn.ws_send([tether.Binary(payload), tether.Text(text), tether.Text("!big 5000000")])
    assert frames_received(conn, 3, BIG_WAIT) == [
        tether.Binary(payload),
        tether.Text(text),
        tether.Binary(b"x" * 5_000_000),
    ]


@pytest.mark.parametrize("chunk", [None, 7], ids=["as-written", "in-7-byte-writes"])
def test_a_burst_of_small_frames_with_control_frames_and_fragments_keeps_its_order(
    proxy: FaultProxy, open_conn, chunk: int | None
) -> None:
    conn, _ = upgraded(proxy, open_conn, silence_pings=False)
    proxy.rechunk(chunk)
    sent: list[tether.Frame] = []
    expected: list[object] = []
    for i in range(BURST):
        if i % 100 == 50:
            sent.append(tether.Text(f"!ping p{i}"))  # the server sends a ping instead
            expected.append(tether.Ping(f"p{i}".encode()))
        elif i % 100 == 75:
            sent.append(tether.Text("!fragments 3"))  # "abc" in three frames
            expected.append(tether.Text("abc"))
        elif i % 100 == 99:
            sent.append(tether.Text("!big 3000 4"))  # 3,000 bytes in four frames
            expected.append(tether.Binary(b"x" * 3000))
        else:
            frame = (
                tether.Text(f"message {i}")
                if i % 2
                else tether.Binary(bytes([i % 256]) * (i % 300))
            )
            sent.append(frame)
            expected.append(frame)
    conn.ws_send(sent)
    assert frames_received(conn, len(expected), BIG_WAIT) == expected
    conn.ws_send(tether.Text("after the burst"))  # pongs and all went out: still open
    assert frames_received(conn, 1) == [tether.Text("after the burst")]


def test_invalid_utf8_after_a_burst_fails_the_connection_after_the_messages(
    server: Server, open_conn
) -> None:
    conn, stream = upgraded(server, open_conn)
    burst = [tether.Text(f"message {i}") for i in range(BURST)]
    conn.ws_send([*burst, tether.Text("!bad-utf8")])
    assert frames_received(conn, BURST, BIG_WAIT) == burst
    inbox = inbox_of(conn)
    error = inbox.receive(WAIT)
    assert isinstance(error, tether.Error), error
    assert error.stream is stream
    assert isinstance(error.reason, tether.RemoteProtocolError)
    assert error.reason.close_code == 1007
    down = inbox.receive(WAIT)
    assert isinstance(down, tether.Down), down
    assert down.reason is error.reason
