"""tether.AsyncInbox: connections owned from an asyncio event loop, on 127.0.0.1.

Each test runs its coroutines with ``asyncio.run`` (every wait has a
timeout) against the aiohttp server of ``tests/conftest.py``; the
``thread_baseline`` fixture checks that nothing is left running.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable

import pytest

import tether
from tests.actors.test_backpressure import RawPeer, ws_reads_nothing
from tests.conftest import ConnectionTracker
from tether.actors._ioloop import _READ_SIZE
from tether.actors._transport import READ_AHEAD
from tether.testing._clock import FakeTime

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0
Connect = Callable[..., tether.Connection]


def run(coroutine: object) -> object:
    """``asyncio.run`` with a deadline: a test that hangs fails instead."""

    async def bounded() -> object:
        return await asyncio.wait_for(coroutine, 30.0)  # type: ignore[arg-type]

    return asyncio.run(bounded())


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for a state no event announces (polled, bounded by WAIT)."""
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.002)


def test_an_http_get_owned_by_an_async_inbox(connect: Connect) -> None:
    async def main() -> bytes:
        inbox = tether.AsyncInbox()
        conn = connect(owner=inbox, retry=0)
        assert await inbox.await_up(conn, WAIT) == "http"
        stream = conn.get("/")
        response = await inbox.await_(conn, stream, WAIT)
        assert isinstance(response, tether.Response)
        assert response.status == 200
        return await inbox.await_body(conn, stream, WAIT)

    assert run(main()) == b"hello"


def test_a_websocket_echo_owned_by_an_async_inbox(connect: Connect) -> None:
    async def main() -> list[object]:
        inbox = tether.AsyncInbox()
        conn = connect(owner=inbox, retry=0)
        await inbox.await_up(conn, WAIT)
        stream = conn.ws_upgrade("/websocket")
        assert isinstance(await inbox.await_(conn, stream, WAIT), tether.Upgrade)
        echoes: list[object] = []
        for text in ("one", "two", "three"):
            conn.ws_send(text)
            event = await inbox.receive(WAIT)
            assert isinstance(event, tether.Ws)
            echoes.append(event.frame)
        return echoes

    assert run(main()) == [tether.Text("one"), tether.Text("two"), tether.Text("three")]


def test_receive_picks_the_oldest_match_and_leaves_the_rest_in_order() -> None:
    async def main() -> tuple[object, list[object]]:
        inbox = tether.AsyncInbox()
        for message in ("a", 1, "b", 2):
            inbox.tell(message)
        picked = await inbox.receive(WAIT, match=lambda m: isinstance(m, int))
        return picked, [await inbox.receive(WAIT) for _ in range(3)]

    assert run(main()) == (1, ["a", "b", 2])


def test_a_receive_waits_for_a_match_told_from_another_thread() -> None:
    async def main() -> object:
        inbox = tether.AsyncInbox()
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: loop.run_in_executor(None, inbox.tell_all, ["x", 42]))
        return await inbox.receive(WAIT, match=lambda m: m == 42)

    assert run(main()) == 42


def test_a_receive_woken_by_what_it_does_not_match_is_woken_again() -> None:
    # Each look at a message that does not match is counted: the receive looks
    # at each twice before it waits (once, then again once it can be woken).
    looked: dict[object, int] = {}
    waits = {"a": threading.Event(), "x": threading.Event()}

    def match(message: object) -> bool:
        looked[message] = looked.get(message, 0) + 1
        if message in waits and looked[message] == 2:
            waits[message].set()  # (a: the first wait; x: the wait after its wake-up)
        return message == 42

    async def main() -> object:
        inbox = tether.AsyncInbox()
        inbox.tell("a")

        def teller() -> None:
            if waits["a"].wait(WAIT):
                inbox.tell("x")  # wakes the receive, which does not want it
            if waits["x"].wait(WAIT):
                inbox.tell(42)  # must wake it again

        thread = threading.Thread(target=teller)
        thread.start()
        try:
            # No timeout of its own: only a wake-up can end it.
            return await asyncio.wait_for(inbox.receive(None, match=match), WAIT)
        finally:
            thread.join(WAIT)

    assert run(main()) == 42


def test_a_receive_that_nothing_matches_times_out() -> None:
    async def main() -> None:
        inbox = tether.AsyncInbox()
        inbox.tell("not it")
        with pytest.raises(tether.ReceiveTimeout):
            await inbox.receive(0.05, match=lambda m: m == "it")
        assert len(inbox) == 1  # what did not match stays

    run(main())


