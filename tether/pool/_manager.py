"""The pool's manager: the owner of every pooled connection (Gun's ``gun_pool`` process).

A pykka actor that is told each connection's ``Up``, ``Down`` and final
``Error`` (the pool's streams go to their ``reply_to``, never here) and
keeps :class:`~tether.pool._slots.Slots` up to date. As Gun's manager
re-opens a connection whose process went down, it opens a new connection
in the place of one that stopped for good (its retries ran out), unless
the pool is stopping or its supervisor gave up. Callers never ask it
anything: they read the slots (a checkout takes a lock, not a message).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pykka

from tether._errors import SupervisorStopped
from tether._events import Down, Error, Up
from tether.actors import Connection
from tether.pool._slots import Slots

__all__ = ["PoolManager"]

log = logging.getLogger("tether.pool")


class PoolManager(pykka.ThreadingActor):
    """Owner of a pool's connections. Its state is the shared ``Slots`` (thread-safe)."""

    def __init__(self, slots: Slots, reopen: Callable[[], Connection]) -> None:
        super().__init__()
        self._slots = slots
        self._reopen = reopen

    def on_receive(self, message: Any) -> None:
        if isinstance(message, Up):
            self._slots.up(message.conn, message.protocol)
        elif isinstance(message, Down):
            self._slots.down(message.conn)
        elif isinstance(message, Error) and message.stream is None:
            self._error(message.conn, message.reason)

    def _error(self, conn: Connection, reason: BaseException) -> None:
        if conn.is_alive():
            return  # a connection-wide error it goes on after
        slots = self._slots
        slots.stopped_for_good(conn)
        if slots.stopped:
            return
        if isinstance(reason, SupervisorStopped):
            # The pool's supervisor gave up (its restart intensity): the
            # pool is done, as a supervisor tree's subtree is.
            log.warning("pool to %s:%s stopped: %r", slots.host, slots.port, reason)
            slots.stop(reason)
            self.stop()  # nothing left to own
            return
        # Gun's manager opens a new connection when one goes down for good.
        try:
            new = self._reopen()
        except SupervisorStopped as exc:
            slots.stop(exc)
            return
        if not slots.replace(conn, new):
            new.close()
