"""A thread waiting in an Inbox reads its connection's socket itself.

Why: a caller that sends a small message and waits for the answer in its
``Inbox`` used to be woken twice per round trip: the I/O thread woke in
``epoll_wait`` for the answer, parsed it (running the idle connection
actor inline) and put the event in the Inbox, whose condition variable
then woke the caller. A blocking client (websocket-client, urllib3) is
woken once, in its own ``recv``. :class:`Lending` lets an Inbox do the
same: while a thread waits in it and it owns exactly one connection whose
socket is being read, the waiting thread borrows that socket from the
I/O thread (:meth:`tether.actors._ioloop.Watch.borrow`), waits for it in
``poll`` and reads it itself; the read is reported exactly as the I/O
thread would have reported it (the connection actor runs inline on the
waiting thread, and the events it tells land in the same Inbox).

What else may arrive meanwhile (an event told by a timer, another
thread, or the supervisor) wakes the poller through a per-thread
``eventfd``, and the waiter finds it in the Inbox as before. Only one
thread of an Inbox borrows at a time; others wait on its condition
variable, woken by what the borrower's reads tell the Inbox.

**Busy polling.** A borrower whose previous wait was short polls the
socket without blocking for up to the Inbox's ``busy_poll`` (50 µs by
default) before it sleeps in ``poll``, the way Linux's ``SO_BUSY_POLL``
or an adaptive mutex spins: a thread that sleeps is woken tens of µs
after its answer arrives on a virtual machine (the vCPU has to be
resumed), which on a small round trip is a fifth of its time
(``bench/NOTES.md``, change 15). It is adaptive so that waits that last (an
idle connection, a slow server) cost no CPU: once a wait has to sleep
for longer than the spin, the next ones sleep at once, until one of them
sleeps for less.

**Holding.** A receive that returns does not give the socket back: the
next receive, usually a few µs later (the caller sent the next message),
goes on reading it without borrowing it again, which saves two
``epoll_ctl`` calls, two lock hand-offs and a tenth of the instructions
of a small round trip (``bench/NOTES.md``, change 18). A socket held while
nobody receives must still be read (a server's ping, a close, events
for ``len(inbox)``): the I/O thread takes it back once a whole tick has
passed with nobody receiving (a :meth:`IoLoop.tick
<tether.actors._ioloop.IoLoop.tick>` every :data:`~tether.actors._ioloop.TICK`
s, 5 ms, while a socket is kept, none while a receive waits or the
connection is idle): 5 to 10 ms after the last receive returned. A tick
that finds the socket held since the tick before takes it back; each
receive marks it held anew (hot-path ledger: flags mirroring state).
A receive that returns
while another thread waits in the same Inbox without a socket gives it
back at once.

**The loan** is one state, :class:`Loan`, for the only socket lent:

=========  =========================================  ==================================
loan       who reads the socket                       next
=========  =========================================  ==================================
FREE       the I/O thread                             ``borrow()`` -> BORROWED
BORROWED   a receive of this Inbox (it borrows,       ``wait_and_read()`` -> POLLING;
           reads, or gives it back)                   ``hold()`` -> HELD;
                                                      ``give_back()`` -> FREE
POLLING    that receive, asleep in ``poll``: a tell   back to BORROWED when it wakes
           writes its eventfd (``wake()``)
HELD       nobody, kept since a receive returned      ``resume()`` -> BORROWED;
           after the last tick                        a tick -> STALE; ``unlend`` -> FREE
STALE      nobody, kept for a whole tick              ``resume()`` -> BORROWED;
                                                      a tick -> FREE (given back)
=========  =========================================  ==================================

Only the borrower changes the loan while it is BORROWED or POLLING; while
it is HELD or STALE, the next receive, the I/O thread's tick or ``unlend``
does, each under the Inbox's lock. Two facts stay attributes of their
own: :attr:`Lending.only`, the socket lent while it is the only one
(which sockets are lent, not who reads them; every receive reads it),
and ``_ticking``, whether the tick is registered with the I/O loop (it
outlives a hold: a tick that finds the socket borrowed again stops
the ticks, and the next hold starts them again).

The connection's transport lends its socket (:meth:`Lending.lend`) once it
is handed to the I/O loop and withdraws it (:meth:`Lending.unlend`) when
it is closed or ends. An Inbox owning several connections lends nothing
(which of them to read would be a guess; the I/O thread reads them all).
"""

