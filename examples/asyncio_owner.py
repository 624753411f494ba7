"""tether from asyncio: connections owned by a ``tether.AsyncInbox``, awaited from coroutines.

An ``AsyncInbox`` is the Inbox of an event loop: give it as ``owner=`` and
``await`` its events: ``inbox.receive(timeout, match)`` (selective receive),
and Gun's ``await`` functions as coroutines, ``inbox.await_up(conn)``,
``inbox.await_(conn, stream)`` and ``inbox.await_body(conn, stream)``. Here
one loop runs three fetches at once, each on a connection of its own, and a
Websocket echo; nothing blocks the loop.

Run it: ``python examples/asyncio_owner.py`` (it starts the embedded
server), or ``python examples/asyncio_owner.py HOST PORT``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

import tether
from tether.server import Server


async def fetch(host: str, port: int, path: str) -> bytes:
    """One connection, one GET, its whole body."""
    inbox = tether.AsyncInbox()
    conn = tether.open(host, port, owner=inbox)
    try:
        await inbox.await_up(conn)
        return await inbox.await_body(conn, conn.get(path))
    finally:
        conn.close()


async def echo(host: str, port: int) -> None:
    """Upgrade, send two frames, receive their echoes in order."""
    inbox = tether.AsyncInbox()
    conn = tether.open(host, port, owner=inbox)
    try:
        await inbox.await_up(conn)
        stream = conn.ws_upgrade("/websocket")
        assert isinstance(await inbox.await_(conn, stream), tether.Upgrade)
        conn.ws_send([tether.Text("Hello!"), tether.Binary(b"\x00\x01")])
        for _ in range(2):
            # Selective receive: this Websocket's frames, whatever else is queued.
            event = await inbox.receive(5.0, match=lambda m: isinstance(m, tether.Ws))
            assert isinstance(event, tether.Ws)
            print("echo:", event.frame)
    finally:
        conn.close()


async def run(host: str, port: int) -> int:
    """Three fetches at once on one loop, then the echo; 0 on success."""
    bodies = await asyncio.gather(*(fetch(host, port, f"/delay/{10 * n}") for n in range(3)))
    print("fetched at once:", bodies)
    await echo(host, port)
    return 0


def main(argv: Sequence[str] = ()) -> int:
    """Run against ``HOST PORT`` if given, else against the embedded server."""
    if argv:
        return asyncio.run(run(argv[0], int(argv[1])))
    with Server() as server:
        return asyncio.run(run(server.host, server.port))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
