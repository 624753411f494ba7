"""Where a connection's events go: to the owner, or to a stream's ``reply_to`` while it lasts.

The connection actor hands every event its turn produces to one
:class:`Router`, which holds the owner's :class:`~tether.actors._delivery.Delivery`
and, by stream, the ``reply_to`` deliveries of the streams opened with
one. Telling never calls back into the actor: what it found that the
actor must act on comes back as flags, ``0`` when there is nothing to do
(the usual case):

- ``FULL``: a receive bound is reached (and not lifted by a selective
  receive): reading must pause;
- ``GONE``: the owner is gone. The router has dropped it already (its
  events go nowhere from now on, as Gun's do once the owner's monitor
  fired); the actor decides how the connection ends.

A ``reply_to`` target that is gone is not the owner: its stream's events
are dropped (nobody listens, as to a message sent to a dead Erlang
process) and the connection goes on.
"""

from __future__ import annotations

import logging
from typing import Any

import pykka

from tether._errors import InboxClosedError
from tether._events import Data, Error, Event, Response, StreamRef, Trailers
from tether.actors._delivery import NOBODY, Delivery

__all__ = ["FULL", "GONE", "Router", "ends_stream"]

log = logging.getLogger("tether.connection")

FULL = 1
"""Flag: a receive bound is reached, reading must pause."""

GONE = 2
"""Flag: the owner is gone (found now; the router no longer tells it)."""

# What a delivery raises when its target is gone.
_GONE_ERRORS = (pykka.ActorDeadError, InboxClosedError)


def ends_stream(event: Event) -> bool:
    """Whether ``event`` is a stream's last (an Upgrade is not: the Websocket goes on)."""
    kind = type(event)
    if kind is Response or kind is Data:
        return bool(event.fin)  # type: ignore[union-attr]
    return kind is Trailers or kind is Error


class Router:
    """The owner's delivery, and the ``reply_to`` deliveries of the streams that have one.

    Called by the connection actor's turn only. ``owner`` is the owner's
    delivery (``NOBODY`` once the owner is gone); a route lasts until its
    stream's last event, or until the connection is lost (:meth:`lost`).
    """

    __slots__ = ("_conn", "_routes", "owner")

    def __init__(self, conn: Any, owner: Delivery) -> None:
        self._conn = conn  # the handle, named by the Error events of lost()
        self.owner = owner
        self._routes: dict[StreamRef, Delivery] = {}

    @property
    def owner_gone(self) -> bool:
        """Whether the owner is gone (its events go nowhere)."""
        return self.owner is NOBODY

    def route(self, stream: StreamRef, reply_to: Delivery) -> None:
        """``stream``'s events go to ``reply_to`` until the stream ends."""
        self._routes[stream] = reply_to

    def target(self, stream: StreamRef) -> Any:
        """Where ``stream``'s events go: what the user gave (the owner, or its ``reply_to``)."""
        return self._routes.get(stream, self.owner).target

    def drop_owner(self) -> bool:
        """The owner is gone (its monitor noticed): False if it was gone already."""
        if self.owner is NOBODY:
            return False
        self.owner = NOBODY
        return True

    def tell(self, event: Event) -> int:
        """Tell the owner one event (not counted against its receive bound): 0 or ``GONE``."""
        try:
            self.owner.tell(event)
        except _GONE_ERRORS:
            return GONE if self.drop_owner() else 0
        return 0

    def tell_all(self, events: list[Event]) -> int:
        """Tell what one read or command produced, each stream's to its target: flags."""
        if self._routes:
            return self._tell_routed(events)
        return self._tell_owner(events)

    def tell_reply_to(self, delivery: Delivery, events: list[Event]) -> int:
        """Tell a stream's ``reply_to`` (dropped if it is gone): 0 or ``FULL``.

        Every event of a ``reply_to`` stream comes here, its last included
        (its run, a lost connection's ``Error``, a refused command's), so
        this is where the handle's ``_stream_ended`` watcher (a pool's) hears
        of each such stream's end.
        """
        ended = self._conn._stream_ended
        if ended is not None:
            for event in events:
                if ends_stream(event) and event.stream is not None:  # type: ignore[union-attr]
                    ended(event.stream)  # type: ignore[union-attr]
        try:
            delivery.tell_all(events)
        except _GONE_ERRORS:
            log.info("reply_to %r is gone: its stream's events are dropped", delivery.target)
            return 0
        backlog = delivery.backlog
        return FULL if backlog is not None and backlog.full and not backlog.lifted else 0

    def lost(self, streams: tuple[StreamRef, ...], reason: BaseException) -> None:
        """The connection is lost: every route ends, each of ``streams`` with an ``Error``.

        The owner learns it from the ``Down``; a stream's ``reply_to``, from
        an ``Error`` for its stream (Gun's ``{closed, Reason}``). No receive
        bound matters any more: the socket is closed.
        """
        routes, self._routes = self._routes, {}
        for stream in streams:
            target = routes.get(stream)
            if target is not None:
                self.tell_reply_to(target, [Error(self._conn, stream, reason)])

    def _tell_owner(self, events: list[Event]) -> int:
        owner = self.owner
        try:
            owner.tell_all(events)
        except _GONE_ERRORS:
            return GONE if self.drop_owner() else 0
        # Inline, not shared with tell_reply_to's: this runs for every read.
        backlog = owner.backlog
        return FULL if backlog is not None and backlog.full and not backlog.lifted else 0

    def _tell_routed(self, events: list[Event]) -> int:
        """Each stream's events to its target, in order, in runs of one target each."""
        routes, owner = self._routes, self.owner
        found = 0
        run: list[Event] = []
        target = owner
        for event in events:
            stream = getattr(event, "stream", None)
            to = routes.get(stream, owner) if stream is not None else owner
            if to is not target and run:
                found |= self._tell_run(target, owner, run)
                run = []
            target = to
            run.append(event)
            if stream is not None and to is not owner and ends_stream(event):
                del routes[stream]
        if run:
            found |= self._tell_run(target, owner, run)
        return found

    def _tell_run(self, target: Delivery, owner: Delivery, run: list[Event]) -> int:
        if target is owner:
            return self._tell_owner(run)  # NOBODY's once the owner went in an earlier run
        return self.tell_reply_to(target, run)
