"""A pykka actor as the owner of a connection: Gun's Websocket guide, actor style.

The actor opens the connection in ``on_start`` with itself as the owner,
upgrades on ``Up``, greets on ``Upgrade`` and collects the echoes: every
step is a reaction to an event in ``on_receive``, as an Erlang process
reacts to Gun's messages.

Run it: ``python examples/owner_actor.py`` (it starts the embedded server).
"""

from __future__ import annotations

import queue
from typing import Any

import pykka

import tether
from tether.server import Server


class Chat(pykka.ThreadingActor):
    """Upgrades, says hello, and reports what the server echoed."""

    def __init__(self, port: int, received: queue.Queue[str]) -> None:
        super().__init__()
        self.port = port
        self.received = received
        self.conn: tether.Connection | None = None

    def on_start(self) -> None:
        self.conn = tether.open("127.0.0.1", self.port, owner=self.actor_ref)

    def on_stop(self) -> None:
        if self.conn is not None:
            self.conn.close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case tether.Up(conn=conn, protocol="http"):
                conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
            case tether.Upgrade(conn=conn):
                conn.ws_send([tether.Text("Hello!"), tether.Text("How are you?")])
            case tether.Ws(frame=tether.Text(data=text)):
                self.received.put(text)
            case tether.Response(status=status):
                self.received.put(f"upgrade refused: {status}")
            case tether.Error(reason=reason):
                self.received.put(f"error: {reason!r}")
            case _:
                return super().on_receive(message)
        return None


def main() -> int:
    """Run the chat against the embedded server; 0 if both echoes came back."""
    received: queue.Queue[str] = queue.Queue()
    with Server() as server:
        chat = Chat.start(server.port, received)
        try:
            echoes = [received.get(timeout=5.0) for _ in range(2)]
        finally:
            chat.stop(timeout=5.0)
    print("echoed:", echoes)
    return 0 if echoes == ["Hello!", "How are you?"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