def test_a_closed_inbox_wakes_its_receivers_and_stops_its_connection(
    connect: Connect, fake: FakeTime
) -> None:
    # On a fake clock that never moves: the close itself tells the connection,
    # not its owner check.
    async def main() -> tether.Connection:
        inbox = tether.AsyncInbox()
        conn = connect(owner=inbox, retry=0)
        await inbox.await_up(conn, WAIT)
        waiting = asyncio.ensure_future(inbox.receive(WAIT))
        await asyncio.sleep(0)  # the receive starts waiting (a turn of the loop)
        inbox.close()
        with pytest.raises(tether.InboxClosedError):
            await waiting
        return conn

    conn = run(main())
    assert isinstance(conn, tether.Connection)
    assert conn.wait_stopped(WAIT)  # the owner is gone: the connection stops


def test_a_closed_event_loop_is_a_gone_owner(connect: Connect) -> None:
    async def main() -> tuple[tether.Connection, tether.AsyncInbox]:
        inbox = tether.AsyncInbox()
        conn = connect(owner=inbox, retry=0)
        await inbox.await_up(conn, WAIT)
        stream = conn.ws_upgrade("/websocket")
        assert isinstance(await inbox.await_(conn, stream, WAIT), tether.Upgrade)
        conn.ws_send("the loop reads the socket by now")
        assert isinstance(await inbox.await_(conn, stream, WAIT), tether.Ws)
        return conn, inbox

    result = run(main())
    assert isinstance(result, tuple)
    conn, inbox = result  # asyncio.run closed the loop
    assert inbox.closed
    with pytest.raises(tether.InboxClosedError):
        inbox.tell("an event")  # what a busy connection's next event finds
    assert conn.wait_stopped(WAIT)  # an idle one: its owner check (OwnerDown)


def test_a_slow_coroutine_owner_pauses_the_reads(connect: Connect) -> None:
    # A loop that does not run is the slowest of owners: the bound must hold.
    loop = asyncio.new_event_loop()
    try:
        inbox = tether.AsyncInbox(loop=loop)
        conn = connect(owner=inbox, retry=0, max_queue=64)
        until(lambda: len(inbox) == 1, "Up")
        conn.ws_upgrade("/push?count=3000&size=1024")
        # Reads also pause while the actor is behind (read-ahead): wait for
        # the pause of the bound, then let the actor handle what it was told
        # (an info() is answered after it) before counting.
        until(lambda: len(inbox) > 64, "the bound crossed")
        until(lambda: conn.info(timeout=WAIT).reading_paused, "the reads paused")
        conn.info(timeout=WAIT)
        # Past the bound: what was read is delivered, at most a read that
        # crossed it, the read-ahead and one more read; not 3,000.
        most = 64 + (2 * _READ_SIZE + READ_AHEAD) // 1024
        assert 64 < len(inbox) <= most

        async def main() -> list[int]:
            await inbox.await_up(conn, WAIT)
            numbers: list[int] = []
            while len(numbers) < 3000:
                event = await inbox.receive(WAIT)
                if isinstance(event, tether.Ws):
                    assert isinstance(event.frame, tether.Text)
                    numbers.append(int(event.frame.data.split(":", 1)[0]))
            return numbers

        assert loop.run_until_complete(asyncio.wait_for(main(), 30.0)) == list(range(3000))
        conn.close()
    finally:
        loop.close()


def test_reply_to_an_async_inbox(connect: Connect) -> None:
    async def main() -> bytes:
        replies = tether.AsyncInbox()
        conn = connect(retry=0)  # owned by a plain Inbox
        stream = conn.get("/", reply_to=replies)
        with pytest.raises(tether.OwnerError, match="AsyncInbox"):
            conn.await_body(stream, WAIT)  # would block the loop
        return await replies.await_body(conn, stream, WAIT)

    assert run(main()) == b"hello"


def test_blocking_awaits_on_an_async_owned_connection_point_to_the_coroutines(
    connect: Connect,
) -> None:
    async def main() -> None:
        inbox = tether.AsyncInbox()
        other = tether.AsyncInbox()
        conn = connect(owner=inbox, retry=0)
        with pytest.raises(tether.OwnerError, match=r"await inbox\.await_up"):
            conn.await_up(WAIT)
        with pytest.raises(tether.OwnerError, match="not to this AsyncInbox"):
            await other.await_up(conn, WAIT)
        await inbox.await_up(conn, WAIT)

    run(main())


