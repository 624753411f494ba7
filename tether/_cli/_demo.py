"""``tether demo``: walk the Websocket chapter of Gun's guide against the embedded server.

``tether demo`` starts the embedded server on an ephemeral 127.0.0.1 port
and goes through the Websocket chapter of Gun's guide: Up, an HTTP GET,
the upgrade with the ``mychat`` subprotocol, a text frame, a list of
frames, a close frame, then Down and Up again (Gun reconnects after a
close, and speaks HTTP again). Each event is printed on one line. It exits
0 when every step saw the event it expected, 1 otherwise.
"""

from __future__ import annotations

import sys
from typing import TextIO

import tether
from tether._format import describe
from tether.server import Server

__all__ = ["demo"]

_STEP_TIMEOUT = 5.0


def _say(out: TextIO, line: str) -> None:
    out.write(line + "\n")


class DemoFailed(Exception):
    """A step of the demo did not see the event it waited for."""


class _Walk:
    """Receives and prints the events of one connection, step by step."""

    def __init__(self, conn: tether.Connection, out: TextIO) -> None:
        self.conn = conn
        self.inbox = conn.inbox
        assert self.inbox is not None
        self.out = out

    def say(self, text: str) -> None:
        _say(self.out, f"\n>> {text}")

    def expect(self, kind: type[tether.Event], what: str) -> tether.Event:
        """Print events until one of ``kind`` arrives; an Error first fails the step."""
        assert self.inbox is not None
        while True:
            try:
                event = self.inbox.receive(timeout=_STEP_TIMEOUT)
            except tether.ReceiveTimeout:
                raise DemoFailed(f"no {kind.__name__} within {_STEP_TIMEOUT} s ({what})") from None
            _say(self.out, f"   {describe(event)}")  # type: ignore[arg-type]
            if isinstance(event, kind):
                return event
            if isinstance(event, tether.Error):
                raise DemoFailed(f"{what}: {event.reason!r}")


def _demo_steps(walk: _Walk) -> None:
    conn = walk.conn
    walk.say(f"tether.open({conn.host!r}, {conn.port}): waiting for Up")
    walk.expect(tether.Up, "connect")

    walk.say('conn.get("/"): an HTTP request before the upgrade')
    stream = conn.get("/")
    event = walk.expect(tether.Response, "GET /")
    body = b""
    while not (isinstance(event, tether.Response | tether.Data) and event.fin):
        event = walk.expect(tether.Data, f"body of {stream!r}")
        assert isinstance(event, tether.Data)
        body += event.data
    _say(walk.out, f"   body: {body!r}")

    walk.say('conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])')
    conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    walk.expect(tether.Upgrade, "upgrade")

    walk.say('conn.ws_send(tether.Text("Hello!"))')
    conn.ws_send(tether.Text("Hello!"))
    walk.expect(tether.Ws, "echo of Hello!")

    frames: list[tether.Frame] = [tether.Text("one"), tether.Binary(b"two"), tether.Text("three")]
    walk.say(f"conn.ws_send({frames!r})")
    conn.ws_send(frames)
    for frame in frames:
        walk.expect(tether.Ws, f"echo of {frame!r}")

    walk.say("conn.ws_send(tether.Close()): a clean close, then tether reconnects")
    conn.ws_send(tether.Close())
    walk.expect(tether.Down, "close handshake")
    up = walk.expect(tether.Up, "reconnect")
    assert isinstance(up, tether.Up)
    _say(walk.out, f"   reconnected; speaking {up.protocol} again, not re-upgraded")


def demo(out: TextIO = sys.stdout) -> int:
    """Run the demo against the embedded server; return the exit status."""
    with Server() as server:
        conn = tether.open(server.host, server.port)
        try:
            _demo_steps(_Walk(conn, out))
        except (DemoFailed, tether.TetherError) as exc:
            _say(sys.stderr, f"\ndemo failed: {exc}")
            return 1
        finally:
            conn.close()
            conn.wait_stopped(_STEP_TIMEOUT)
    _say(out, "\ndemo finished: every step saw its event")
    return 0
