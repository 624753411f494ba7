"""PooledOwnerActor: pykka owner actors that share a few threads instead of one each.

Why: a ``pykka.ThreadingActor`` is a thread. An application with an owner
actor per connection and hundreds of connections has hundreds of threads
that each wake up for each event: 500 owners opening, upgrading and
echoing ten messages each spent a second of system time switching
between them, and took 3x websockets' asyncio time for the same work
(``bench/run.py --only fanout``). A :class:`PooledOwnerActor` is the same
pykka actor (``ActorRef``, ``tell``, ``ask``, proxies, ``stop``,
``on_start``/``on_receive``/``on_stop``/``on_failure``), run by an
:class:`ActorPool`'s threads: a thread takes an actor that has messages,
runs up to :attr:`ActorPool.turn` of them, then takes the next actor. A
busy pool runs actor after actor without sleeping; one wake-up (at most)
per batch of work, not per event.

How it reuses pykka's own loop, unchanged: pykka's ``_actor_loop_running``
takes each message from the mailbox (``get()``) outside of its try blocks.
The pool's thread calls that loop; when the actor has nothing left (or
its turn is used up), :meth:`PooledMailbox.get` raises :class:`_Yield`,
which leaves pykka's loop between two messages, where the actor has no
state on the stack. The next message told schedules the actor again, and
a thread enters the same loop again. Failures, replies, ``on_failure``,
the stop and the teardown are pykka's code, on the pool's thread. (Those
private hooks of pykka's are the ones ``tether.actors._lazy`` uses too; it
refuses to load against a pykka without them.)

**One message at a time**, as any actor: the actor is in the pool's queue
or being run by one thread (:class:`Run`), never by two. An actor runs
``on_start`` first, before any message, on a pool thread.

**Blocking holds a pool thread.** A handler that waits (``ask(...).get()``,
``time.sleep``, a blocking receive) keeps one of the pool's threads while
it waits; if every thread waits for an actor of the same pool, they wait
for ever. Owners that answer events by sending are what the pool is for;
an actor that waits for others is a plain ``pykka.ThreadingActor``.

Connections deliver to it as to an Inbox (``tether.actors._delivery``): a
read's events in one batch, counted against the connection's receive
bound, then one schedule of the actor.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import pykka
from pykka._envelope import Envelope  # what ActorRef.tell and ask put (private, but stable)

from tether._locks import Rank, new_lock
from tether._options import check_positive_seconds
from tether.actors._inbox import Inbox
from tether.actors._owner import InboxMailbox

if TYPE_CHECKING:
    from tether.actors._backlog import Backlog

__all__ = ["ActorPool", "PooledMailbox", "PooledOwnerActor", "Run", "default_actor_pool"]


_NOTHING = object()  # what Inbox._take_nowait finds when nothing is queued


class _Yield(Exception):  # not an error: the way out of pykka's loop
    """Raised by :meth:`PooledMailbox.get` to leave pykka's loop between two messages.

    ``again``: the turn is used up but messages wait (queue the actor again).
    """

    def __init__(self, again: bool) -> None:
        super().__init__()
        self.again = again


class Run(enum.Enum):
    """Where a pooled actor is, for the pool (the mailbox's ``_run``, under its lock)."""

    IDLE = "idle"  # nothing to run: the next message told schedules it
    SCHEDULED = "scheduled"  # in the pool's queue, or being run by one of its threads
    DONE = "done"  # stopped: its teardown ran, nothing runs it again


class ActorPool:
    """The threads that run [`PooledOwnerActor`][tether.PooledOwnerActor] actors.

    Threads start as actors have work, up to ``threads`` at once, and exit
    after ``idle`` seconds with nothing to run (an idle process keeps no
    pool thread; the next message starts one again). Actors wait in one
    queue, first come first run; each turn runs at most ``turn`` messages
    of one actor, so that a busy actor does not keep the others waiting.

    Args:
        threads: most threads running actors at once (4 by default). More
            lets more handlers block at once; fewer switches less.
        turn: most messages of one actor run before the thread takes the
            next actor (32 by default).
        idle: seconds a thread with nothing to run waits before it exits
            (10 by default).
        name: the threads' name prefix.

    Raises:
        ValueError: ``threads`` or ``turn`` below 1, ``idle`` not positive.

    Thread-safety: every method, from any thread.
    """

    def __init__(
        self, threads: int = 4, *, turn: int = 32, idle: float = 10.0, name: str = "tether-actors"
    ) -> None:
        if threads < 1 or turn < 1:
            raise ValueError(f"an ActorPool needs threads >= 1 and turn >= 1: {threads}, {turn}")
        check_positive_seconds("idle", idle, allow_none=False)
        self.threads = threads
        self.turn = turn
        self.idle = idle
        self.name = name
        self._lock = new_lock(Rank.ACTOR_POOL, "actor pool")
        self._ready = threading.Condition(self._lock)
        self._queue: deque[PooledMailbox] = deque()
        self._running = 0  # threads started and not exited
        self._idle = 0  # threads waiting for work that no submit has woken yet
        self._waking = False  # a thread was woken (or started) and has not taken work yet
        self._started = 0  # for the threads' names

    def __repr__(self) -> str:
        return f"<tether.ActorPool {self.name!r}, {self._running}/{self.threads} thread(s)>"

    @property
    def running(self) -> int:
        """How many threads the pool has now."""
        return self._running

    def submit(self, mailbox: PooledMailbox) -> None:
        """Queue an actor that has messages; wake or start a thread if none is on its way."""
        self._lock.acquire()  # not `with`: once per batch of events told
        try:
            self._queue.append(mailbox)
            start = self._wake_one()
        finally:
            self._lock.release()
        if start:
            self._start_thread()

    def _wake_one(self) -> bool:
        """Wake an idle thread for the queue, unless one is waking already (the lock held).

        One wake-up at a time: a burst of actors told at once (one read of
        many sockets) wakes one thread, which wakes the next if actors are
        still queued when it takes its own (``_next``), instead of each
        actor waking a thread that then finds the queue empty. Returns True
        if a new thread is to be started (none idle, fewer than ``threads``).
        """
        if self._waking:
            return False
        if self._idle:
            self._idle -= 1  # this wait is counted off by the wake that ends it
            self._waking = True
            self._ready.notify()
            return False
        if self._running < self.threads:
            self._running += 1
            self._started += 1
            self._waking = True  # a new thread is on its way too
            return True
        return False

    def _start_thread(self) -> None:
        name = f"{self.name}-{self._started}"
        try:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        except BaseException:  # no thread to be had (RuntimeError): the next submit tries again
            with self._lock:
                self._running -= 1
                self._waking = False
            raise

    def _next(self, woken: bool) -> PooledMailbox | None:
        """The next actor to run, waiting for one; None when this thread should exit.

        ``woken``: this thread is the one waking (a new thread's first call).
        """
        start = False
        with self._lock:
            while not self._queue:
                if woken:
                    self._waking = woken = False
                self._idle += 1
                woken = self._ready.wait(self.idle)
                if not woken:
                    self._idle -= 1  # timed out: no wake counted this wait off
                    if not self._queue:
                        self._running -= 1
                        return None
            if woken:
                self._waking = False
            mailbox = self._queue.popleft()
            if self._queue:
                start = self._wake_one()  # more work than this thread: one more
        if start:
            self._start_thread()
        return mailbox

    def _work(self) -> None:
        woken = True  # started by a submit: this thread is the one waking
        while (mailbox := self._next(woken)) is not None:
            woken = False
            try:
                mailbox.run_turn(self.turn)
            except BaseException:
                # pykka lets a BaseException out of on_start only (a handler's
                # stops every actor): this thread ends, and is counted out.
                with self._lock:
                    self._running -= 1
                raise


_default_pool: ActorPool | None = None
_default_lock = new_lock(Rank.DEFAULT, "default actor pool")


def default_actor_pool() -> ActorPool:
    """The process-wide pool of :class:`PooledOwnerActor` (4 threads), made at first use."""
    global _default_pool
    with _default_lock:
        if _default_pool is None:
            _default_pool = ActorPool()
        return _default_pool


class PooledMailbox(InboxMailbox):
    """pykka's ``ActorInbox`` for a :class:`PooledOwnerActor`: an Inbox, and a turn in a pool.

    Thread-safe: ``put``, ``tell``, ``tell_all``, ``backlog`` and
    ``release`` from any thread; ``get``, ``empty`` and ``run_turn`` by the
    pool thread that runs the actor.
    """

    __slots__ = ("_actor", "_left", "_lock", "_pool", "_run", "_started")

    def __init__(self, actor: pykka.Actor, pool: ActorPool) -> None:
        # The messages, their order and the receive bound: an Inbox's (only
        # its nowait take is used: nobody waits in it).
        super().__init__(Inbox(busy_poll=0))
        self._actor = actor
        self._pool = pool
        self._lock = new_lock(Rank.ACTOR_POOL, "pooled actor")
        self._run = Run.SCHEDULED  # start() queues it for on_start
        self._started = False  # on_start ran
        self._left = 0  # messages left in the current turn

    def __len__(self) -> int:
        """How many messages wait (any thread)."""
        return len(self.inbox)

    # -- the connections' and pykka's side (any thread) -------------------------------

    def backlog(self, conn: object, max_events: int, max_size: int | None) -> Backlog:
        """``conn``'s receive bound, counted by this mailbox (for tether's connections)."""
        return self.inbox.backlog(conn, max_events, max_size)

    def release(self, conn: object) -> None:
        """Stop counting ``conn``'s events (for tether's connections)."""
        self.inbox.release(conn)

    def monitor(self, conn: object, closed: Callable[[], None]) -> None:
        """Call ``closed()`` once the actor has stopped (see ``Inbox.monitor``)."""
        self.inbox.monitor(conn, closed)

    def demonitor(self, conn: object) -> None:
        """Forget ``conn``'s ``monitor``."""
        self.inbox.demonitor(conn)

    def tell(self, message: object, /) -> None:
        """Add a message and schedule the actor (raises ``InboxClosedError`` once it stopped)."""
        self.tell_all((message,))

    def tell_all(self, messages: Sequence[object], backlog: Backlog | None = None, /) -> None:
        """Add several messages at once, scheduling the actor once (connections' batches).

        Raises:
            InboxClosedError: the actor has stopped (none is added).
        """
        self.inbox.tell_all(messages, backlog)
        self._schedule()

    def put(self, envelope: Envelope[Any], /) -> None:
        """Queue a pykka envelope (``tell``, ``ask``, ``stop``) and schedule the actor.

        Raises:
            pykka.ActorDeadError: the actor has stopped.
        """
        super().put(envelope)
        self._schedule()

    def _schedule(self) -> None:
        self._lock.acquire()  # not `with`: once per batch of events told
        idle = self._run is Run.IDLE
        if idle:
            self._run = Run.SCHEDULED
        self._lock.release()
        if idle:
            self._pool.submit(self)

    def start(self) -> None:
        """Queue the actor for its ``on_start`` (pykka's ``start()``, once)."""
        self._pool.submit(self)

    # -- the pool thread that runs the actor -------------------------------------------

    def run_turn(self, turn: int) -> None:
        """Run the actor: ``on_start`` the first time, then up to ``turn`` messages."""
        actor = self._actor
        self._left = turn
        if not self._started:
            self._started = True
            actor._actor_loop_setup()  # pykka's loop, run in slices
        try:
            actor._actor_loop_running()
        except _Yield as out:
            if out.again:
                self._pool.submit(self)  # still SCHEDULED: to the back of the queue
            return
        # Stopped (by a message, a failure, or on_start's): pykka's teardown
        # answers what is still queued, then the mailbox refuses the rest.
        actor._actor_loop_teardown()
        with self._lock:
            self._run = Run.DONE

    def get(self) -> Any:
        """The next message for pykka's loop; raises :class:`_Yield` when the turn is over."""
        if self._has_stopped():
            message = self.inbox._take_nowait(None)  # the teardown: empty() said one is here
        else:
            if self._left <= 0:
                raise _Yield(again=True)
            self._left -= 1
            message = self.inbox._take_nowait(None, None, _NOTHING)
            if message is _NOTHING:
                message = self._idle_or_next()
        return self._for_the_loop(message)

    def _idle_or_next(self) -> object:
        """Nothing queued: go IDLE, unless a message came meanwhile and nobody scheduled it."""
        with self._lock:
            self._run = Run.IDLE
        # A tell that added its message before IDLE found the actor
        # SCHEDULED and did not schedule it: look again, and take the turn
        # back if no later tell did (then that turn runs the message).
        if not len(self.inbox):
            raise _Yield(again=False)
        with self._lock:
            mine = self._run is Run.IDLE
            if mine:
                self._run = Run.SCHEDULED
        if not mine:
            raise _Yield(again=False)
        # Only the thread with the turn takes messages: it is still there.
        return self.inbox._take_nowait(None)

    def _has_stopped(self) -> bool:
        return self._actor.actor_stopped.is_set()


class PooledOwnerActor(pykka.ThreadingActor):
    """A pykka actor run by a shared [`ActorPool`][tether.ActorPool], not a thread of its own.

    Use it as the base class of owner actors when there are many of them
    (an owner per connection, hundreds of connections): ``on_start``,
    ``on_receive``, ``tell``, ``ask``, proxies, ``stop`` and supervision
    work as for a ``pykka.ThreadingActor``, and connection events reach
    ``on_receive`` in order, counted against the connection's receive
    bound as an Inbox's. A few threads run them all, each actor one message
    at a time.

    Handlers must not wait for long: a handler that blocks (``ask(...).get()``,
    ``time.sleep``, a blocking receive) holds one of the pool's threads
    until it returns, and if every thread of the pool waits for an actor
    of that pool, they wait for ever. For an actor that waits on others,
    use a plain ``pykka.ThreadingActor``; for one actor answering one busy
    connection, [`OwnerActor`][tether.OwnerActor] (its own thread, which
    reads the socket itself).

    Attributes:
        actor_pool: the pool that runs this class's actors; by default the
            process-wide one (4 threads). A class attribute: set it in a
            subclass to give a group of actors a pool of their own.

    Thread-safety: as any pykka actor: its methods run on a pool thread,
    one message at a time; use its ``ActorRef`` from any thread.
    """

    actor_pool: ClassVar[ActorPool | None] = None

    def _create_actor_inbox(self) -> PooledMailbox:  # type: ignore[override]
        # pykka's hook, called by Actor.__init__ (an instance method: it needs the actor).
        return PooledMailbox(self, type(self).actor_pool or default_actor_pool())

    def _start_actor_loop(self) -> None:
        mailbox: PooledMailbox = self.actor_inbox  # type: ignore[assignment]
        mailbox.start()
