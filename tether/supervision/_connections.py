"""``tether.open`` and ``tether.open_unix``: a connection actor started as a child of a supervisor.

The child spec restarts the connection actor with the same handle, options
and owner after a crash (``transient``: retries running out or ``close()``
are normal exits, not restarted), and re-attaches the handle to each new
generation, so the ``Connection`` the user holds stays valid. With
``supervise=False`` (Gun's ``supervise => false``) the actor is started
directly and nothing restarts it: a crash is the end of the connection.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from typing import Any

import pykka

from tether.actors import Connection, ConnectionActor, Owner
from tether.actors._handle import open_connection, open_unix_connection
from tether.actors._supervised import unsupervised
from tether.supervision._default import CONNECTION_BUDGET, default_supervisor
from tether.supervision._spec import ChildSpec
from tether.supervision._supervisor import Supervisor

__all__ = ["open", "open_unix"]

_ids = itertools.count(1)


def open(
    host: str,
    port: int,
    owner: Owner | None = None,
    *,
    supervisor: Supervisor | None = None,
    supervise: bool = True,
    **options: Any,
) -> Connection:
    """Open a connection to ``host:port`` (Gun's ``gun:open``). Thread-safe.

    Returns with a [`Connection`][tether.Connection] without waiting for the
    network or a thread: while the supervisor is idle this thread builds
    the connection actor and begins a non-blocking connect (about half a
    millisecond), otherwise the supervisor does it in the background;
    commands given meanwhile are kept for it in order, and connecting
    succeeds with an ``Up`` event to the owner. The connection
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
        supervise: ``False`` (Gun's ``supervise => false``) starts the
            connection actor directly, under no supervisor: nothing restarts
            it, so a crash (an exception escaping it, e.g. from the
            ``event_handler``) ends the connection: the owner gets ``Down``
            (if it was up) and a final ``Error(conn, None, Crashed(...))``.
            Reconnects after a lost connection (``retry``) work as ever.
        **options: ``transport`` (``"tcp"``/``"tls"``), ``tls_context``, ``server_hostname``,
            ``connect_timeout``, ``domain_lookup_timeout``,
            ``tls_handshake_timeout``, ``retry`` (5), ``retry_timeout`` (5.0),
            ``retry_backoff``, ``http_opts``, ``ws_opts`` (dicts or
            [`HttpOpts`][tether.HttpOpts]/[`WsOpts`][tether.WsOpts]),
            ``event_handler``, ``proxy`` (a URL: ``"http://user:pass@host:3128"``,
            ``"https://..."``, ``"socks5://..."``, ``"socks5h://..."``; ``"env"``
            reads ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY``;
            see ``docs/proxies.md``), ``proxy_tls_context``.

    Raises:
        TypeError: an unknown option, or an option of the wrong type.
        ValueError: an option with a wrong value (the message names it), or
            ``supervise=False`` with a ``supervisor``.
        SupervisorStopped: ``supervisor`` has stopped.
    """
    start = _starter(f"{host}:{port}", supervisor, supervise)
    return open_connection(host, port, owner, start, **options)


def open_unix(
    path: str | os.PathLike[str],
    owner: Owner | None = None,
    *,
    supervisor: Supervisor | None = None,
    supervise: bool = True,
    **options: Any,
) -> Connection:
    """Open a connection to the Unix domain socket ``path`` (Gun's ``gun:open_unix``). Thread-safe.

    Everything else is [`tether.open`][tether.open]'s: HTTP/1.1 and
    Websocket, the same options (``transport="tls"`` runs TLS over the
    socket), reconnects, supervision. As in Gun, the origin is
    ``localhost``: requests carry ``host: localhost`` and TLS verifies the
    name ``localhost``; ``conn.info()`` has ``host="localhost"``,
    ``port=80`` (443 with TLS) and ``unix_path=path``. A missing socket
    file or one nobody listens on is a failed attempt like a refused TCP
    port (a ``FileNotFoundError``/``ConnectionRefusedError`` naming the
    path), retried per ``retry``.

    Args:
        path: the socket's path (``str`` or ``os.PathLike``; at most 107
            bytes on Linux). A leading NUL names a Linux abstract socket.
        owner: as for [`tether.open`][tether.open].
        supervisor: as for [`tether.open`][tether.open].
        supervise: as for [`tether.open`][tether.open].
        **options: as for [`tether.open`][tether.open].

    Raises:
        TypeError: ``path`` is not a path, an unknown option, or an option
            of the wrong type.
        ValueError: ``path`` is empty or too long, an option with a wrong
            value, or ``supervise=False`` with a ``supervisor``.
        SupervisorStopped: ``supervisor`` has stopped.
    """
    start = _starter(f"unix:{path}", supervisor, supervise)
    return open_unix_connection(path, owner, start, **options)


def _starter(
    where: str, supervisor: Supervisor | None, supervise: bool
) -> Callable[[Connection], None]:
    """How ``open`` starts the connection actor: under a supervisor, or alone."""
    if not isinstance(supervise, bool):
        raise TypeError(f"supervise must be True or False, not {type(supervise).__name__}")
    if supervisor is not None and not isinstance(supervisor, Supervisor):
        raise TypeError(f"supervisor must be a tether.Supervisor, not {type(supervisor).__name__}")
    if not supervise:
        if supervisor is not None:
            raise ValueError("supervise=False starts no supervisor child: drop supervisor=")
        return _start_alone
    return lambda conn: _start_under(conn, where, supervisor)


def _start_alone(conn: Connection) -> None:
    # Built outside any supervisor's start context (open() may be called from
    # a supervised actor's constructor), so the actor reports to nobody.
    with unsupervised():
        ConnectionActor.start(conn)


def _start_under(conn: Connection, where: str, supervisor: Supervisor | None) -> None:
    def start_generation() -> pykka.ActorRef[Any]:
        # Each generation adopts the handle as it is built (commands
        # given so far go to it first).
        return ConnectionActor.start(conn)

    parent = supervisor or default_supervisor()
    budget = CONNECTION_BUDGET if supervisor is None else (None, 5.0)
    # Told, not asked: open() returns at once; a start that fails ends the
    # handle through on_exit (an Error to the owner). While the supervisor
    # is idle this thread starts the actor itself, else the supervisor does.
    parent._start_connection_later(
        ChildSpec(
            id=f"connection-{next(_ids)}-{where}",
            start=start_generation,
            restart="transient",
            max_restarts=budget[0],
            period=budget[1],
            on_exit=conn._on_exit,
        )
    )
