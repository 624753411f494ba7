"""What the chaos soak (``tests/chaos.py``) found in tether, reduced to minimal reproductions.

Each is an ``xfail(strict=True)`` test: it fails while the behaviour is as
found, and turns the suite red once it is fixed (then drop the marker).
"""

from __future__ import annotations

import threading
import time

import pytest

import tether
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

OWNER_CHECK = 2.0  # tether.actors._connection.OWNER_CHECK_INTERVAL


@pytest.mark.xfail(
    strict=True,
    reason="the owner is checked only while up: a reconnecting connection outlives its owner "
    "until a connect succeeds or the retries run out (_tick_owner_check, 'owner_check' timer)",
)
def test_a_reconnecting_connection_stops_when_its_owner_goes_away(refused_port: int) -> None:
    # docs/connection.md, "Owner monitoring": when the owner stops (a closed
    # Inbox) the connection shuts itself down; an idle one within two seconds.
    inbox = tether.Inbox()
    conn = tether.open("127.0.0.1", refused_port, owner=inbox, retry=100, retry_timeout=0.2)
    try:
        time.sleep(0.3)  # refused, retrying every 0.2 s: 20 s of retries left
        inbox.close()
        assert conn.wait_stopped(OWNER_CHECK + 1.0), conn.info().state  # "waiting"
    finally:
        conn.close()
        assert conn.wait_stopped(5.0)


@pytest.mark.xfail(
    strict=True,
    reason="close() delivers Down(ClosedByUser) first, then an Error for each ws_send/data it "
    "overtook (_stop_now: _down, then _finish refuses the rest); the docs say the Down is last",
)
def test_nothing_follows_the_down_of_close() -> None:
    # docs/connection.md: close() while up gives Down(reason=ClosedByUser), "last",
    # "and nothing more". Other threads keep sending while close() is called.
    with Server() as server:
        for _ in range(20):
            conn = tether.open(server.host, server.port, retry=0)
            inbox = conn.inbox
            assert inbox is not None
            conn.await_up()
            conn.await_(conn.ws_upgrade("/websocket"))
            stop = threading.Event()

            def flood(conn: tether.Connection = conn, stop: threading.Event = stop) -> None:
                for _ in range(100_000):
                    if stop.is_set():
                        return
                    try:
                        conn.ws_send([tether.Binary(b"x" * 1000)] * 4)
                    except tether.TetherError:
                        return

            senders = [threading.Thread(target=flood) for _ in range(3)]
            for sender in senders:
                sender.start()
            time.sleep(0.02)
            conn.close()
            stop.set()
            for sender in senders:
                sender.join(5.0)
            assert conn.wait_stopped(5.0)
            events = inbox.flush()
            last_down = max(i for i, e in enumerate(events) if isinstance(e, tether.Down))
            after = events[last_down + 1 :]
            assert not after, f"{len(after)} event(s) after the Down: {after[0]!r}"
