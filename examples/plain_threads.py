"""tether from plain threads: the default ``Inbox`` owner and Gun's ``await`` functions.

No actor of your own: ``tether.open`` without ``owner=`` gives the
connection a new :class:`tether.Inbox`, and ``await_up``, ``await_`` and
``await_body`` take that connection's events out of it, as ``gun:await``
and friends take ``gun_*`` messages out of the calling process's mailbox.
Every method of a ``Connection`` is thread-safe; here each worker thread
has a connection of its own, the simplest way to fetch in parallel.

Run it: ``python examples/plain_threads.py`` (it starts the embedded
server), or ``python examples/plain_threads.py HOST PORT``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence

import tether
from tether.server import Server


def requests(conn: tether.Connection) -> None:
    """HTTP with ``await_`` (one event at a time) and ``await_body`` (the whole body)."""
    print("GET / ->", conn.await_body(conn.get("/")))

    stream = conn.post("/echo", [("content-type", "text/plain")], b"a body")
    response = conn.await_(stream)
    assert isinstance(response, tether.Response)
    print("POST /echo ->", response.status, dict(response.headers)["x-method"])
    print("   body:", conn.await_body(stream))  # the rest of the stream, after await_

    stream = conn.headers("PUT", "/echo")  # a body sent in pieces (gun:headers + gun:data)
    conn.data(stream, False, b"one, ")
    conn.data(stream, True, b"two")
    print("PUT /echo in pieces ->", conn.await_body(stream))


def websocket(conn: tether.Connection) -> None:
    """Upgrade, then send and receive frames with ``await_``."""
    stream = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    upgrade = conn.await_(stream)
    assert isinstance(upgrade, tether.Upgrade)
    print("upgraded:", dict(upgrade.headers)["sec-websocket-protocol"])
    conn.ws_send([tether.Text("Hello!"), tether.Binary(b"\x00\x01")])
    for _ in range(2):
        echo = conn.await_(stream)
        assert isinstance(echo, tether.Ws)
        print("echo:", echo.frame)


def parallel(host: str, port: int, workers: int = 3) -> None:
    """Each worker thread opens its own connection, fetches, closes."""
    results: dict[int, bytes] = {}

    def work(n: int) -> None:
        conn = tether.open(host, port)
        try:
            conn.await_up()
            results[n] = conn.await_body(conn.get(f"/delay/{10 * n}"))
        finally:
            conn.close()
            conn.wait_stopped(5.0)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    print("parallel:", [results.get(n) for n in range(workers)])


def run(host: str, port: int) -> int:
    """Run the three parts; 0 on success."""
    conn = tether.open(host, port)  # owner: a new Inbox, conn.inbox
    try:
        print("up:", conn.await_up())
        requests(conn)
        websocket(conn)
    finally:
        conn.close()
        conn.wait_stopped(5.0)
    parallel(host, port)
    return 0


def main(argv: Sequence[str] = ()) -> int:
    """Run against ``HOST PORT`` if given, else against the embedded server."""
    if argv:
        return run(argv[0], int(argv[1]))
    with Server() as server:
        return run(server.host, server.port)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
