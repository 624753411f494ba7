"""A pykka actor inbox that lets the teller run an idle actor's message itself.

Why: a connection actor's message is mostly a thread hand-off. A small
Websocket round trip used to cross three threads (the caller tells the
actor to send, the I/O thread tells it what arrived, the actor tells the
owner), and waking the next thread was a third of the client's CPU time
(``docs/performance.md``). When the actor is idle, with nothing queued,
the thread that tells it a message can just as well handle it: the
message is handled at the same point in the actor's order as if it had
been queued, and no thread has to wake up.

The rule that keeps it an actor: **one message at a time, in mailbox
order**. Whoever handles a message holds the *turn*: the actor thread
from taking a message until it asks for the next one, or a teller running
messages inline. A teller takes the turn only if nobody holds it *and*
nothing is queued (so it cannot overtake a message told earlier);
otherwise its message is queued as pykka would. A message told while
someone holds the turn is queued without waking the actor thread: the
holder handles it when done with its own (a caller that sent a request
often handles the response that arrived meanwhile, and finds it in its
Inbox without any thread waking up), or hands over to the actor thread.
A message the actor tells itself while handling one is queued behind it,
as before.

What is never run inline: asks (their reply is a pykka future, answered
by the actor thread), pykka's own messages (stop, proxy calls), and what
the actor does not allow (:meth:`Mailbox.bind`'s ``accept``). A message
that raises while handled inline is handed to the actor thread, which
raises it again, so pykka's failure path (``on_failure``, the supervisor)
runs there as for any crash.

The actor decides what may run inline (:meth:`Mailbox.bind`'s ``accept``):
a connection allows it only when nothing it calls out to can block the
teller or run user code on the teller's thread (see ``ConnectionActor``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Mailbox", "Reraise"]


@dataclass(frozen=True, slots=True)
class Reraise:
    """Queued for the actor thread: a message handled inline raised ``error``."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class _Letter:
    """What pykka's actor loop reads from an envelope (its ``Envelope`` is private)."""

    message: object
    reply_to: None = None


Accept = Callable[[object], bool]
"""Whether a told message may be handled on the calling thread (called with the turn)."""

Handle = Callable[[object], None]
"""Handles one message on the calling thread (with the turn)."""

# How many messages queued during its turn a teller handles before it leaves
# the rest to the actor thread.
_MAX_HELPED = 16


class Mailbox:
    """A pykka ``ActorInbox`` whose tellers may run the actor while it is idle.

    Thread-safe: ``put`` and ``wait_queued`` from any thread; ``get``,
    ``take_all`` and ``requeue`` from the actor thread only.
    """

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        # The turn: True while a thread handles a message (the actor thread
        # between get() calls, or a teller running messages inline).
        self._busy = False
        self._actor_has_turn = False
        self._accept: Accept | None = None
        self._handle: Handle | None = None
        self._ready = False  # tellers may run messages (the loop runs, or allow_tellers)
        self._watchers = 0  # threads in wait_queued

    def bind(self, accept: Accept, handle: Handle) -> None:
        """Let tellers run messages that ``accept`` allows with ``handle``.

        The actor's ``on_receive`` must raise the ``error`` of a
        :class:`Reraise` it is given: that is how a crash in a message run
        inline reaches pykka's failure path on the actor thread.
        """
        self._accept = accept
        self._handle = handle

    def allow_tellers(self) -> None:
        """Let tellers run messages from now on, before the actor thread's first ``get``.

        Only for an actor whose messages do not depend on its ``on_start``
        (without it, tellers wait until the actor loop asks for a message).
        """
        self._ready = True

    # -- pykka's ActorInbox ------------------------------------------------------------

    def put(self, envelope: Any, /) -> None:
        """Run the message now if the actor is idle and allows it, else queue it."""
        with self._cond:
            if (
                self._busy
                or self._items
                or not self._ready
                or self._handle is None
                or envelope.reply_to is not None
            ):
                self._items.append(envelope)
                if self._watchers:
                    self._cond.notify_all()
                elif not self._busy:
                    self._cond.notify()  # else the thread with the turn sees it when done
                return
            self._busy = True  # the turn is ours: nothing queued, nobody handling
        self._run_turn(envelope)

    def get(self) -> Any:
        """The actor thread's next message: ends the previous turn, takes a new one."""
        with self._cond:
            if self._actor_has_turn:
                self._actor_has_turn = False
                self._busy = False
            self._ready = True
            while self._busy or not self._items:
                self._cond.wait()
            self._busy = True
            self._actor_has_turn = True
            return self._items.popleft()

    def empty(self) -> bool:
        """True if no message is queued."""
        return not self._items

    # -- for the actor thread ----------------------------------------------------------

    def take_all(self) -> list[Any]:
        """Take every queued message (the actor thread, during its turn)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
        return items

    def requeue(self, envelopes: list[Any]) -> None:
        """Put messages back in front of the queue, in their order (the actor thread)."""
        with self._cond:
            self._items.extendleft(reversed(envelopes))

    def wait_queued(self, match: Callable[[object], bool], timeout: float) -> bool:
        """Wait until a queued message matches (tests and diagnostics; any thread)."""
        with self._cond:
            self._watchers += 1
            try:
                return self._cond.wait_for(
                    lambda: any(match(e.message) for e in self._items), timeout
                )
            finally:
                self._watchers -= 1

    # -- inline ------------------------------------------------------------------------

    def _run_turn(self, envelope: Any) -> None:
        """With the turn: run ``envelope``, then what was queued meanwhile, then hand over.

        Messages told while this thread had the turn were queued without
        waking the actor thread; this thread handles them too (up to
        ``_MAX_HELPED``, so a busy connection cannot hold a shared thread
        for long), and wakes the actor thread only for what it may not run.
        """
        accept, handle = self._accept, self._handle
        assert accept is not None
        assert handle is not None
        message = envelope.message
        if not accept(message):
            with self._cond:
                self._items.appendleft(envelope)  # first: told before anything queued since
                self._busy = False
                self._cond.notify()
            return
        self._run(handle, message)
        for _ in range(_MAX_HELPED):
            with self._cond:
                if not self._items:
                    self._busy = False
                    return
                message = self._items[0].message
                queued_ask = self._items[0].reply_to is not None
            if queued_ask or not accept(message):
                break
            with self._cond:
                self._items.popleft()  # still first: only the thread with the turn takes
            self._run(handle, message)
        with self._cond:
            self._busy = False
            if self._items:
                self._cond.notify()

    def _run(self, handle: Handle, message: object) -> None:
        """Handle ``message`` here; a crash is re-raised on the actor thread."""
        try:
            handle(message)
        except Exception as exc:
            self._crash(exc)
        except BaseException as exc:
            # Interrupted (Ctrl-C in the caller's thread): the handling is cut
            # short, so the actor crashes; the caller still gets its exception.
            self._crash(RuntimeError(f"{type(exc).__name__} while handling {message!r}"))
            with self._cond:
                self._busy = False
                self._cond.notify()
            raise

    def _crash(self, error: BaseException) -> None:
        # In front: in the actor's own thread the crash would have happened
        # before anything told meanwhile was handled. Not run inline (not
        # accepted), so the actor thread raises it.
        with self._cond:
            self._items.appendleft(_Letter(Reraise(error)))
