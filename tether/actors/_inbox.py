"""Inbox: a mailbox with selective receive, the owner for plain threads.

Erlang's ``receive`` lets a process pick the first message matching a
pattern and leave the rest in order; Gun's ``await`` functions rely on it.
``Inbox`` gives plain Python threads the same: connections ``tell`` it
events, and ``receive(match=...)`` takes the oldest one that matches.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import NoReturn

from tether._errors import InboxClosedError, ReceiveTimeout
from tether._locks import Rank, new_rlock
from tether.actors._backlog import Backlog
from tether.actors._ioloop import Watch
from tether.actors._lending import Lending

__all__ = ["DEFAULT_BUSY_POLL", "Inbox"]

DEFAULT_BUSY_POLL = 50e-6
"""Seconds a waiting thread polls its lent socket before it sleeps (``docs/performance.md``)."""

Match = Callable[[object], bool]

_NOTHING = object()  # what Inbox._pick finds when no message matches


class Inbox:
    """A thread-safe mailbox with selective receive. Every method is thread-safe.

    Closing an Inbox tells the connections it owns that their owner is gone:
    their next ``tell`` fails and they shut down (owner monitoring).

    On Linux, while a thread waits in an Inbox that owns a single
    connection, that thread reads the connection's socket itself (see
    ``tether.actors._lending``): the answer it waits for wakes it
    directly instead of passing through tether's I/O thread.

    Args:
        busy_poll: seconds such a thread polls the socket without sleeping
            before it sleeps, while its waits are that short (a sleeping
            thread is woken late, tens of µs on a virtual machine; waits
            that last stop the spinning, so an idle wait costs no CPU).
            ``0`` never spins.

    Raises:
        TypeError: ``busy_poll`` is not a number.
        ValueError: ``busy_poll`` is negative or not finite.
    """

    def __init__(self, *, busy_poll: float = DEFAULT_BUSY_POLL) -> None:
        if isinstance(busy_poll, bool) or not isinstance(busy_poll, int | float):
            raise TypeError(f"busy_poll must be a number of seconds, not {busy_poll!r}")
        if not 0.0 <= busy_poll < math.inf:
            raise ValueError(f"busy_poll must be finite and >= 0, not {busy_poll!r}")
        # The lock itself where nothing waits. hot-path ledger: the lock, not its Condition
        self._lock = new_rlock(Rank.INBOX)
        self._cond = threading.Condition(self._lock)
        self._messages: deque[object] = deque()
        self._closed = False
        # Threads in the Condition's wait: a tell notifies only if there are
        # some (a receiver that borrowed a socket waits in poll, woken by
        # the Lending). hot-path ledger: notify only sleepers
        self._sleepers = 0
        self._lending = Lending(self._cond, float(busy_poll))
        # The receive bounds of the connections that count their events in
        # this Inbox (tether.actors._backlog), by connection: a tell or a take
        # looks up the message's connection only while there are some.
        self._backlogs: dict[object, Backlog] = {}
        self._full = 0  # how many of them are full: a selective receive lifts them, if any
        # Who to tell when it closes, by connection (owner monitoring, Gun's
        # monitor on the owner): one entry per connection it owns, removed
        # when the connection stops or changes owner.
        self._monitors: dict[object, Callable[[], None]] = {}

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<tether.Inbox {state}, {len(self._messages)} message(s)>"

    def __len__(self) -> int:
        """How many messages wait in the inbox."""
        with self._cond:
            return len(self._messages)

    @property
    def closed(self) -> bool:
        """True once [`close`][tether.Inbox.close] was called."""
        return self._closed

    def backlog(self, conn: object, max_events: int, max_size: int | None) -> Backlog:
        """``conn``'s receive bound, counted by this Inbox (for tether's connections)."""
        with self._lock:
            backlog = Backlog(max_events, max_size, self._lock)
            self._backlogs[conn] = backlog
            return backlog

    def release(self, conn: object) -> None:
        """Stop counting ``conn``'s events (it stopped, or its events go elsewhere now)."""
        with self._lock:
            backlog = self._backlogs.pop(conn, None)
            if backlog is not None and backlog.full:
                self._full -= 1

    def monitor(self, conn: object, closed: Callable[[], None]) -> None:
        """Call ``closed()`` when this inbox closes (at once if it is closed). Thread-safe.

        For tether's connections: the one it owns learns at once that its
        owner is gone, instead of at its next owner check. ``closed`` runs on
        the thread that closes the inbox, with no lock held; it must be quick.
        """
        with self._lock:
            if not self._closed:
                self._monitors[conn] = closed
                return
        closed()

    def demonitor(self, conn: object) -> None:
        """Forget ``conn``'s ``monitor`` (it stopped, or its owner changed). Thread-safe."""
        with self._lock:
            self._monitors.pop(conn, None)

    def _lift(self) -> list[Backlog]:
        """A selective receive waits: read again past the full bounds (the lock held).

        See "Selective receive" in ``tether.actors._backlog``. Returns
        the backlogs lifted, for ``_unlift``.
        """
        lifted = [b for b in self._backlogs.values() if b.full and not b.lifted]
        for backlog in lifted:
            backlog.lifted = True
            backlog.on_change()
        return lifted

    @staticmethod
    def _unlift(lifted: list[Backlog]) -> None:
        """The selective receive returned: the bounds hold again (the lock held)."""
        for backlog in lifted:
            backlog.lifted = False
            if backlog.full:
                backlog.on_change()

    def _take_nowait(
        self, match: Match | None, remove: Match | None = None, default: object = None
    ) -> object:
        """Like :meth:`take` with no wait at all: ``default`` if nothing matches now.

        For :class:`~tether.AsyncInbox`, which keeps its messages here and
        waits on its event loop, not in :meth:`take`.

        Raises:
            InboxClosedError: the inbox is closed and holds no matching message.
        """
        self._lock.acquire()  # not `with`: see take()
        try:
            if self._messages:
                message = self._pick(match, remove)
                if message is not _NOTHING:
                    return message
            if self._closed:
                raise InboxClosedError("the inbox is closed")
            return default
        finally:
            self._lock.release()

    def _lift_for_waiter(self) -> list[Backlog]:
        """Lift the full receive bounds while a waiter outside this Inbox waits selectively.

        For :class:`~tether.AsyncInbox`, whose coroutines wait on the event
        loop, not in :meth:`take`. Returns what to give :meth:`_unlift_for_waiter`.
        """
        with self._lock:
            return self._lift() if self._full else []

    def _unlift_for_waiter(self, lifted: list[Backlog]) -> None:
        """The wait that :meth:`_lift_for_waiter` was for returned: the bounds hold again."""
        if lifted:
            with self._lock:
                self._unlift(lifted)

    def _counted_in(self, message: object) -> None:
        """``message`` was added (the lock held): count it if its connection is bounded here."""
        backlog = self._backlogs.get(getattr(message, "conn", None))
        if backlog is not None and backlog.told((message,)):
            self._full += 1

    def _counted_out(self, message: object) -> None:
        """``message`` was taken (the lock held): the same count, the other way."""
        backlog = self._backlogs.get(getattr(message, "conn", None))
        if backlog is not None and backlog.taken(message):
            self._full -= 1

    def tell(self, message: object, /) -> None:
        """Add a message (what connections call; same shape as ``ActorRef.tell``).

        Raises:
            InboxClosedError: the inbox was closed.
        """
        with self._lock:
            if self._closed:
                raise InboxClosedError("the inbox is closed")
            self._messages.append(message)
            if self._backlogs:
                self._counted_in(message)
            if self._sleepers:
                self._cond.notify_all()
            self._lending.wake()

    def tell_all(self, messages: Sequence[object], backlog: Backlog | None = None, /) -> None:
        """Add several messages at once, waking the receivers once (connections' batches).

        ``backlog``: the receive bound of the connection that tells them all
        (it is theirs: no look-up per message).

        Raises:
            InboxClosedError: the inbox was closed (none of them is added).
        """
        self._lock.acquire()  # hot-path ledger: acquire/release
        try:
            if self._closed:
                raise InboxClosedError("the inbox is closed")
            self._messages.extend(messages)
            if backlog is not None:
                if backlog.told(messages):
                    self._full += 1
            elif self._backlogs:
                for message in messages:
                    self._counted_in(message)
            if self._sleepers:
                self._cond.notify_all()
            self._lending.wake()
        finally:
            self._lock.release()

    def receive(self, timeout: float | None = None, match: Match | None = None) -> object:
        """Remove and return the oldest message for which ``match`` is true.

        Args:
            timeout: seconds to wait (``None`` or ``math.inf``: forever).
            match: a predicate; ``None`` matches any message.

        Raises:
            ReceiveTimeout: nothing matched in time (a ``TimeoutError``).
            InboxClosedError: the inbox is closed and holds no matching message.
        """
        return self.take(match, timeout)

    def take(
        self, match: Match | None, timeout: float | None, remove: Match | None = None
    ) -> object:
        """Like ``receive``, but only remove the message if ``remove(message)``.

        Used by ``await_`` to look at a connection-wide event (a ``Down``)
        without consuming it.
        """
        self._lock.acquire()  # hot-path ledger: acquire/release
        try:
            # The fast path: a matching message is there. No deadline, no
            # borrowing; a socket held since the last receive is held anew.
            if self._messages and (message := self._pick(match, remove)) is not _NOTHING:
                held = self._lending.resume()
                if held is not None:
                    self._keep(held)
                return message
            return self._wait(match, timeout, remove)
        finally:
            self._lock.release()

    def _wait(self, match: Match | None, timeout: float | None, remove: Match | None) -> object:
        """``take`` when nothing matches yet: wait, reading the lent socket (the lock held)."""
        # inf, or more than Condition.wait takes (292 years on Linux), is no limit.
        deadline = (
            time.monotonic() + timeout
            if timeout is not None and timeout <= threading.TIMEOUT_MAX
            else None
        )
        remaining = None if deadline is None else timeout  # read from the clock only after a wait
        lending = self._lending
        borrowed = lending.resume()  # held since the last receive, if it was
        tried = False  # to borrow since the last wait
        lifted: list[Backlog] | None = None  # bounds lifted while a selective receive waits
        try:
            while True:
                if self._messages and (message := self._pick(match, remove)) is not _NOTHING:
                    return message
                if self._closed or (remaining is not None and remaining <= 0):
                    self._stop_waiting(timeout)
                if lifted is None and self._full and match is not None:
                    lifted = self._lift()  # nothing queued matches: reading must go on
                if borrowed is not None and lending.only is borrowed:
                    # The usual wait: for the socket this thread reads, or a tell.
                    if not lending.wait_and_read(borrowed, remaining):
                        lending.give_back(borrowed)
                        borrowed = None
                else:
                    borrowed, tried = self._wait_without_socket(borrowed, tried, remaining)
                if deadline is not None:
                    remaining = deadline - time.monotonic()
        finally:
            if lifted:
                self._unlift(lifted)
            if borrowed is not None:
                self._keep(borrowed)

    def _stop_waiting(self, timeout: float | None) -> NoReturn:
        """The inbox is closed, or nothing matched within ``timeout``: raise."""
        if self._closed:
            raise InboxClosedError("the inbox is closed")
        raise ReceiveTimeout(f"no matching message within {timeout} s")

    def _wait_without_socket(
        self, borrowed: Watch | None, tried: bool, remaining: float | None
    ) -> tuple[Watch | None, bool]:
        """``_wait`` has no socket to read: ``(borrowed, tried)`` after this turn.

        Gives back one that may not be read any more (closed or ended
        meanwhile); borrows the socket if that was not tried since the last
        wait; else sleeps until told. Giving back and borrowing let go of
        the lock: the caller looks again before any wait, since a message
        told meanwhile notified nobody.
        """
        if borrowed is not None:
            self._lending.give_back(borrowed)
            return None, False
        if not tried:
            return self._lending.borrow(), True
        self._sleepers += 1
        try:
            self._cond.wait(remaining)
        finally:
            self._sleepers -= 1
        return None, False  # woken: the socket may be lendable now

    def _keep(self, borrowed: Watch) -> None:
        """A receive returns with ``borrowed``: hold it for the next one (the lock held).

        Unless another receiver waits without a socket, the Inbox is
        closed, or it may not be kept: then the I/O thread reads it.
        """
        if self._sleepers or self._closed or not self._lending.hold(borrowed):
            self._lending.give_back(borrowed)

    def _let_go(self) -> None:
        """Give the socket held since the last receive back to the I/O thread now.

        For a thread about to block elsewhere (``Connection.wait_stopped``):
        held, the socket would be read only once the I/O thread takes it
        back, 5 to 10 ms later (``tether.actors._lending``, "Holding").
        """
        with self._cond:
            held = self._lending.resume()
            if held is not None:
                self._lending.give_back(held)

    def _pick(self, match: Match | None, remove: Match | None) -> object:
        """The oldest message ``match`` accepts, removed if ``remove`` agrees (the lock held).

        ``_NOTHING`` if none matches.
        """
        messages = self._messages
        if match is None:  # any message: the oldest, without a loop
            message = messages[0]
            if remove is None or remove(message):
                messages.popleft()
                if self._backlogs:
                    self._counted_out(message)
            return message
        for index, message in enumerate(messages):
            if match(message):
                if remove is None or remove(message):
                    del messages[index]
                    if self._backlogs:
                        self._counted_out(message)
                return message
        return _NOTHING

    def flush(self, match: Match | None = None) -> list[object]:
        """Remove and return every message for which ``match`` is true (all if None)."""
        with self._cond:
            kept: deque[object] = deque()
            removed: list[object] = []
            for message in self._messages:
                (removed if match is None or match(message) else kept).append(message)
            self._messages = kept
            if self._backlogs:
                for message in removed:
                    self._counted_out(message)
            return removed

    def close(self) -> None:
        """Close the inbox: later ``tell`` calls raise, waiting receivers wake up.

        Messages already in it can still be received. The connections it
        owns learn it at once, and end as for a stopped owner (``OwnerDown``:
        one that is up closes gracefully).
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._lending.wake()
            monitors, self._monitors = self._monitors, {}
        for closed in monitors.values():
            closed()