from __future__ import annotations

import contextlib
import enum
import os
import select
import threading
import time

from tether.actors._ioloop import Watch

__all__ = ["Lending", "Loan"]


class _Waker:
    """One thread's poll object and the eventfd that interrupts its poll."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        # False once this thread's last wait slept longer than a spin: the
        # next one is not worth spinning for (see "Busy polling" above).
        self._short = True

    def __del__(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self.fd)

    def wake(self) -> None:
        """Interrupt this thread's :meth:`wait` (any thread)."""
        with contextlib.suppress(OSError):  # the counter cannot overflow in practice
            os.eventfd_write(self.fd, 1)

    def wait(self, fd: int, timeout: float | None, busy_poll: float) -> bool:
        """Wait until ``fd`` is readable (True), or a wake-up or the timeout (False).

        Polls without blocking for up to ``busy_poll`` seconds first unless
        the previous wait slept longer than that.
        """
        poll = self._poll
        poll.register(fd, select.POLLIN)  # next to the eventfd, for this wait only
        try:
            events: list[tuple[int, int]] = []
            if busy_poll > 0.0 and self._short:
                spin = busy_poll if timeout is None else min(busy_poll, timeout)
                events = _spin(poll, time.perf_counter() + spin)
            if not events:
                start = time.perf_counter()
                events = poll.poll(None if timeout is None else max(timeout, 0.0) * 1000.0)
                # The sleep alone: measured from the spin's start it would
                # include the wake-up it is there to avoid, and a thread
                # that slept once would seldom spin again (measured).
                self._short = time.perf_counter() - start < busy_poll
        finally:
            poll.unregister(fd)
        readable = False
        for ready, _ in events:
            if ready == self.fd:
                with contextlib.suppress(BlockingIOError):
                    os.eventfd_read(self.fd)
            else:
                readable = True  # readable, closed (POLLNVAL) or hung up: read() tells
        return readable


def _spin(poll: select.poll, end: float) -> list[tuple[int, int]]:
    """Poll without blocking until something is ready or ``perf_counter()`` reaches ``end``."""
    events = poll.poll(0)  # at least once; releases the GIL: other threads run meanwhile
    while not events and time.perf_counter() < end:
        events = poll.poll(0)
    return events


_local = threading.local()


def _waker() -> _Waker:
    waker: _Waker | None = getattr(_local, "waker", None)
    if waker is None:
        waker = _local.waker = _Waker()
    return waker


class Loan(enum.Enum):
    """Who reads the socket lent to an Inbox (the table in the module docstring)."""

    FREE = "free"
    BORROWED = "borrowed"
    POLLING = "polling"
    HELD = "held"
    STALE = "stale"


# Globals, not Loan.X: one look-up instead of two, on every receive.
_FREE, _BORROWED, _POLLING, _HELD, _STALE = (
    Loan.FREE,
    Loan.BORROWED,
    Loan.POLLING,
    Loan.HELD,
    Loan.STALE,
)


