"""A pykka actor inbox that lets the teller run an idle actor's message itself.

Why: a connection actor's message is mostly a thread hand-off. A small
Websocket round trip used to cross three threads (the caller tells the
actor to send, the I/O thread tells it what arrived, the actor tells the
owner), and waking the next thread was a third of the client's CPU time
(``bench/NOTES.md``). When the actor is idle, with nothing queued,
the thread that tells it a message can just as well handle it: the
message is handled at the same point in the actor's order as if it had
been queued, and no thread has to wake up.

The rule that keeps it an actor: **one message at a time, in mailbox
order**. Whoever handles a message holds the *turn*: pykka's actor loop
(on the actor thread) from taking a message until it asks for the next
one, or a teller running messages inline. A teller takes the turn only if
nobody holds it *and* nothing is queued (so it cannot overtake a message
told earlier); otherwise its message is queued as pykka would. A message
told while someone holds the turn is queued without waking the actor
thread: the holder handles it when done with its own (a caller that sent
a request often handles the response that arrived meanwhile, and finds it
in its Inbox without any thread waking up), or hands over to the actor
thread. A message the actor tells itself while handling one is queued
behind it, as before.

Who holds the turn is one state, :class:`Turn`:

==========  ==================================================  ==========================
turn        who handles messages                                leaves it
==========  ==================================================  ==========================
STARTING    nobody yet: the actor thread runs ``on_start``,     ``get()`` -> IDLE, then
            tellers queue (the loop's first ``get()`` takes)    LOOP if something is queued
IDLE        nobody: a teller that finds nothing queued takes    ``_enter`` -> TELLER;
            it; a message queued is handed to the loop          ``get()`` -> LOOP
TELLER      a teller, inline (its message, then those queued    ``_release`` -> IDLE
            meanwhile, up to ``_MAX_HELPED``)
LOOP        pykka's loop between two ``get()`` calls, or the    ``get()`` -> IDLE;
            thread running ``on_start`` (``make_lazy``) or a    ``open()`` -> IDLE, or
            stop in its stead                                   TELLER if something waits
==========  ==================================================  ==========================

A message told while the turn is not IDLE, or while something is queued,
is queued. Whether a lazy actor's thread was started is another matter
(``_thread_started``): it says who a hand-over goes to, not who has the
turn.

Once the actor has stopped, nothing runs again: pykka sets
``actor_stopped`` only in its loop, while it handles a message (with the
turn), and the loop's teardown takes the rest of the queue with ``get()``,
the last of which keeps the turn for good. A message that passed
:meth:`Mailbox.tell`'s check just before the stop is queued for nobody,
as with pykka's own inbox; a later tell raises ``ActorDeadError``.

What is never run inline: asks (their reply is a pykka future, answered
by the actor thread), pykka's own messages (stop, proxy calls), and what
the actor does not allow (:meth:`Mailbox.bind`'s ``run_inline`` refuses it). A message
that raises while handled inline is handed to the actor thread, which
raises it again, so pykka's failure path (``on_failure``, the supervisor)
runs there as for any crash.

The actor thread may start late (:meth:`Mailbox.make_lazy`, used by
:class:`~tether.actors._lazy.LazyThreadingActor`): then the mailbox starts
it, once, the first time it hands messages over, i.e. the first time a
message is queued that no teller will handle (an ask, a crash to re-raise,
pykka's own messages, what ``run_inline`` refuses, what is left after
``_MAX_HELPED``). Until then tellers handled everything and no thread was
needed. A stop (pykka's ``_ActorStop``) that finds no thread started and
nothing before it ends the actor on the thread that hands it over: pykka's
loop, run there, handles the stop and returns, instead of a thread being
started only to stop.

The actor decides what may run inline (:meth:`Mailbox.bind`'s ``run_inline``):
a connection allows it only when nothing it calls out to can block the
teller or run user code on the teller's thread (see ``ConnectionActor``).

Three things a connection's send buffer and ``close()`` need from it:

- **Sizes.** A message with a ``size`` attribute (a command carrying bytes
  for the wire) adds it to :attr:`Mailbox.queued_size` while it waits in
  the queue; taking it out calls ``bind``'s ``on_room``, so that callers
  waiting for room in the send buffer look again. A message run inline at
  once never counts.
- **Overtaking.** :meth:`Mailbox.tell_first` queues a message in front of
  the others (``close()`` and ``shutdown()`` are never queued behind work).
- **Closing.** :meth:`Mailbox.close` takes what is queued and refuses every
  later :meth:`tell` (``ActorDeadError``), atomically: a command either
  was taken (and the actor answers it) or is refused at the call, never
  queued for nobody. pykka's own messages (``put``) still go in.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka

from tether._locks import Rank, new_lock

__all__ = ["Mailbox", "Reraise", "Turn"]


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
"""A predicate on a message (:meth:`Mailbox.make_lazy`'s ``ends_loop``)."""

RunInline = Callable[[object], bool]
"""Handles a told message on the calling thread (with the turn) and returns True,
or returns False at once, having done nothing, if the actor does not allow it.
One call for both: asking first and then handling was two calls on every message."""

Run = Callable[[], None]
"""Starts the actor thread, or runs pykka's actor loop here (:meth:`Mailbox.make_lazy`)."""


class Turn(enum.Enum):
    """Who holds a mailbox's turn (the table in the module docstring)."""

    STARTING = "starting"  # nobody yet, and no teller may take it
    IDLE = "idle"  # nobody: a teller may take it if nothing is queued
    TELLER = "teller"  # a teller runs messages inline
    LOOP = "loop"  # pykka's actor loop (or a thread running it in its stead)


# Globals, not Turn.X: one look-up instead of two, on every message.
_STARTING, _IDLE, _TELLER, _LOOP = Turn.STARTING, Turn.IDLE, Turn.TELLER, Turn.LOOP

# How many messages queued during its turn a teller handles before it leaves
# the rest to the actor thread.
_MAX_HELPED = 16


def _refuse(message: object) -> bool:
    """What a mailbox runs inline before :meth:`Mailbox.bind`: nothing."""
    return False


def _no_room() -> None:
    """What a mailbox calls before :meth:`Mailbox.bind` when sized messages leave: nothing."""


def _size(item: Any) -> int:
    """The ``size`` of a queued item's message (0 for most)."""
    return getattr(item.message, "size", 0)


class Mailbox:
    """A pykka ``ActorInbox`` whose tellers may run the actor while it is idle.

    Thread-safe: ``put`` and ``wait_queued`` from any thread; ``get``,
    ``take_all`` and ``requeue`` by pykka's actor loop only (with its turn);
    ``make_lazy`` and ``open`` by the thread that starts the actor.
    """

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        # Taken directly where nobody waits. hot-path ledger: the lock, not its Condition
        self._lock = new_lock(Rank.MAILBOX)
        # Built by the first thread that waits (_waitable): many actors never
        # start their thread, and a Condition is ~1 KiB per connection.
        self._cond: threading.Condition | None = None
        # Who handles messages now (Turn; read and written under the lock).
        self._turn = _STARTING
        # Until bind(): refuses everything, so that every message is queued.
        self._run_inline: RunInline = _refuse
        self._on_room: Callable[[], None] = _no_room
        self._stopped: threading.Event | None = None  # the actor's actor_stopped
        self._closed = False  # close(): tell() refuses everything
        #: The sizes of the queued messages (see the module docstring); written
        #: under the lock, read by anyone.
        self.queued_size = 0
        self._watchers = 0  # threads in wait_queued
        # A lazily started actor thread (make_lazy): whether it has been
        # started, how to start it, how to run the loop here instead, and
        # which message lets the loop end at once (pykka's stop).
        self._thread_started = True
        self._start_thread: Run | None = None
        self._run_loop: Run | None = None
        self._ends_loop: Accept | None = None

    def bind(
        self,
        run_inline: RunInline,
        stopped: threading.Event,
        on_room: Callable[[], None] = _no_room,
    ) -> None:
        """Let tellers run messages with ``run_inline`` (which may refuse them).

        ``run_inline`` must refuse a :class:`Reraise`, and the actor's
        ``on_receive`` must raise its ``error``: that is how a crash in a
        message run inline reaches pykka's failure path on the actor thread.
        ``stopped`` is the actor's ``actor_stopped``, which :meth:`tell`
        checks as ``ActorRef.tell`` does. ``on_room`` is called (no lock
        held) after sized messages left the queue.
        """
        with self._lock:
            self._run_inline = run_inline
            self._stopped = stopped
            self._on_room = on_room

    def make_lazy(self, start_thread: Run, run_loop: Run, ends_loop: Accept) -> None:
        """The actor thread is not started yet: start it with ``start_thread`` when needed.

        Called by the thread that starts the actor, before ``on_start``,
        which it runs with the loop's turn: messages told meanwhile wait
        until :meth:`open`. ``run_loop`` runs pykka's loop (messages until
        the actor stops, then its teardown) on the calling thread: the
        started thread's target, and what a thread handing over runs
        itself when the first message queued is one that ``ends_loop``
        says ends the loop (and no thread was started).
        """
        with self._lock:
            self._thread_started = False
            self._start_thread = start_thread
            self._run_loop = run_loop
            self._ends_loop = ends_loop
            self._turn = _LOOP  # on_start's, until open()

    def open(self) -> None:
        """``on_start`` is over: tellers may run messages; this thread runs those told so far."""
        with self._lock:
            if not self._items:
                self._turn = _IDLE
                return
            self._turn = _TELLER  # passes to this thread, as a teller's
        self._continue_turn()

    @property
    def thread_started(self) -> bool:
        """Whether the actor thread has been started (diagnostics and tests; any thread)."""
        return self._thread_started

    # -- pykka's ActorInbox ------------------------------------------------------------

    def put(self, envelope: Any, /) -> None:
        """Run the message now if the actor is idle and allows it, else queue it."""
        self._enter(envelope.message, envelope)

    def tell(self, message: object, /) -> None:
        """``ActorRef.tell`` for this mailbox's actor (:meth:`bind` first), from any thread.

        The same as ``actor_ref.tell(message)``, without the envelope (and
        pykka's three calls to make it) when the message runs inline: what
        a connection's commands and I/O reports go through, two of them on
        every round trip (hot-path ledger: ``Mailbox.tell``).

        Raises:
            pykka.ActorDeadError: the actor has stopped.
        """
        stopped = self._stopped
        if stopped is None or stopped.is_set():
            raise pykka.ActorDeadError(f"the actor of {self!r} is not running")
        self._enter(message, None)

    def tell_first(self, message: object, /) -> None:
        """Like :meth:`tell`, but in front of every queued message (``close()``).

        Handled at once if the actor is idle, else next, once the message
        being handled is done.

        Raises:
            pykka.ActorDeadError: the actor has stopped.
        """
        stopped = self._stopped
        if stopped is None or stopped.is_set():
            raise pykka.ActorDeadError(f"the actor of {self!r} is not running")
        self._enter(message, None, first=True)

    def close(self) -> list[Any]:
        """Take every queued message and refuse later :meth:`tell` calls (the actor's turn).

        Returns the queued envelopes, oldest first.
        """
        with self._lock:
            self._closed = True
        return self.take_all()

    def _enter(self, message: object, envelope: Any, *, first: bool = False) -> None:
        """Run ``message`` now if the actor is idle and allows it, else queue it.

        ``envelope`` is pykka's (``put``), or None for a :meth:`tell`, which
        gets one only if it has to be queued. ``first``: queue it in front.
        """
        self._lock.acquire()  # hot-path ledger: acquire/release
        try:
            if envelope is None and self._closed:
                raise pykka.ActorDeadError(f"the actor of {self!r} has stopped")
            if (
                self._turn is not _IDLE
                or self._items
                or (envelope is not None and envelope.reply_to is not None)
            ):
                after = self._queue(message, envelope, first)
                queued = True
            else:
                self._turn = _TELLER  # IDLE -> TELLER: nothing queued, nobody handling
                queued = False
        finally:
            self._lock.release()
        if queued:
            if after is not None:
                after()
            return
        # With the turn: run the message, then what was queued meanwhile, then hand over.
        if self._run(message):
            self._continue_turn()
        else:
            self._refused(message, envelope)

    def _queue(self, message: object, envelope: Any, first: bool) -> Run | None:
        """Queue ``message`` (the lock held); what to do once it is released, if anything."""
        item = _Letter(message) if envelope is None else envelope
        if first:
            self._items.appendleft(item)
        else:
            self._items.append(item)
        size = getattr(message, "size", 0)
        if size:
            self.queued_size += size
        if self._watchers and self._cond is not None:
            self._cond.notify_all()
        if self._turn is not _IDLE:
            # The holder sees it when done (or open(), or the loop's first get(), does).
            return None
        return self._hand_over()

    def _refused(self, message: object, envelope: Any) -> None:
        """``run_inline`` refused the teller's message: queue it first, let go of the turn."""
        with self._lock:
            # First: told before anything queued since.
            item = _Letter(message) if envelope is None else envelope
            self._items.appendleft(item)
            self.queued_size += _size(item)
            after = self._release()
        if after is not None:
            after()

    def get(self) -> Any:
        """The loop's next message: ends the loop's previous turn, takes a new one."""
        with self._lock:
            if self._turn is not _TELLER:
                self._turn = _IDLE  # LOOP (its previous message) or STARTING -> IDLE
            while self._turn is _TELLER or not self._items:
                self._waitable().wait()
            self._turn = _LOOP  # IDLE -> LOOP
            item = self._items.popleft()
            size = _size(item)
            self.queued_size -= size
        if size:
            self._on_room()
        return item

    def empty(self) -> bool:
        """True if no message is queued."""
        return not self._items

    # -- for the actor thread ----------------------------------------------------------

    def take_all(self) -> list[Any]:
        """Take every queued message (the actor thread, during its turn)."""
        with self._lock:
            items = list(self._items)
            self._items.clear()
            sized = self.queued_size
            self.queued_size = 0
        if sized:
            self._on_room()
        return items

    def requeue(self, envelopes: list[Any]) -> None:
        """Put messages back in front of the queue, in their order (the actor thread)."""
        with self._lock:
            self._items.extendleft(reversed(envelopes))
            self.queued_size += sum(map(_size, envelopes))

    def wait_queued(self, match: Callable[[object], bool], timeout: float) -> bool:
        """Wait until a queued message matches (tests and diagnostics; any thread)."""
        with self._lock:
            self._watchers += 1
            try:
                return self._waitable().wait_for(
                    lambda: any(match(e.message) for e in self._items), timeout
                )
            finally:
                self._watchers -= 1

    def _waitable(self) -> threading.Condition:
        """The condition to wait on (the lock held), built for the first thread that waits."""
        if self._cond is None:
            self._cond = threading.Condition(self._lock)
        return self._cond

    # -- handing over ------------------------------------------------------------------

    def _hand_over(self) -> Run | None:
        """Leave the queue to the actor thread (lock held, the turn free, something queued).

        Returns what to do once the lock is released, if anything: start
        the thread (the first hand-over of a lazy actor), or run the loop
        on this thread (a stop, and no thread was ever started).
        """
        if self._thread_started:
            if self._cond is not None:  # else the thread has not waited yet
                self._cond.notify()
            return None
        assert self._ends_loop is not None
        if self._ends_loop(self._items[0].message):
            # The loop's turn, taken for this thread: its first get() returns
            # the stop (only the turn's holder takes from the front), and the
            # loop ends right after handling it.
            self._turn = _LOOP
            return self._run_loop
        self._thread_started = True  # once; its first get() takes the turn
        return self._start

    def _start(self) -> None:
        """Start the actor thread (not under the lock: ``Thread.start`` waits for it to run)."""
        assert self._start_thread is not None
        assert self._run_loop is not None
        try:
            self._start_thread()
        except RuntimeError as exc:  # "can't start new thread": out of threads or memory
            # Nothing can run the actor's queue: it crashes with this error,
            # on this thread since no other can (pykka's failure path, as for
            # a crash). Nobody has taken the turn: only the thread would.
            with self._lock:
                self._items.appendleft(_Letter(Reraise(exc)))
                self._turn = _LOOP
            self._run_loop()

    # -- inline ------------------------------------------------------------------------

    def _continue_turn(self) -> None:
        """With the turn: handle what was queued meanwhile, then let go of the turn.

        Messages told while this thread had the turn were queued without
        waking the actor thread; this thread handles them too (up to
        ``_MAX_HELPED``, so a busy connection cannot hold a shared thread
        for long), and hands over to the actor thread only what it may
        not run.
        """
        # hot-path ledger: acquire/release
        helped = 0
        while True:
            self._lock.acquire()
            try:
                items = self._items
                if not items:  # the usual case, at once: nothing was told meanwhile
                    self._turn = _IDLE  # TELLER -> IDLE
                    return
                if helped == _MAX_HELPED or items[0].reply_to is not None:
                    # Enough for this thread, or an ask (the actor thread answers it).
                    after = self._release()
                    break
                envelope = items.popleft()  # only the thread with the turn takes from the front
                size = _size(envelope)
                self.queued_size -= size
            finally:
                self._lock.release()
            if size:
                self._on_room()
            helped += 1
            if not self._run(envelope.message):
                with self._lock:
                    self._items.appendleft(envelope)  # still first, for the actor thread
                    self.queued_size += size
                    after = self._release()
                break
        if after is not None:
            after()

    def _release(self) -> Run | None:
        """Let go of a teller's turn (lock held); what to do next, as for :meth:`_hand_over`."""
        self._turn = _IDLE  # TELLER -> IDLE
        return self._hand_over() if self._items else None

    def _run(self, message: object) -> bool:
        """Handle ``message`` here (False if refused); a crash is re-raised on the actor thread."""
        try:
            return self._run_inline(message)
        except Exception as exc:
            self._crash(exc)
            return True  # handled: it crashed
        except BaseException as exc:
            # Interrupted (Ctrl-C in the caller's thread): the handling is cut
            # short, so the actor crashes; the caller still gets its exception.
            self._crash(RuntimeError(f"{type(exc).__name__} while handling {message!r}"))
            with self._lock:
                after = self._release()
            if after is not None:
                after()
            raise

    def _crash(self, error: BaseException) -> None:
        # In front: in the actor's own thread the crash would have happened
        # before anything told meanwhile was handled. Never run inline (bind()),
        # so the actor thread raises it.
        with self._lock:
            self._items.appendleft(_Letter(Reraise(error)))