def test_an_async_inbox_needs_a_loop() -> None:
    with pytest.raises(RuntimeError, match="running event loop"):
        tether.AsyncInbox()


def test_drain_waits_for_room_in_the_send_buffer_instead_of_blocking_the_loop(
    open_conn: ConnectionTracker,
) -> None:
    peer = RawPeer(ws_reads_nothing)  # upgrades, then reads nothing: the buffer fills

    async def main() -> int:
        inbox = tether.AsyncInbox()
        # A send that waited for room would block the loop for send_timeout (60 s).
        conn = open_conn(
            "127.0.0.1", peer.port, owner=inbox, retry=0, send_buffer=64 * 1024, send_timeout=60.0
        )
        await inbox.await_up(conn, WAIT)
        stream = conn.ws_upgrade("/")
        assert isinstance(await inbox.await_(conn, stream, WAIT), tether.Upgrade)
        sent = 0
        try:
            while sent < 10_000:
                await inbox.drain(conn, 0.2)
                conn.ws_send(b"x" * 16384)
                sent += 1
        except tether.SendTimeout:
            return sent  # drain gave up: no send ever waited (it would for 60 s)
        finally:
            conn.close()
        raise AssertionError("the send buffer never filled")

    try:
        sent = run(main())
        assert isinstance(sent, int)
        assert sent > 4  # 64 KiB of 16 KiB messages went before it filled
    finally:
        peer.close()


def test_a_socket_the_loop_reads_goes_back_to_tether_when_the_owner_changes(
    connect: Connect,
) -> None:
    loop = asyncio.new_event_loop()
    try:
        inbox = tether.AsyncInbox(loop=loop)
        conn = connect(owner=inbox, retry=0)

        def borrowed() -> bool:
            return any(fd >= 0 for fd in inbox._lending._lent.values())

        async def upgraded() -> tether.StreamRef:
            await inbox.await_up(conn, WAIT)
            stream = conn.ws_upgrade("/websocket")
            assert isinstance(await inbox.await_(conn, stream, WAIT), tether.Upgrade)
            # Each wait borrows the socket unless the I/O thread is reading it
            # just then: echo until one did (at most 50 times).
            for _ in range(50):
                conn.ws_send("one")
                assert isinstance(await inbox.await_(conn, stream, WAIT), tether.Ws)
                if borrowed():
                    break
            return stream

        stream = loop.run_until_complete(asyncio.wait_for(upgraded(), 30.0))
        assert borrowed()  # the loop reads it
        # The loop does not run any more: a plain Inbox's thread must get the echo.
        conn.set_owner(tether.Inbox())
        conn.ws_send("two")
        echo = conn.await_(stream, WAIT)
        assert isinstance(echo, tether.Ws)
        assert echo.frame == tether.Text("two")
        conn.close()
    finally:
        loop.close()


def test_a_socket_withdrawn_while_the_loop_stops_is_still_closed() -> None:
    """A connection closed from another thread just as its loop stops ends its socket.

    The loop reads the socket through a duplicate descriptor; a socket
    withdrawn while the loop runs is forgotten at the loop's next turn,
    which a loop that stops first never takes. The server must still see
    the connection end (the duplicate would keep it open).
    """
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    loop = asyncio.new_event_loop()
    conn: tether.Connection | None = None
    try:
        inbox = tether.AsyncInbox(loop=loop)
        conn = tether.open("127.0.0.1", listener.getsockname()[1], owner=inbox, retry=0)
        peer, _ = listener.accept()
        peer.settimeout(WAIT)

        async def borrowed() -> None:
            assert await inbox.await_up(conn, WAIT) == "http"
            with pytest.raises(tether.ReceiveTimeout):
                await inbox.receive(0.05)  # a wait: the loop borrows the socket

        loop.run_until_complete(asyncio.wait_for(borrowed(), 30.0))
        assert any(fd >= 0 for fd in inbox._lending._lent.values())

        def close_then_stop() -> None:
            # On the loop's thread, while it runs: the close comes from another one.
            closer = threading.Thread(target=conn.close)
            closer.start()
            closer.join(WAIT)
            assert conn.wait_stopped(WAIT)
            loop.stop()  # before the turn that would forget the duplicate

        loop.call_soon(close_then_stop)
        loop.run_forever()
    finally:
        loop.close()  # as asyncio.run() ends
    with peer:
        assert peer.recv(1) == b""  # the end of the connection, not a timeout
    listener.close()
