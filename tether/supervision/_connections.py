"""``tether.open``: a connection actor started as a child of a supervisor.

The child spec restarts the connection actor with the same handle, options
and owner after a crash (``transient``: retries running out or ``close()``
are normal exits, not restarted), and re-attaches the handle to each new
generation, so the ``Connection`` the user holds stays valid.
"""

from __future__ import annotations

import itertools
from typing import Any

import pykka

from tether.actors import Connection, ConnectionActor, Owner
from tether.actors._handle import open_connection
from tether.supervision._default import CONNECTION_BUDGET, default_supervisor
from tether.supervision._spec import ChildSpec
from tether.supervision._supervisor import Supervisor

__all__ = ["open"]

_ids = itertools.count(1)


def open(
    host: str,
    port: int,
    owner: Owner | None = None,
    *,
    supervisor: Supervisor | None = None,
    **options: Any,
) -> Connection:
    """Open a connection to ``host:port`` (Gun's ``gun:open``). Thread-safe.

    Returns at once with a [`Connection`][tether.Connection], without waiting for
    the connection actor to start: the supervisor starts it in the
    background, commands given meanwhile are kept for it in order, and
    connecting succeeds with an ``Up`` event to the owner. The connection
    actor runs under ``supervisor`` (the process-wide default one if None),
    which restarts it, with the same handle, if it crashes. If the
    supervisor cannot start it (it stopped in the meantime, or the start
    fails), the handle stops and the owner is told ``Error(conn, None,
    reason)``, like any other end of the connection.

    Args:
        host: host name or IP address.
        port: TCP port.
        owner: who is told the events: a ``pykka.ActorRef``, a
            [`Inbox`][tether.Inbox], or anything with ``tell(message)``.
            Default: a new Inbox, reachable as ``conn.inbox``.
        supervisor: a [`Supervisor`][tether.Supervisor] to run under.
        **options: ``transport`` (``"tcp"``/``"tls"``), ``tls_context``,
            ``connect_timeout``, ``domain_lookup_timeout``,
            ``tls_handshake_timeout``, ``retry`` (5), ``retry_timeout`` (5.0),
            ``retry_backoff``, ``http_opts``, ``ws_opts`` (dicts or
            [`HttpOpts`][tether.HttpOpts]/[`WsOpts`][tether.WsOpts]),
            ``event_handler``.

    Raises:
        TypeError: an unknown option, or an option of the wrong type.
        ValueError: an option with a wrong value (the message names it).
        SupervisorStopped: ``supervisor`` has stopped.
    """
    if supervisor is not None and not isinstance(supervisor, Supervisor):
        raise TypeError(f"supervisor must be a tether.Supervisor, not {type(supervisor).__name__}")

    def start_under_supervisor(conn: Connection) -> None:
        def start_generation() -> pykka.ActorRef[Any]:
            # Each generation adopts the handle as it is built (commands
            # given so far go to it first).
            return ConnectionActor.start(conn)

        parent = supervisor or default_supervisor()
        budget = CONNECTION_BUDGET if supervisor is None else (None, 5.0)
        # Told, not asked: open() returns before the actor exists; a start
        # that fails ends the handle through on_exit (an Error to the owner).
        parent.start_child_later(
            ChildSpec(
                id=f"connection-{next(_ids)}-{host}:{port}",
                start=start_generation,
                restart="transient",
                max_restarts=budget[0],
                period=budget[1],
                on_exit=conn._on_exit,
            )
        )

    return open_connection(host, port, owner, start_under_supervisor, **options)
