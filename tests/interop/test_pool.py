"""A pool against third-party servers: many concurrent requests, one connection cut mid-way.

Gun's rule for a lost connection: a stream sent and not fully answered is
killed (its ``reply_to`` gets an ``Error``), one not sent yet is kept and
sent after the reconnect. An HTTP/1.1 pool has at most one stream in
flight per connection, so cutting one connection fails at most one
request; every other request succeeds, and the pool recovers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

import tether
from tests.interop.servers import LoopServer, on_servers

THREADS = 8
REQUESTS = 200
DROP_AFTER = 50  # requests answered before one connection is cut
RESULT_WAIT = 30.0


@pytest.fixture
def pool(server: LoopServer, checked_lock_order: None) -> Iterator[tether.Pool]:
    # retry_timeout: the cut connection reconnects at once (Gun's default is 5 s).
    pool = tether.start_pool(server.host, server.port, size=4, retry_timeout=0.05)
    yield pool
    pool.stop()


def _is_lost_connection(error: BaseException) -> bool:
    return isinstance(error, tether.ConnectionClosed | ConnectionError)


@on_servers(websockets="serves Websocket only")
def test_200_concurrent_gets_one_connection_cut_the_rest_succeed_and_the_pool_recovers(
    server: LoopServer, pool: tether.Pool
):
    pool.await_up()
    first = pool.get("/")
    assert pool.await_body(first) == b"hello"  # so the server has accepted its connection
    victim = pool.connection_of(first)
    victim_address = victim.info().local_address
    assert victim_address is not None
    answered = threading.Semaphore(0)
    results: dict[int, bytes | BaseException] = {}
    carriers: dict[int, tether.Connection] = {}
    lock = threading.Lock()
    numbers = iter(range(REQUESTS))

    def worker() -> None:
        inbox = tether.Inbox()  # each thread receives its own streams
        while True:
            with lock:
                number = next(numbers, None)
            if number is None:
                return
            stream = pool.get("/", reply_to=inbox)
            carrier = pool.connection_of(stream)
            try:
                outcome: bytes | BaseException = pool.await_body(stream, timeout=RESULT_WAIT)
            except (tether.TetherError, OSError) as exc:
                outcome = exc
            with lock:
                results[number] = outcome
                carriers[number] = carrier
            answered.release()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for _ in range(DROP_AFTER):
        assert answered.acquire(timeout=RESULT_WAIT)
    assert server.drop_connection(victim_address[1])
    for thread in threads:
        thread.join(RESULT_WAIT)
        assert not thread.is_alive()

    assert len(results) == REQUESTS
    failed = {n: r for n, r in results.items() if isinstance(r, BaseException)}
    # At most the one request in flight on the cut connection failed, as a lost connection.
    assert len(failed) <= 1, failed
    for number, error in failed.items():
        assert carriers[number] is victim
        assert _is_lost_connection(error), repr(error)
    assert all(r == b"hello" for r in results.values() if not isinstance(r, BaseException))

    # The pool recovers: the cut connection (the same handle) is up again, on a
    # new socket, and every connection takes requests.
    pool.await_up(timeout=RESULT_WAIT)
    assert victim in pool.connections
    assert victim.info().local_address != victim_address
    streams = [pool.get("/") for _ in range(8)]
    assert [pool.await_body(s, timeout=RESULT_WAIT) for s in streams] == [b"hello"] * 8
    info = pool.info()
    assert info.state == "operational"
    assert [c.streams for c in info.connections] == [0, 0, 0, 0]


@on_servers(websockets="serves Websocket only")
def test_stopping_the_pool_closes_every_connection(server: LoopServer, pool: tether.Pool):
    pool.await_up()
    conns = pool.connections
    assert len(conns) == 4
    assert pool.await_body(pool.get("/")) == b"hello"
    pool.stop()
    assert not any(c.is_alive() for c in conns)
    assert pool.info().state == "stopped"
    with pytest.raises(tether.PoolStopped):
        pool.get("/")
