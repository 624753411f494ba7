"""OwnerActor: a pykka owner actor woken once per message, as an Inbox's thread is.

Why: a plain ``pykka.ThreadingActor`` owner is told each event through its
pykka inbox, a ``queue.Queue``: the I/O thread wakes in ``epoll_wait``,
reads the socket (running the connection actor inline) and puts the event
in that queue, whose condition variable then wakes the owner's thread.
Two thread wake-ups per message, where a thread waiting in an
:class:`~tether.Inbox` has one: it borrows its connection's socket and
reads it itself (:mod:`tether.actors._lending`).

:class:`OwnerActor` gives pykka's actor loop that Inbox as its mailbox
(:class:`OwnerMailbox`, pykka's ``_create_actor_inbox`` hook). When the
loop asks for its next message and none is queued, it waits in
:meth:`Inbox.take <tether.Inbox.take>`: while the actor owns exactly one
connection that thread borrows the socket, reads it, runs the connection
actor inline, and the events the connection tells land in the same Inbox,
which hands the first one back to the loop. No other thread wakes up.
What else is told to the actor (``tell``, ``ask``, proxies, ``stop``)
goes in the same Inbox, in order, and interrupts such a wait.

Connections deliver to it as to an Inbox (``tether.actors._delivery``):
a read's events in one batch, counted against the connection's receive
bound by the Inbox itself, so that no per-event envelope is made; the
loop is handed each event in a reusable envelope (:class:`_Letter`).
"""

from __future__ import annotations

from typing import Any

import pykka
from pykka._envelope import Envelope  # what ActorRef.tell and ask put (private, but stable)

from tether._errors import InboxClosedError
from tether.actors._inbox import DEFAULT_BUSY_POLL, Inbox

__all__ = ["InboxMailbox", "OwnerActor", "OwnerMailbox"]


class _Letter:
    """The envelope pykka's loop reads an event from: ``message``, ``reply_to`` (a tell).

    One per mailbox, filled anew for each event: pykka's loop reads both
    attributes before it asks for the next message, and only the thread
    running the actor asks.
    """

    __slots__ = ("message",)

    reply_to = None

    def __init__(self) -> None:
        self.message: object = None


class InboxMailbox:
    """pykka's ``ActorInbox`` on a :class:`~tether.Inbox`: what tether's owner actors share.

    Connections tell their events to the Inbox (in batches, counted against
    their receive bound); ``put`` adds pykka's envelopes (``tell``, ``ask``,
    ``stop``) behind them; the loop gets each event in a reusable letter.
    Subclasses say how the loop waits (``get``) and when the actor stopped.
    Thread-safe: ``put`` from any thread; ``get`` and ``empty`` by the
    thread running the actor only.
    """

    __slots__ = ("_letter", "inbox")

    def __init__(self, inbox: Inbox) -> None:
        #: Where connections tell their events, and ``put`` the rest.
        self.inbox = inbox
        self._letter = _Letter()

    def _has_stopped(self) -> bool:
        raise NotImplementedError

    def put(self, envelope: Envelope[Any], /) -> None:
        """Queue a pykka envelope (``tell``, ``ask``, ``stop``), after every event told before.

        Raises:
            pykka.ActorDeadError: the actor has stopped.
        """
        try:
            self.inbox.tell(envelope)
        except InboxClosedError:
            raise pykka.ActorDeadError("the owner actor has stopped") from None

    def _for_the_loop(self, message: object) -> Any:
        """``message`` as pykka's loop reads it: an envelope as it is, an event in the letter."""
        if type(message) is Envelope:
            return message
        letter = self._letter
        letter.message = message
        return letter

    def empty(self) -> bool:
        """True if nothing is queued; once the actor has stopped, closes the Inbox first.

        pykka's loop asks this first thing after it ended (its teardown):
        from then on connections find their owner gone (``InboxClosedError``)
        and ``put`` raises ``ActorDeadError``, and what was told before is
        still taken by the teardown.
        """
        if self._has_stopped() and not self.inbox.closed:
            self.inbox.close()
        return not len(self.inbox)


class OwnerMailbox(InboxMailbox):
    """pykka's ``ActorInbox`` for an :class:`OwnerActor`: its thread waits in the Inbox."""

    __slots__ = ("_stopped",)

    def __init__(self, busy_poll: float) -> None:
        super().__init__(Inbox(busy_poll=busy_poll))
        self._stopped: Any = None  # the actor's actor_stopped (bind)

    def bind(self, stopped: Any) -> None:
        """The actor's ``actor_stopped``, set when its loop ends (the constructor's)."""
        self._stopped = stopped

    def _has_stopped(self) -> bool:
        stopped = self._stopped
        return stopped is not None and bool(stopped.is_set())

    def get(self) -> Any:
        """The next message for the loop, waiting (and reading a borrowed socket) if none."""
        return self._for_the_loop(self.inbox.take(None, None))


class OwnerActor(pykka.ThreadingActor):
    """A ``pykka.ThreadingActor`` meant to own tether connections: one wake-up per message.

    Use it as the base class of an owner actor instead of
    ``pykka.ThreadingActor``; nothing else changes (``on_start``,
    ``on_receive``, ``tell``, ``ask``, proxies, ``stop``, supervision).
    While the actor owns exactly one connection and has nothing queued,
    its own thread waits on that connection's socket and reads it, the
    way a thread waiting in an [`Inbox`][tether.Inbox] does: each event
    wakes one thread instead of two (tether's I/O thread, then the
    actor's), and a message sent from ``on_receive`` in answer to an
    event is written by the actor's thread at once. An actor owning
    several connections (or none) works as a plain one does.

    Worth it for an actor that answers messages one at a time on one
    connection (a request/response or chat-like Websocket protocol); a
    plain ``pykka.ThreadingActor`` is as good for one that mostly waits.

    Attributes:
        busy_poll: seconds the actor's thread polls its borrowed socket
            before it sleeps, as [`Inbox`][tether.Inbox]'s `busy_poll`
            (50 µs by default; ``0`` never spins). A class attribute:
            set it in a subclass.

    Thread-safety: as any pykka actor. Its methods run on its own thread,
    one message at a time; use its ``ActorRef`` from any thread. Connection
    events and pykka messages reach ``on_receive`` in the order they were
    told.
    """

    busy_poll: float = DEFAULT_BUSY_POLL

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        mailbox: OwnerMailbox = self.actor_inbox  # type: ignore[assignment]
        mailbox.bind(self.actor_stopped)

    def _create_actor_inbox(self) -> OwnerMailbox:  # type: ignore[override]
        # pykka's hook, called by Actor.__init__ (an instance method here: it
        # reads the class's busy_poll).
        return OwnerMailbox(self.busy_poll)
