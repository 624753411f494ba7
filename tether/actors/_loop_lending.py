"""An AsyncInbox's event loop reads its connections' sockets itself.

Why: through tether's I/O thread, an answer wakes two threads (the I/O
thread from ``epoll_wait``, which parses it, then the event loop through
``call_soon_threadsafe``'s self-pipe); an asyncio client (websockets,
aiohttp) wakes one, the loop, from its own selector. :class:`LoopLending`
does the same for an :class:`~tether.AsyncInbox`: each socket lent to it
(every connection whose events go to the inbox and whose actor may run
inline, see ``ConnectionActor._lending_of``) is borrowed from the I/O thread
(:meth:`Watch.borrow <tether.actors._ioloop.Watch.borrow>`) and watched with
``loop.add_reader``; when it is readable, the loop reads it
(:meth:`Watch.read <tether.actors._ioloop.Watch.read>`): the connection actor
runs inline on the loop's thread and the events it tells land in the
inbox without any thread hand-off. Nothing there blocks: reads and writes
are non-blocking, and a connection actor busy on another thread just
queues the bytes (``tether.actors._mailbox``).

Unlike an Inbox's waiting thread, which can poll one socket, a selector
loop watches any number: every connection lent is read by the loop.

**When.** A socket is borrowed by the next coroutine that waits in the inbox
(its socket is read by the I/O thread until then, e.g. while it connects);
a socket the loop stops reading (paused by the receive bound, or by a
connection actor that is behind: :meth:`Watch.read` says False) goes back to
the I/O thread, which watches it as the pause says, and the next wait
borrows it again.

**A duplicate descriptor.** The loop watches ``os.dup`` of the socket's
descriptor, closed only after ``remove_reader`` on the loop's thread: the
socket itself is closed by the I/O thread whenever the connection ends, and
asyncio must never be left watching a number the kernel may give to another
socket. A socket withdrawn from another thread (``unlend``) is given back to
the I/O thread at once; a running loop forgets its duplicate at its next
turn, one that does not run (stopped, or closed) at once: a callback
might never run there, and the duplicate would keep the socket open. A
loop that stops between the two (it was running when the socket was
withdrawn, and stopped before its next turn) closes the duplicate when
it is closed (``loop.close()`` drops the callback that was to forget
it), or forgets it if it runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from asyncio import events

from tether.actors._ioloop import Watch

__all__ = ["LoopLending"]

_NOT_LENT = -2  # what _lent.pop finds for a watch that is not lent
_UNBORROWED = -1  # lent, not read by the loop (yet, or any more)


class LoopLending:
    """The sockets lent to one AsyncInbox, read by its event loop (see the module docstring).

    ``lend`` and ``unlend`` from any thread (the transport's); the rest on
    the loop's thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        # Each socket lent: the duplicate descriptor the loop watches, or _UNBORROWED.
        self._lent: dict[Watch, int] = {}
        #: Some socket lent is not read by the loop: the next wait borrows it
        #: (read without the lock by every wait: a plain attribute).
        self.pending = False
        self._refused = False  # the loop cannot watch sockets (no add_reader)

    # -- the transport's (any thread) --------------------------------------------------

    def lend(self, watch: Watch) -> None:
        """Offer ``watch``'s reads to the loop (borrowed by the next wait)."""
        with self._lock:
            if self._refused:
                return
            self._lent[watch] = _UNBORROWED
            self.pending = True

    def unlend(self, watch: Watch) -> None:
        """Withdraw ``watch`` (it ended, or its events go elsewhere): the I/O thread reads it."""
        with self._lock:
            fd = self._lent.pop(watch, _NOT_LENT)
        if fd < 0:
            return
        watch.give_back()  # idempotent; may run under the watch's own lock (its read's end)
        loop = self._loop
        if events._get_running_loop() is loop or not loop.is_running():
            # Its own thread; or a loop that does not run (stopped, closed: then
            # remove_reader does nothing), where a callback might never run.
            self._forget(fd)
            return
        try:
            loop.call_soon_threadsafe(_Forget(self, fd))
        except RuntimeError:  # closed since the look above, and its selector with it
            self._forget(fd)

    # -- the loop's --------------------------------------------------------------------

    def borrow(self) -> None:
        """Borrow every socket lent that the loop does not read yet, if it can be now."""
        with self._lock:
            waiting = [watch for watch, fd in self._lent.items() if fd == _UNBORROWED]
            self.pending = False
        for watch in waiting:
            if not watch.borrow():  # not being read by the I/O thread now: later
                self.pending = True
                continue
            fd = os.dup(watch.fd)
            with self._lock:
                lent = self._lent.get(watch) == _UNBORROWED
                if lent:
                    self._lent[watch] = fd
            if not lent:  # withdrawn meanwhile
                os.close(fd)
                watch.give_back()
                continue
            try:
                self._loop.add_reader(fd, self._readable, watch)
            except NotImplementedError:  # a loop without add_reader: the I/O thread reads
                self._withdraw_all()
                return

    def _withdraw_all(self) -> None:
        """This loop cannot watch sockets: lend nothing to it, ever."""
        with self._lock:
            lent, self._lent = self._lent, {}
            self.pending = False
            self._refused = True
        for watch, fd in lent.items():
            if fd >= 0:
                os.close(fd)
                watch.give_back()

    def _readable(self, watch: Watch) -> None:
        if not watch.read():  # paused, or ended: the I/O thread watches it from now on
            self._give_back(watch)

    def _give_back(self, watch: Watch) -> None:
        with self._lock:
            fd = self._lent.get(watch, _NOT_LENT)
            if fd < 0:
                return  # withdrawn (by its end, in that very read)
            self._lent[watch] = _UNBORROWED
            self.pending = True
        self._forget(fd)
        watch.give_back()

    def _forget(self, fd: int) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.remove_reader(fd)
        os.close(fd)


class _Forget:
    """The loop's turn to forget a duplicate withdrawn from another thread.

    A loop that stops before that turn and is closed drops its queue
    (``loop.close()`` clears it): then the duplicate is closed as this
    callback is dropped, with no reader left to remove.
    """

    __slots__ = ("_fd", "_lending")

    def __init__(self, lending: LoopLending, fd: int) -> None:
        self._lending = lending
        self._fd = fd

    def __call__(self) -> None:
        fd, self._fd = self._fd, -1
        self._lending._forget(fd)

    def __del__(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
