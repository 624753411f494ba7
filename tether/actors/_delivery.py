"""Telling the owner: one seam for every kind of owner, and for ``reply_to`` targets.

A connection tells its owner every event (Gun's messages), and a stream
opened with ``reply_to`` tells that target its own events instead. How
depends on the target, chosen once per (connection, target) by
:func:`delivery_for`:

- a :class:`~tether.Inbox` or an :class:`~tether.AsyncInbox` (the same
  methods): a read's events in one batch
  (:meth:`Inbox.tell_all <tether.Inbox.tell_all>`), one wake-up of the owner;
  the Inbox counts what it holds and what is taken against the
  connection's :class:`~tether.actors._backlog.Backlog`;
- an :class:`~tether.OwnerActor`'s ``ActorRef``: as an Inbox (its pykka
  mailbox is one), once the actor is checked alive;
- a :class:`~tether.PooledOwnerActor`'s ``ActorRef``: as an Inbox too (its
  mailbox keeps an Inbox's store and schedules the actor on its pool);
- any other ``pykka.ActorRef``: one message per event in the actor's pykka inbox;
  a counted event goes in an envelope of tether's (:class:`_Receipt`) that
  counts it taken when the owner's loop picks it up;
- anything else with ``tell``: ``tell(event)``, one by one, without a
  receive bound (tether cannot know what such an owner has taken);
- a callable (a ``reply_to`` only, Gun's ``fun``): called with each event,
  in the connection's context, like an ``event_handler``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pykka
from pykka._envelope import Envelope  # what ActorRef.tell puts (private, but stable)

from tether._events import Event
from tether._locks import Rank, new_lock
from tether.actors._async_inbox import AsyncInbox
from tether.actors._backlog import Backlog, weight
from tether.actors._inbox import Inbox
from tether.actors._owner import OwnerMailbox
from tether.actors._pooled import PooledMailbox

__all__ = ["NOBODY", "Delivery", "delivery_for", "inbox_of"]


class Delivery:
    """How a connection tells one target. Called by the connection actor's turn only.

    ``target`` is what the user gave (the owner, a ``reply_to``); ``inline``
    whether a thread that tells the connection may run it (tells that
    return at once, and no user code: see ``ConnectionActor``).
    """

    backlog: Backlog | None = None
    target: Any = None
    inline = False

    def release(self) -> None:
        """The connection is done with this target (it stopped, or the owner changed)."""

    def monitor(self, closed: Callable[[], None]) -> None:
        """Call ``closed()`` when the target goes, if it can say so (an Inbox, tether's actors).

        For the other targets the connection's owner check looks (every
        ``OWNER_CHECK_INTERVAL``): pykka tells nobody when an actor stops.
        """

    def tell(self, event: Event) -> None:
        """Tell one event; raise ``pykka.ActorDeadError`` or ``InboxClosedError`` if it is gone."""
        raise NotImplementedError

    def tell_all(self, events: list[Event]) -> None:
        """Tell what one read or command produced, in order (raises as :meth:`tell`)."""
        raise NotImplementedError


class _ToInbox(Delivery):
    inline = True

    def __init__(self, inbox: Inbox | AsyncInbox, conn: object, backlog: Backlog | None) -> None:
        self._inbox = inbox
        self._conn = conn
        self.backlog = backlog
        self.target = inbox

    def release(self) -> None:
        if self.backlog is not None:
            self._inbox.release(self._conn)
        self._inbox.demonitor(self._conn)

    def monitor(self, closed: Callable[[], None]) -> None:
        self._inbox.monitor(self._conn, closed)

    def tell(self, event: Event) -> None:
        self._inbox.tell(event)

    def tell_all(self, events: list[Event]) -> None:
        # One wake-up of the owner for all of them (a response's head and
        # body often arrive in one read): nothing runs between them.
        self._inbox.tell_all(events, self.backlog)


class _ToOwnerActor(_ToInbox):
    """An OwnerActor's or a PooledOwnerActor's: an Inbox, closed once the actor has stopped.

    Like ``ActorRef.tell``, a tell that comes just as the actor stops may
    be queued for nobody (here: until its loop's teardown closes the Inbox,
    right after ``on_stop``); the next one raises.
    """

    def __init__(
        self,
        ref: pykka.ActorRef[Any],
        inbox: Inbox | PooledMailbox,
        conn: object,
        backlog: Backlog | None,
    ) -> None:
        super().__init__(inbox, conn, backlog)  # type: ignore[arg-type]  # the same methods
        self.target = ref


class _ToNobody(Delivery):
    """The owner is gone (Gun: its monitor fired): events go nowhere while it closes."""

    inline = True

    def tell(self, event: Event) -> None:
        pass

    def tell_all(self, events: list[Event]) -> None:
        pass


NOBODY: Delivery = _ToNobody()


class _Receipt:
    """What goes into an owner actor's pykka inbox for a counted event.

    pykka's actor loop reads ``message`` once, when it takes the envelope
    to handle it, and ``reply_to`` (None: a tell): that read is the moment
    the owner takes the event. The same two attributes as pykka's own
    envelope (``test_a_slow_actor_owner_pauses_the_reads_and_can_be_stopped``
    in ``tests/actors/test_backpressure.py`` fails if pykka's loop stops
    reading it that way: the reads would never resume).
    """

    __slots__ = ("_backlog", "_event", "_size")

    reply_to = None

    def __init__(self, event: Event, backlog: Backlog, size: int) -> None:
        self._event = event
        self._backlog: Backlog | None = backlog
        self._size = size

    @property
    def message(self) -> Event:
        backlog = self._backlog
        if backlog is not None:
            self._backlog = None  # once, however often it is read
            lock = backlog.lock
            lock.acquire()  # type: ignore[attr-defined]  # not `with`: see Inbox.take (every event)
            try:
                backlog.take(self._size)
            finally:
                lock.release()  # type: ignore[attr-defined]
        return self._event


class _ToActor(Delivery):
    inline = True

    def __init__(self, ref: pykka.ActorRef[Any], backlog: Backlog | None) -> None:
        self._ref = ref
        self.backlog = backlog
        self.target = ref

    def tell(self, event: Event) -> None:
        self._ref.tell(event)

    def tell_all(self, events: list[Event]) -> None:
        backlog, ref = self.backlog, self._ref
        if backlog is None:
            for event in events:
                ref.tell(event)
            return
        # As ActorRef.tell checks, once for the batch (an actor that stops
        # meanwhile gets the rest queued for nobody, as with pykka's own race).
        if ref.actor_stopped.is_set():
            raise pykka.ActorDeadError(f"{ref} not found")
        lock = backlog.lock
        lock.acquire()  # type: ignore[attr-defined]  # before the owner can take one
        try:
            backlog.told(events)
        finally:
            lock.release()  # type: ignore[attr-defined]
        put = ref.actor_inbox.put
        for event in events:
            size = weight(event)
            # Both envelope-shaped (a _Receipt counts its event taken when read).
            envelope = Envelope(event) if size is None else _Receipt(event, backlog, size)
            put(envelope)  # type: ignore[arg-type]


class _ToAnyone(Delivery):
    def __init__(self, owner: Any) -> None:
        self._tell = owner.tell
        self.target = owner

    def tell(self, event: Event) -> None:
        self._tell(event)

    def tell_all(self, events: list[Event]) -> None:
        tell = self._tell
        for event in events:
            tell(event)


class _ToCallable(_ToAnyone):
    def __init__(self, function: Callable[[Event], object]) -> None:
        self._tell = function
        self.target = function


def delivery_for(
    target: Any, conn: object, max_events: int | None, max_size: int | None
) -> Delivery:
    """The delivery of ``conn``'s events to ``target``, bounded unless ``max_events`` is None.

    Only an Inbox or a ``pykka.ActorRef`` as they are get a bound (a
    subclass may have a ``tell`` of its own that takes the event at once).
    """
    kind = type(target)
    if kind is Inbox or kind is AsyncInbox:
        backlog = None if max_events is None else target.backlog(conn, max_events, max_size)
        return _ToInbox(target, conn, backlog)
    if kind is pykka.ActorRef:
        store = _owner_store(target.actor_inbox)
        if store is not None:  # a tether owner actor's
            backlog = None if max_events is None else store.backlog(conn, max_events, max_size)
            return _ToOwnerActor(target, store, conn, backlog)
        backlog = (
            None if max_events is None else Backlog(max_events, max_size, new_lock(Rank.BACKLOG))
        )
        return _ToActor(target, backlog)
    if callable(getattr(target, "tell", None)):
        return _ToAnyone(target)
    return _ToCallable(target)


def _owner_store(mailbox: object) -> Inbox | PooledMailbox | None:
    """Where a tether owner actor gets its events (an OwnerActor: its Inbox); None for others."""
    kind = type(mailbox)
    if kind is OwnerMailbox:
        return mailbox.inbox  # type: ignore[attr-defined, no-any-return]
    if kind is PooledMailbox:
        return mailbox  # type: ignore[return-value]
    return None


def inbox_of(target: Any) -> Inbox | None:
    """The Inbox ``target``'s events land in: an Inbox's own, an OwnerActor's mailbox's."""
    kind = type(target)
    if kind is Inbox:
        return target  # type: ignore[no-any-return]
    if kind is pykka.ActorRef and type(target.actor_inbox) is OwnerMailbox:
        return target.actor_inbox.inbox
    return None
