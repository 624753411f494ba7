"""A market-data style feed that survives outages: ``reupgrade`` and exponential backoff.

A feed client must come back by itself after the exchange drops it, and
subscribe again. tether does the reconnecting (``retry`` attempts, delays
drawn by :class:`tether.ExponentialBackoff`) and, with
``ws_opts={"reupgrade": True}``, the Websocket upgrade after each
reconnect; the owner re-subscribes on every ``Upgrade``, the one place
that is true after a first connect and after a reconnect alike.

The embedded server is an echo server, so it plays a very simple
exchange: it confirms a subscription by echoing it, and ``!drop`` (one of
its test commands) makes it drop the connection, which is the outage.

Run it: ``python examples/market_feed.py`` (it starts the embedded server),
or ``python examples/market_feed.py HOST PORT`` against ``tether serve``.
"""

from __future__ import annotations

import queue
import sys
from collections.abc import Sequence
from typing import Any

import pykka

import tether
from tether.server import Server

SYMBOL = "EURUSD"
OUTAGES = 2


class Outage:
    """Told to the feed by ``main``: ask the server to drop the connection."""


class Feed(pykka.ThreadingActor):
    """Keeps one subscription alive across reconnects; reports to ``log``."""

    def __init__(self, host: str, port: int, log: queue.Queue[str]) -> None:
        super().__init__()
        self.host, self.port, self.log = host, port, log
        self.conn: tether.Connection | None = None
        self.upgrade_asked = False

    def on_start(self) -> None:
        self.conn = tether.open(
            self.host,
            self.port,
            owner=self.actor_ref,
            retry=5,
            retry_backoff=tether.ExponentialBackoff(base=0.05, cap=1.0),
            ws_opts={"reupgrade": True},
        )

    def on_stop(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case tether.Up(conn=conn, protocol=protocol):
                self.log.put(f"up: {protocol}")
                if not self.upgrade_asked:  # after a reconnect, reupgrade repeats it
                    self.upgrade_asked = True
                    conn.ws_upgrade("/websocket")
            case tether.Upgrade(conn=conn):
                self.log.put(f"upgraded: subscribing to {SYMBOL}")
                conn.ws_send(tether.Text(f"subscribe {SYMBOL}"))
            case tether.Ws(frame=tether.Text(data=text)):
                self.log.put(f"confirmed: {text}")
            case tether.Down(reason=reason):
                self.log.put(f"down: {type(reason).__name__}, reconnecting with backoff")
            case tether.Error(reason=reason):
                self.log.put(f"error: {reason!r}")
            case Outage() if self.conn is not None:
                self.conn.ws_send(tether.Text("!drop"))
            case _:
                return super().on_receive(message)
        return None


def run(host: str, port: int) -> int:
    """Subscribe, survive ``OUTAGES`` dropped connections; 0 if each one was re-subscribed."""
    log: queue.Queue[str] = queue.Queue()
    feed = Feed.start(host, port, log)
    lines: list[str] = []
    try:
        for outage in range(OUTAGES + 1):
            while not (lines and lines[-1].startswith("confirmed")):
                lines.append(log.get(timeout=5.0))
                print(lines[-1])
            if outage < OUTAGES:
                feed.tell(Outage())
                lines.append(log.get(timeout=5.0))
                print(lines[-1])
    finally:
        feed.stop(timeout=5.0)
    confirmations = [line for line in lines if line == f"confirmed: subscribe {SYMBOL}"]
    return 0 if len(confirmations) == OUTAGES + 1 else 1


def main(argv: Sequence[str] = ()) -> int:
    """Run against ``HOST PORT`` if given, else against the embedded server."""
    if argv:
        return run(argv[0], int(argv[1]))
    with Server() as server:
        return run(server.host, server.port)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
