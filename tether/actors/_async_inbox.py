"""AsyncInbox: the owner for code on an asyncio event loop.

An [`Inbox`][tether.Inbox] makes a thread wait; on an event loop nothing
may block, so an ``AsyncInbox`` makes a *coroutine* wait:
``await inbox.receive(timeout, match)`` is the Inbox's selective receive
(Erlang's ``receive``), and ``await inbox.await_up(conn)``,
``await inbox.await_(conn, stream)`` and ``await inbox.await_body(conn, stream)``
are Gun's ``await`` functions, on the connection the inbox owns.

**How events get into the loop.** A connection tells its events on
tether's I/O thread (or on a thread running the connection actor inline,
e.g. the loop's own thread in ``ws_send``). They go into a plain Inbox
held inside (the same selective receive, the same receive bound, no
second copy of either), and a coroutine waiting in the AsyncInbox is woken
once per *batch* of events (one read of the socket): one
``loop.call_soon_threadsafe`` from another thread, none from the loop's
own thread. Nothing is scheduled while no coroutine waits: events just
queue (bounded, see below) until the next ``receive``.

**Bounded.** The receive bound (``max_queue``/``max_queue_bytes``) holds as
for an Inbox: a coroutine that does not receive pauses the connection's
reads, and a selective receive that waits lifts it, as an Inbox's does
(``tether.actors._backlog``).

**The loop's end is the owner's.** Once the loop is closed (``asyncio.run``
returned), the owner is gone: the next event told raises
``InboxClosedError``, and an idle connection notices it at its next owner
check; either way it stops as for a dead actor (``OwnerDown``). A loop that
is only stopped may run again: it is a slow owner, held by the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from asyncio import events
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from tether._errors import (
    ConnectionStoppedError,
    InboxClosedError,
    OwnerError,
    ReceiveTimeout,
    SendTimeout,
)
from tether._options import check_positive_seconds
from tether.actors._awaiting import Body
from tether.actors._backlog import Backlog
from tether.actors._inbox import Inbox, Match
from tether.actors._loop_lending import LoopLending

if TYPE_CHECKING:
    from tether._events import ProtocolName, StreamRef
    from tether.actors._handle import Connection

__all__ = ["AsyncInbox"]


_NOTHING = object()  # what _take_nowait finds when nothing matches


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _expire_soon(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[None]) -> None:
    """``_expire(waiter)`` on ``loop``, from any thread (nothing if the loop is closed)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_expire, waiter)


