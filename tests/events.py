"""What many tests do with a connection's events: wait for the next one, or a stream's.

``expect`` and ``up`` read the owner Inbox in order (the next event must be
the one named); ``await_as`` and ``awaited_up`` use Gun's ``await``
functions (a stream's next event, and the ``Up``, skipping the others).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import tether

WAIT = 5.0

E = TypeVar("E")
Connect = Callable[..., tether.Connection]


def inbox(conn: tether.Connection) -> tether.Inbox:
    """The connection's default owner (it was opened without ``owner=``)."""
    assert conn.inbox is not None
    return conn.inbox


def expect(conn: tether.Connection, kind: type[E], timeout: float = WAIT) -> E:
    """The owner's next event, which must be a ``kind`` from ``conn``."""
    event = inbox(conn).receive(timeout=timeout)
    assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
    assert getattr(event, "conn", None) is conn
    return event


def up(connect: Connect, **options: Any) -> tether.Connection:
    """Open with ``connect``; its first event must be ``Up`` (HTTP)."""
    conn = connect(**options)
    assert expect(conn, tether.Up).protocol == "http"
    return conn


def awaited_up(connect: Connect, **options: object) -> tether.Connection:
    """Open with ``connect`` and ``await_up`` (Gun's ``gun:await_up``)."""
    conn = connect(**options)
    assert conn.await_up(WAIT) == "http"
    return conn


def await_as(conn: tether.Connection, stream: tether.StreamRef, kind: type[E]) -> E:
    """``await_(stream)``, which must give a ``kind`` (Gun's ``gun:await``)."""
    event = conn.await_(stream, WAIT)
    assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
    return event