class Lending:
    """The sockets lent to one Inbox, and the thread borrowing one of them.

    Every method is called with the Inbox's lock held (``lock``), except
    :meth:`borrow`, :meth:`wait_and_read` and :meth:`give_back`, which
    release it while they borrow, poll, read or give back, and take it
    back before they return; and the I/O thread's tick (``_reclaim``),
    which takes it.
    """

    def __init__(self, lock: threading.Condition, busy_poll: float) -> None:
        self._lock = lock
        self._busy_poll = busy_poll
        self._lent: list[Watch] = []
        #: The socket lent, while it is the only one (else None): read under
        #: the Inbox's lock. hot-path ledger: flags mirroring state
        self.only: Watch | None = None
        #: Who reads the only socket lent (see "The loan" above).
        self.loan = _FREE
        self._borrowed: Watch | None = None  # the socket, unless FREE
        self._waker: _Waker | None = None  # the borrower's, while POLLING: a tell wakes it
        self._ticking = False  # _reclaim is one of the I/O loop's tickers

    # -- the transport's (any thread) ----------------------------------------------

    def lend(self, watch: Watch) -> None:
        """Offer ``watch``'s reads to threads waiting in this Inbox."""
        with self._lock:
            self._lent.append(watch)
            self._count()

    def unlend(self, watch: Watch) -> None:
        """Withdraw ``watch`` (closed or ended); a thread polling it is woken."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._lent.remove(watch)
            self._count()
            if (self.loan is _HELD or self.loan is _STALE) and self._borrowed is watch:
                # Nobody reads it again: nothing to give back (and this may run
                # under the watch's own lock, at the end of its reads).
                self._free()
            self.wake()

    def _count(self) -> None:
        self.only = self._lent[0] if len(self._lent) == 1 else None

    # -- the Inbox's (its lock held) -----------------------------------------------

    def wake(self) -> None:
        """Something was told: interrupt the borrower's poll, if one polls."""
        if self.loan is _POLLING:
            self._waker.wake()  # type: ignore[union-attr]  # set while POLLING

    def resume(self) -> Watch | None:
        """The socket held since the last receive, if any: this receive reads it."""
        loan = self.loan
        if loan is _HELD or loan is _STALE:
            self.loan = _BORROWED
            return self._borrowed
        return None

    def _free(self) -> None:
        """The I/O thread reads the socket again (the lock held)."""
        self.loan = _FREE
        self._borrowed = None

    def hold(self, watch: Watch) -> bool:
        """A receive returns: keep ``watch`` borrowed for the next one (see "Holding").

        False if it may not be kept (it is not the only socket lent any
        more, or has no loop to take it back): give it back then.
        """
        loop = watch.loop
        if loop is None or self.only is not watch:
            return False
        self.loan = _HELD
        if not self._ticking:
            self._ticking = True
            loop.tick(self._reclaim)  # the loop's lock, never taken the other way round
        return True

    def _reclaim(self) -> bool:
        """The I/O thread's tick: take back a socket held a whole tick; False when done."""
        with self._lock:
            watch = self._borrowed
            if self.loan is _HELD:  # a receive returned since the last tick: keep it one more
                self.loan = _STALE
                return True
            if self.loan is not _STALE or watch is None:
                # Nothing kept (a receive may be reading it: it holds it again
                # when it returns, and that starts the ticks again). No ticks
                # while a receive waits: an owner that waits for hours in
                # receive() must not wake the I/O thread every tick.
                self._ticking = False
                return False
            self._free()
            self._ticking = False
        # Not under the Inbox's lock (a watch's lock is never taken with it held).
        # A receive that comes meanwhile finds it still lent, waits without it,
        # and is told what the I/O thread reads from now on.
        watch.give_back()
        return False

    def borrow(self) -> Watch | None:
        """Borrow the only socket lent to this Inbox, if there is one and nobody else has it."""
        watch = self.only
        if self.loan is not _FREE or watch is None:
            return None
        self.loan = _BORROWED
        self._borrowed = watch
        self._lock.release()  # a watch's lock is never taken with the Inbox's held
        try:
            borrowed = watch.borrow()
        finally:
            self._lock.acquire()
        if not borrowed:
            self._free()
            return None
        return watch

    def wait_and_read(self, watch: Watch, timeout: float | None) -> bool:
        """Wait for ``watch`` (or a tell) and read it; False once it can be read no more."""
        waker = _waker()
        self._waker = waker
        self.loan = _POLLING
        self._lock.release()
        try:
            readable = waker.wait(watch.fd, timeout, self._busy_poll)
            # Not polling any more: what the read tells must not wake the
            # next poll (a tell that saw the waker just before costs one
            # spurious turn at most; the Inbox is looked at again anyway).
            # Without the lock: only the borrower changes a loan it has.
            self.loan = _BORROWED
            return watch.read() if readable else True  # the events land in the Inbox
        finally:
            self._lock.acquire()
            self.loan = _BORROWED
            # Not kept: the waker (and its eventfd) goes with its thread.
            self._waker = None

    def give_back(self, watch: Watch) -> None:
        """Return ``watch`` to the I/O thread."""
        self._lock.release()
        try:
            watch.give_back()
        finally:
            self._lock.acquire()
            self._free()