class AsyncInbox:
    """A mailbox with selective receive for coroutines on one asyncio event loop.

    Give it as ``owner=`` to [`tether.open`][tether.open] (or
    [`open_unix`][tether.open_unix], ``set_owner``) or as a request's
    ``reply_to=``; then ``await`` its events.

    Thread-safety: ``tell``, ``tell_all``, ``flush``, ``close``, ``len()``
    and ``closed`` may be called from any thread. The coroutines
    (``receive``, ``await_up``, ``await_``, ``await_body``) run on the
    inbox's loop only (``RuntimeError`` elsewhere); any number of them may
    wait at once, each for what its ``match`` accepts.

    The connection's blocking ``await_up``/``await_``/``await_body`` would
    block the loop: on a connection whose events go to an AsyncInbox they
    raise ``OwnerError`` pointing here.

    Args:
        loop: the event loop whose coroutines receive; by default the
            running loop (then it must be created inside a coroutine).

    Raises:
        RuntimeError: no ``loop`` given and no loop is running.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "tether.AsyncInbox() needs a running event loop: create it in a "
                    "coroutine, or pass loop="
                ) from None
        self._loop = loop
        # The messages, their order, selective receive and the receive bound:
        # an Inbox's (it never waits here: only take(match, 0) is used).
        self._store = Inbox(busy_poll=0)
        self._lock = threading.Lock()  # the waiters and the wake-up under way
        self._waiters: list[asyncio.Future[None]] = []
        self._wake_pending = False  # a call_soon_threadsafe(_wake) is on its way
        # The sockets of the connections whose events come here, read by the loop.
        self._lending = LoopLending(loop)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<tether.AsyncInbox {state}, {len(self._store)} message(s)>"

    def __len__(self) -> int:
        """How many messages wait in the inbox (any thread)."""
        return len(self._store)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop whose coroutines receive."""
        return self._loop

    @property
    def closed(self) -> bool:
        """True once [`close`][tether.AsyncInbox.close] was called or the loop is closed."""
        return self._store.closed or self._loop.is_closed()

    # -- the connections' side (any thread) -----------------------------------------

    def backlog(self, conn: object, max_events: int, max_size: int | None) -> Backlog:
        """``conn``'s receive bound, counted by this inbox (for tether's connections)."""
        return self._store.backlog(conn, max_events, max_size)

    def release(self, conn: object) -> None:
        """Stop counting ``conn``'s events (for tether's connections)."""
        self._store.release(conn)

    def monitor(self, conn: object, closed: Callable[[], None]) -> None:
        """Call ``closed()`` once the inbox is closed (see ``Inbox.monitor``). Thread-safe."""
        self._store.monitor(conn, closed)

    def demonitor(self, conn: object) -> None:
        """Forget ``conn``'s ``monitor``. Thread-safe."""
        self._store.demonitor(conn)

    def tell(self, message: object, /) -> None:
        """Add a message (any thread).

        Raises:
            InboxClosedError: the inbox or its loop is closed.
        """
        self.tell_all((message,))

    def tell_all(self, messages: Sequence[object], backlog: Backlog | None = None, /) -> None:
        """Add several messages at once, waking the waiting coroutines once (any thread).

        ``backlog``: the receive bound of the connection that tells them all.

        Raises:
            InboxClosedError: the inbox or its loop is closed (none is added).
        """
        if self._loop.is_closed():
            self._gone()
        self._store.tell_all(messages, backlog)
        # Read without the lock: a coroutine that starts waiting after this
        # look registers first and looks at the messages again (see _wait).
        if self._waiters:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        self._lock.acquire()  # not `with`: this runs once per batch told
        try:
            if not self._waiters or self._wake_pending:
                return
            self._wake_pending = True
        finally:
            self._lock.release()
        if events._get_running_loop() is self._loop:
            self._wake()  # the loop's own thread (e.g. an inline ws_send): no wake-up
            return
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # closed since the look above
            self._gone()

    def _wake(self) -> None:
        """On the loop: every waiting coroutine looks at the messages again."""
        self._lock.acquire()  # not `with`: once per batch told
        self._wake_pending = False
        waiters, self._waiters = self._waiters, []
        self._lock.release()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _gone(self) -> None:
        """The loop is closed: so is the inbox (the owner is gone)."""
        self._store.close()
        raise InboxClosedError("the AsyncInbox's event loop is closed")

    # -- the owner's side ------------------------------------------------------------

    def flush(self, match: Match | None = None) -> list[object]:
        """Remove and return every message ``match`` accepts (all if None); any thread."""
        return self._store.flush(match)

    def close(self) -> None:
        """Close the inbox (any thread): later tells raise, waiting coroutines raise.

        ``InboxClosedError`` for the waiting coroutines, once the messages
        they match are taken; the connections it owns stop (``OwnerDown``).
        """
        self._store.close()
        if events._get_running_loop() is self._loop:
            self._wake()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._wake)

    async def receive(self, timeout: float | None = None, match: Match | None = None) -> object:
        """Remove and return the oldest message for which ``match`` is true (on the loop).

        Args:
            timeout: seconds to wait (``None`` or ``math.inf``: forever).
            match: a predicate; ``None`` matches any message.

        Raises:
            ReceiveTimeout: nothing matched in time (a ``TimeoutError``).
            InboxClosedError: the inbox is closed and holds no matching message.
        """
        return await self._take(match, timeout)

    async def _take(
        self, match: Match | None, timeout: float | None, remove: Match | None = None
    ) -> object:
        """Like ``receive``, removing the message only if ``remove`` agrees (as ``Inbox.take``)."""
        message = self._store._take_nowait(match, remove, _NOTHING)
        if message is not _NOTHING:
            return message  # the usual case: it is there
        return await self._wait(match, timeout, remove)

    async def _wait(
        self, match: Match | None, timeout: float | None, remove: Match | None
    ) -> object:
        loop = self._loop
        if events._get_running_loop() is not loop:
            raise RuntimeError("an AsyncInbox is received from on its own event loop only")
        deadline = (
            None if timeout is None or timeout > threading.TIMEOUT_MAX else loop.time() + timeout
        )
        # Not self._waiters: _wake replaces that list (a waiter added to the
        # one it took would never be woken).
        store, lending = self._store, self._lending
        # Nothing queued matches: reading must go on past a full bound.
        lifted = store._lift_for_waiter() if match is not None else []
        try:
            while True:
                waiter: asyncio.Future[None] = loop.create_future()
                self._lock.acquire()  # not `with`: this runs on every wait
                self._waiters.append(waiter)
                self._lock.release()
                # Registered: a tell from now on wakes this waiter, and one told
                # since the last look notified nobody: look again.
                message = store._take_nowait(match, remove, _NOTHING)
                if message is not _NOTHING:
                    self._unregister(waiter)
                    return message
                if lending.pending:  # a socket the loop may read from now on
                    lending.borrow()
                if deadline is None:
                    try:
                        await waiter  # woken by _wake, which unregistered it
                    except BaseException:
                        self._unregister(waiter)  # cancelled
                        raise
                else:
                    if deadline <= loop.time():
                        self._unregister(waiter)
                        raise ReceiveTimeout(f"no matching message within {timeout} s")
                    timer = loop.call_at(deadline, _expire, waiter)
                    try:
                        await waiter
                    finally:
                        timer.cancel()
                        self._unregister(waiter)  # still there if the timer woke it
                # Woken: look before registering again (usually it is there).
                message = store._take_nowait(match, remove, _NOTHING)
                if message is not _NOTHING:
                    return message
        finally:
            if lifted:
                store._unlift_for_waiter(lifted)

    def _unregister(self, waiter: asyncio.Future[None]) -> None:
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    # -- sending without blocking the loop -------------------------------------------

    async def drain(self, conn: Connection, timeout: float | None = None) -> None:
        """Wait until ``conn``'s send buffer has room (on the loop), as asyncio's ``drain()``.

        ``ws_send``, ``data`` and the request methods block while the send
        buffer holds more than ``send_buffer`` bytes (the server reads
        slower than the client sends): a coroutine that sends a lot awaits
        this first, and its next send then takes the message at once
        (unless another thread fills the buffer meanwhile). Returns at once
        while there is room.

        Args:
            conn: the connection (any: its owner need not be this inbox).
            timeout: seconds to wait at most (default: ``conn``'s ``send_timeout``).

        Raises:
            SendTimeout: still no room after ``timeout`` seconds.
            ConnectionStoppedError: the connection stopped.
        """
        if not conn._send_would_wait():
            return
        loop = self._loop
        if timeout is None:
            timeout = conn.opts.send_timeout
        check_positive_seconds("timeout", timeout, allow_inf=True)
        deadline = loop.time() + min(timeout, threading.TIMEOUT_MAX)
        while conn._send_would_wait():
            if loop.time() >= deadline:
                raise SendTimeout(
                    f"the send buffer stayed over {conn.opts.send_buffer} bytes for "
                    f"{timeout} s: the server reads too slowly"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            cancel = conn._send.on_room(partial(_expire_soon, loop, waiter))
            try:
                if conn._send_would_wait():  # registered, then looked: no room missed
                    timer = loop.call_at(deadline, _expire, waiter)
                    try:
                        await waiter
                    finally:
                        timer.cancel()
            finally:
                cancel()
        if not conn.is_alive():
            raise ConnectionStoppedError(f"{conn!r} has stopped")

    # -- Gun's await functions, for the connections whose events come here ------------

    def _check_receiver(self, conn: Connection, receiver: object, call: str) -> None:
        if receiver is not self:
            raise OwnerError(
                f"{call}: {conn!r}'s events go to {receiver!r}, not to this AsyncInbox"
            )

    async def _conn_take(
        self, conn: Connection, match: Match, timeout: float, remove: Match | None = None
    ) -> object:
        if conn._stopped_for_good():
            # Nothing more will come: what is here, or no waiting out the timeout.
            message = self._store._take_nowait(match, remove, _NOTHING)
            if message is _NOTHING:
                raise ConnectionStoppedError(f"{conn!r} has stopped")
            return message
        return await self._take(match, timeout, remove)

    async def await_up(self, conn: Connection, timeout: float = 5.0) -> ProtocolName:
        """Wait for ``conn``'s ``Up`` and return its protocol (Gun's ``gun:await_up``).

        Raises:
            OwnerError: ``conn``'s events do not come to this inbox.
            ConnectionDownError: a ``Down`` or connection ``Error`` came first.
            ReceiveTimeout: nothing came in time.
        """
        check_positive_seconds("timeout", timeout, allow_inf=True)
        self._check_receiver(conn, conn.owner, "await_up")
        return conn._up_protocol(await self._conn_take(conn, conn._up_match(), timeout))

    async def await_(self, conn: Connection, stream: StreamRef, timeout: float = 5.0) -> object:
        """Remove and return the next event of ``stream`` (Gun's ``gun:await``).

        As [`Connection.await_`][tether.Connection.await_], awaited.

        Raises:
            OwnerError: ``stream``'s events do not come to this inbox.
            StreamLost: the connection went down (or stopped) without answering it.
            ReceiveTimeout: nothing came in time.
        """
        check_positive_seconds("timeout", timeout, allow_inf=True)
        self._check_receiver(conn, conn._receiver_of(stream), "await_")
        match, remove = conn._waiter(stream, trailers=True)
        return conn._stream_event(stream, await self._conn_take(conn, match, timeout, remove))

    async def await_body(self, conn: Connection, stream: StreamRef, timeout: float = 5.0) -> bytes:
        """Wait for the rest of ``stream``'s body and return it (Gun's ``gun:await_body``).

        As [`Connection.await_body`][tether.Connection.await_body], awaited:
        ``timeout`` bounds the whole wait.

        Raises:
            OwnerError: ``stream``'s events do not come to this inbox.
            StreamLost: the connection went down without finishing the body.
            TetherError: the stream's ``Error`` reason, or ``UpgradedError``.
            ReceiveTimeout: the body did not complete in time.
        """
        check_positive_seconds("timeout", timeout, allow_inf=True)
        self._check_receiver(conn, conn._receiver_of(stream), "await_body")
        if conn._body_ended(stream):
            return b""
        deadline = time.monotonic() + timeout
        match, remove = conn._waiter(stream, trailers=False)
        body = Body(stream)
        while True:
            remaining = max(deadline - time.monotonic(), 0.0) or 1e-9
            event = await self._conn_take(conn, match, remaining, remove)
            done = body.add(conn._stream_event(stream, event))
            if done is not None:
                return done
