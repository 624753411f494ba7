"""GETs/s from 8 threads: a tether pool of 8 connections next to urllib3's PoolManager.

Issue 23's target: a pool of 8 HTTP/1.1 connections, GETs/s from 8
threads, at least 1.0x urllib3's ``PoolManager`` with 8 connections on the
same server (the Node echo server's plain HTTP port: ``GET /`` -> 200
``hello``, keep-alive). Each thread receives its own streams in an Inbox
of its own (``reply_to``). Rounds alternate the two clients::

    bench/.venv/bin/python bench/pool.py --rounds 5 --count 1000

Run it with ``bench/.venv``'s Python (``python bench/run.py`` creates it),
or any Python with tether and urllib3 installed.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable

import urllib3
from run import echo_server, ensure_node_modules

import tether

THREADS = 8


def rate(one: Callable[[], None], count: int) -> float:
    """Operations per second of ``THREADS`` threads running ``one`` ``count`` times each."""
    start = threading.Barrier(THREADS + 1)
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            for _ in range(count):
                one()
        except BaseException as exc:  # reported below: a failed round measures nothing
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} thread(s) failed") from errors[0]
    return THREADS * count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=1000, help="GETs per thread per round")
    args = parser.parse_args()
    with echo_server(ensure_node_modules()) as (_, http_port):
        pool = tether.start_pool("127.0.0.1", http_port, size=THREADS)
        pool.await_up()
        inboxes = threading.local()

        def tether_get() -> None:
            inbox = getattr(inboxes, "inbox", None)
            if inbox is None:
                inbox = inboxes.inbox = tether.Inbox()
            if pool.await_body(pool.get("/", reply_to=inbox)) != b"hello":
                raise AssertionError("unexpected body")

        manager = urllib3.PoolManager(maxsize=THREADS, block=True)
        url = f"http://127.0.0.1:{http_port}/"

        def urllib3_get() -> None:
            if manager.request("GET", url).data != b"hello":
                raise AssertionError("unexpected body")

        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(rate(tether_get, args.count))
            theirs.append(rate(urllib3_get, args.count))
            print(f"tether pool {ours[-1]:8.0f}/s   urllib3 {theirs[-1]:8.0f}/s", flush=True)
        pool.stop()
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(
        f"median: tether pool {statistics.median(ours):.0f}/s, urllib3 "
        f"{statistics.median(theirs):.0f}/s, ratio {ratio:.2f}x"
    )


if __name__ == "__main__":
    main()
