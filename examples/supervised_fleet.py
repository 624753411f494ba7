"""A supervised fleet of connections, the service-mesh case: one crashes, only it restarts.

A service talks to several others, one connection each, all under one
:class:`tether.Supervisor` (``one_for_one``: a crash restarts the crashed
connection only). Here a bug in an ``event_handler`` (a metrics hook that
cannot handle a 500) crashes the ``orders`` connection: its supervisor
restarts it with the same options and owner, the owner sees ``Down``
(reason :class:`tether.Crashed`) then ``Up``, the ``Connection`` handle
keeps working, and ``billing`` and ``search`` never notice.

Every connection shares one :class:`tether.Inbox` as owner; the ``await_*``
calls of each handle pick that connection's events out of it.

Run it: ``python examples/supervised_fleet.py`` (it starts the embedded
server), or ``python examples/supervised_fleet.py HOST PORT``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import tether
from tether.server import Server

SERVICES = ("billing", "orders", "search")


def metrics_hook(name: str, data: dict[str, Any]) -> None:
    """An ``event_handler`` with a bug: it cannot count a 500 (it raises)."""
    if name == "response_start" and data["status"] >= 500:
        raise RuntimeError(f"metrics hook cannot handle status {data['status']}")


def run(host: str, port: int) -> int:
    """Open the fleet, crash ``orders``, check it alone was restarted; 0 on success."""
    sup = tether.Supervisor.start(strategy="one_for_one", max_restarts=3, period=10.0)
    inbox = tether.Inbox()
    fleet = {
        name: tether.open(host, port, owner=inbox, supervisor=sup, event_handler=metrics_hook)
        for name in SERVICES
    }
    try:
        for name, conn in fleet.items():
            print(f"{name}: up ({conn.await_up()})")

        orders = fleet["orders"]
        orders.get("/status/500")  # the hook raises inside the connection actor
        down = inbox.receive(5.0, lambda m: isinstance(m, tether.Down) and m.conn is orders)
        assert isinstance(down, tether.Down)
        print(f"orders: down, {type(down.reason).__name__}: {down.reason}")
        print(f"orders: restarted, up again ({orders.await_up()})")

        for name, conn in fleet.items():  # the same handles work, the others were untouched
            body = conn.await_body(conn.get("/"))
            print(f"{name}: GET / -> {body!r}")
        restarts = [child.restarts for child in sup.which_children()]
        print(f"restarts per child: {restarts}")
        others_quiet = not inbox.flush(lambda m: isinstance(m, tether.Down))
        return 0 if restarts == [0, 1, 0] and others_quiet else 1
    finally:
        sup.stop()  # stops the connections, in reverse start order
        for conn in fleet.values():
            conn.wait_stopped(5.0)
        inbox.close()


def main(argv: Sequence[str] = ()) -> int:
    """Run against ``HOST PORT`` if given, else against the embedded server."""
    if argv:
        return run(argv[0], int(argv[1]))
    with Server() as server:
        return run(server.host, server.port)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
