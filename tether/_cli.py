"""The ``tether`` command: ``demo`` walks the Gun guide's seed, ``serve`` runs the server.

``tether demo`` starts the embedded server on an ephemeral 127.0.0.1 port
and goes through the Websocket chapter of Gun's guide: Up, an HTTP GET,
the upgrade with the ``mychat`` subprotocol, a text frame, a list of
frames, a close frame, then Down and Up again (Gun reconnects after a
close, and speaks HTTP again). Each event is printed on one line. It exits
0 when every step saw the event it expected, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

import tether
from tether._format import describe
from tether.server import Server

__all__ = ["main"]

_STEP_TIMEOUT = 5.0


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
        print(f"\n>> {text}", file=self.out)

    def expect(self, kind: type[tether.Event], what: str) -> tether.Event:
        """Print events until one of ``kind`` arrives; an Error first fails the step."""
        assert self.inbox is not None
        while True:
            try:
                event = self.inbox.receive(timeout=_STEP_TIMEOUT)
            except tether.ReceiveTimeout:
                raise DemoFailed(f"no {kind.__name__} within {_STEP_TIMEOUT} s ({what})") from None
            print(f"   {describe(event)}", file=self.out)  # type: ignore[arg-type]
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
    print(f"   body: {body!r}", file=walk.out)

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
    print(f"   reconnected; speaking {up.protocol} again, not re-upgraded", file=walk.out)


def demo(out: TextIO = sys.stdout) -> int:
    """Run the demo against the embedded server; return the exit status."""
    with Server() as server:
        conn = tether.open(server.host, server.port)
        try:
            _demo_steps(_Walk(conn, out))
        except (DemoFailed, tether.TetherError) as exc:
            print(f"\ndemo failed: {exc}", file=sys.stderr)
            return 1
        finally:
            conn.close()
            conn.wait_stopped(_STEP_TIMEOUT)
    print("\ndemo finished: every step saw its event", file=out)
    return 0


def serve(host: str, port: int, out: TextIO = sys.stdout) -> int:
    """Run the embedded server until interrupted."""
    server = Server(host, port).start()
    print(
        f"tether server on {server.url} (Websocket echo at /websocket); Ctrl-C stops it",
        file=out,
        flush=True,
    )
    server.serve_forever()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tether", description="Gun for Python: an actor-based HTTP/Websocket client."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="walk Gun's Websocket guide against the embedded server")
    serve_p = sub.add_parser("serve", help="run the embedded HTTP/Websocket server")
    serve_p.add_argument("--host", default="127.0.0.1")
    serve_p.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tether`` command."""
    args = _parser().parse_args(argv)
    commands: dict[str, Callable[[], int]] = {
        "demo": demo,
        "serve": lambda: serve(args.host, args.port),
    }
    return commands[args.command]()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
