"""Log every phase of a connection's life with the ``logging`` module.

``tether.open(..., event_handler=...)`` calls the handler inside the
connection actor as ``handler(name, data)`` at each phase (Gun's
``event_handler``). This one logs connects, disconnects and the end of the
connection at INFO and everything else at DEBUG. Keep a handler quick, and
let it raise only on purpose: an exception crashes the connection actor,
and its supervisor restarts it.

Run it: ``python examples/logging_event_handler.py``
"""

from __future__ import annotations

import logging
from typing import Any

import tether
from tether.server import Server

log = logging.getLogger("tether.example")

INFO_PHASES = frozenset({"connect_end", "disconnect", "terminate"})


def log_event(name: str, data: dict[str, Any]) -> None:
    """An ``event_handler``: log the phase name and its data."""
    level = logging.INFO if name in INFO_PHASES else logging.DEBUG
    log.log(level, "%s %r", name, data)


def main() -> int:
    """GET / from the embedded server, with every phase logged; return 0 on success."""
    with Server() as server:
        conn = tether.open(server.host, server.port, retry=0, event_handler=log_event)
        try:
            conn.await_up()
            body = conn.await_body(conn.get("/"))
            log.info("GET / answered %r", body)
        finally:
            conn.close()
            conn.wait_stopped(5.0)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)-5s %(name)s: %(message)s")
    log.setLevel(logging.DEBUG)
    raise SystemExit(main())
