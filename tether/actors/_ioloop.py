"""One shared I/O thread that reads every connection's socket, and lends its reads.

A reader thread per connection costs a thread (stack, scheduling) per
socket: 10,000 connections would mean 10,000 threads on top of their actor
threads. Instead, one daemon thread waits on a poller for all sockets,
finishes non-blocking connects, reads whatever is ready without blocking
and hands it to the socket's owner through a callback (the transport,
which *tells* its actor). It never asks anything and never blocks; when
the actor is idle and allows it, that tell handles the bytes right here
(:mod:`~tether.actors._mailbox`), parsing them and writing without
blocking, instead of waking the actor thread. It also tells the owner when
a socket that could not take all it was given can take more
(:meth:`Watch.want_write`): writes never block any thread.

**Pausing.** A socket whose reader has more than it can take (events the
owner has not taken yet, see :mod:`~tether.actors._delivery`, or reads its
actor has not handled yet) is *paused* (:meth:`Watch.sync_pause`): it is
no longer read, so the kernel's buffers fill and TCP pushes back on the
server. A paused socket is still watched for the peer's close
(``EPOLLRDHUP``, and ``EPOLLHUP``/``EPOLLERR``, which epoll always
reports): then it is read to its end whatever the pause says (what the
kernel holds is bounded by its buffers), so the owner gets every event the
server sent and then the ``Down``, and an owner that waits only for the
``Down`` is never stuck. Where the loop runs on ``selectors`` (no epoll), a
paused socket is not watched at all, and a close is noticed once it resumes.

**Lending.** A thread that is about to wait for what a socket will bring
(a caller blocked in ``Inbox.receive`` for the only connection that
Inbox owns, see :mod:`~tether.actors._lending`) can read that socket
itself, as a blocking client would: :meth:`Watch.borrow` stops the I/O
thread from reading it (``epoll_ctl`` works from any thread), the
borrower polls and reads it, and :meth:`Watch.give_back` hands it back.
The reply then wakes one thread (the caller, from ``poll``) instead of
two (the I/O thread from ``epoll_wait``, then the caller from its
condition variable): on a small round trip that is most of the cost of a
thread hand-off (``bench/NOTES.md``). Reads stay in order because
every read and its report happen under the watch's lock, whoever makes
them, and a socket is read only while armed for the I/O thread or lent.
Lending needs ``select.epoll`` (Linux); elsewhere the loop runs on
``selectors`` and nothing is lent.

What the poller is asked to report for a socket follows from its state
alone (:meth:`Watch.interest`: one table, in one place), and every change
of that state, by whichever thread, goes through the watch's lock.

Sockets are registered, and closed, by requests queued to the thread and a
wake-up byte on a socket pair: registration is only ever changed by the
I/O thread (other threads only change what a registered socket reports),
and a socket's file descriptor is closed only by the I/O thread, under the
watch's lock, once it no longer watches it, so a number the kernel reuses
for a new socket can never be read, or re-armed, in the old one's name.
Like the timer thread, the thread exits when no socket is left and starts
again with the next one, so an idle process keeps no tether I/O thread.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Literal

from tether._locks import Rank, new_lock, new_rlock

__all__ = [
    "ConnectHandler",
    "IoLoop",
    "PauseSource",
    "ReadHandler",
    "Reading",
    "Watch",
    "WriteHandler",
    "default_loop",
]

log = logging.getLogger("tether.io")

# One read per ready socket and turn. Measured (bench/NOTES.md): larger
# reports, or several reads joined into one report, make wsproto's parsing
# of a 1 MiB message slower, not faster; 64 KiB also bounds how long one
# busy connection keeps the others waiting.
_READ_SIZE = 64 * 1024

# What a poller reports and is asked for: epoll's bits (selectors' are mapped to them).
IN = select.EPOLLIN if hasattr(select, "EPOLLIN") else 0x001
OUT = select.EPOLLOUT if hasattr(select, "EPOLLOUT") else 0x004
ERR = select.EPOLLERR if hasattr(select, "EPOLLERR") else 0x008
HUP = select.EPOLLHUP if hasattr(select, "EPOLLHUP") else 0x010
RDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
# Report once, then stay silent until armed again. Without it a socket
# watched for nothing still reports ERR and HUP (epoll adds them to any
# mask) on every poll until it is armed again: a busy loop.
ONESHOT = getattr(select, "EPOLLONESHOT", 1 << 30)
_CLOSED_BY_PEER = RDHUP | HUP | ERR

ReadHandler = Callable[[bytes | None, BaseException | None], None]
"""Called with ``(data, None)`` for bytes, ``(None, exc)`` at the end.

Called by the I/O thread, or by a thread that borrowed the socket, never
two at once. The end comes once: ``exc`` is ``None`` for EOF, else the
``OSError``.
"""

ConnectHandler = Callable[[OSError | None], None]
"""Called on the I/O thread when a non-blocking connect ends: ``None`` or the error."""

WriteHandler = Callable[[], None]
"""Called (the watch's lock held) once a socket that wanted to write can take more."""

PauseSource = Callable[[], bool]
"""Whether the socket should not be read now (:meth:`Watch.sync_pause` asks it)."""

Ticker = Callable[[], bool]
"""Called on the I/O thread every :data:`TICK` s (:meth:`IoLoop.tick`); False: no more."""

TICK = 0.005
"""Seconds between two calls of the tickers, while there are some."""


def _never_paused() -> bool:
    return False


class _Poller:
    """What the I/O thread waits on: ``epoll`` (lends sockets) or a ``selectors`` selector.

    ``register``/``unregister``/``poll`` are the I/O thread's; ``modify``
    may be called from any thread, under the lock of the socket's watch.
    Masks are epoll's bits (:data:`IN`, :data:`OUT`, :data:`RDHUP`, :data:`ONESHOT`).
    """

    lends = False

    def register(self, fd: int, mask: int) -> None:
        raise NotImplementedError

    def modify(self, fd: int, mask: int) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """The ready descriptors and what they are ready for, waiting up to ``timeout`` s."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _EpollPoller(_Poller):
    # A borrower waits in poll() and is woken by an eventfd (tether.actors._lending).
    lends = hasattr(os, "eventfd") and hasattr(select, "poll")

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: int, mask: int) -> None:
        self._epoll.register(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        self._epoll.modify(fd, mask)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return self._epoll.poll(-1 if timeout is None else timeout)

    def close(self) -> None:
        self._epoll.close()


class _SelectorPoller(_Poller):
    """Without epoll: reads and writes only (a paused socket is not watched at all)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & IN else 0) | (
            selectors.EVENT_WRITE if mask & OUT else 0
        )

    def register(self, fd: int, mask: int) -> None:
        events = self._events(mask)
        if events:
            self._selector.register(fd, events)

    def modify(self, fd: int, mask: int) -> None:
        # Only the I/O thread modifies here (nothing is lent, and actors ask
        # for writes through IoLoop.resync): a selector is not thread-safe.
        events = self._events(mask)
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            if events:
                self._selector.register(fd, events)
            return
        if not events:
            self._selector.unregister(fd)
        elif key.events != events:
            self._selector.modify(fd, events)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        return [
            (
                key.fd,
                (IN if events & selectors.EVENT_READ else 0)
                | (OUT if events & selectors.EVENT_WRITE else 0),
            )
            for key, events in self._selector.select(timeout)
        ]

    def close(self) -> None:
        self._selector.close()


def _new_poller() -> _Poller:
    return _EpollPoller() if hasattr(select, "epoll") else _SelectorPoller()


State = Literal["queued", "connecting", "reading", "ended", "closed"]


class Reading(enum.Enum):
    """Who reads a socket that is being read (:attr:`Watch.reading`)."""

    #: The I/O thread.
    LOOP = "loop"
    #: A thread waiting in the owner's Inbox (it borrowed the socket).
    LENT = "lent"
    #: Nobody: the reader has more than it can take. Only a close is watched for.
    PAUSED = "paused"
    #: The I/O thread, pause or not: the peer closed, so what is left is read to the end.
    TO_THE_END = "to the end"


# Armed for nothing known: the next Watch._arm() sets the mask whatever it was.
_UNKNOWN = -1
# Disabled by epoll after a ONESHOT mask fired: silent, as ONESHOT alone asks.
# Arming ONESHOT again would enable it again, and a hung-up socket would then
# report HUP on every poll.
_DISABLED = -2


class Watch:
    """One socket of the I/O loop: its connect, its reads, and who may read it.

    Returned by :meth:`IoLoop.add` and :meth:`IoLoop.connect`. Thread-safe:
    :meth:`borrow`, :meth:`read`, :meth:`give_back`, :meth:`want_write` and
    :meth:`sync_pause` from any thread; the rest is the I/O thread's.
    """

    __slots__ = (
        "_armed",
        "_lent",
        "_lock",
        "_on_connect",
        "_on_read",
        "_on_writable",
        "_pause_source",
        "_paused",
        "_poller",
        "_to_the_end",
        "_wants_write",
        "fd",
        "loop",
        "pauses",
        "sock",
        "state",
    )

    def __init__(
        self,
        sock: socket.socket,
        on_read: ReadHandler,
        on_connect: ConnectHandler | None,
        on_writable: WriteHandler | None = None,
        pause_source: PauseSource | None = None,
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._on_read = on_read
        self._on_connect = on_connect
        self._on_writable = on_writable
        self._pause_source = pause_source or _never_paused
        # Every read and its report, and every change of state, happen under
        # this lock: it is what keeps the I/O thread and a borrower from
        # reading the socket at once, and reports in order. Reentrant: a
        # report can be handled right here (the actor run inline), and what
        # it does may pause the socket or ask to write.
        self._lock = new_rlock(Rank.WATCH)
        self.state: State = "queued"
        self._lent = False
        self._paused = False
        # How many times reading was paused: a deadline that spanned a pause
        # knows it (tether.actors._keepalive), even if reading resumed since.
        self.pauses = 0
        self._to_the_end = False
        self._wants_write = False
        self._armed = _UNKNOWN  # the mask the poller has, as far as this watch knows
        self._poller: _Poller | None = None  # set while registered
        self.loop: IoLoop | None = None  # the loop it was handed to

    def __repr__(self) -> str:
        return f"<Watch fd={self.fd} {self.state} {self.reading.value}>"

    # -- the table -----------------------------------------------------------------

    @property
    def reading(self) -> Reading:
        """Who reads the socket while it is being read (the state, in one word)."""
        if self._to_the_end:
            return Reading.TO_THE_END
        if self._lent:
            return Reading.LENT
        return Reading.PAUSED if self._paused else Reading.LOOP

    def interest(self) -> int:
        """What the poller must report for this socket now (the lock held).

        ===============  ===================================================
        connecting       ``OUT`` (the connect ended)
        reading, LOOP    ``IN``
        reading, LENT    nothing: the borrower polls it itself
        reading, PAUSED  ``RDHUP`` (the peer closed; HUP and ERR come anyway)
        TO_THE_END       ``IN``
        ended, closed    nothing
        ===============  ===================================================

        Plus ``OUT`` while the socket wants to write (:meth:`want_write`),
        and ``ONESHOT`` whenever nothing is read through the loop, so that
        HUP and ERR, which epoll reports whatever the mask, come once.
        """
        if self.state == "connecting":
            return OUT | ONESHOT
        if self.state != "reading":
            return ONESHOT
        mask = OUT if self._wants_write else 0
        reading = self.reading
        if reading is Reading.LOOP or reading is Reading.TO_THE_END:
            return mask | IN
        if reading is Reading.PAUSED:
            return mask | RDHUP
        return mask | ONESHOT

    def _arm(self) -> bool:
        """Give the poller :meth:`interest` if it changed (the lock held); False if it failed."""
        poller = self._poller
        if poller is None:
            return False
        mask = self.interest()
        if mask == self._armed or (mask == ONESHOT and self._armed == _DISABLED):
            return True
        try:
            poller.modify(self.fd, mask)
        except (OSError, ValueError, KeyError):
            return False  # unregistered meanwhile: nothing to report any more
        self._armed = mask
        return True

    # -- the borrower's (any thread) -----------------------------------------------

    def borrow(self) -> bool:
        """Stop the I/O thread from reading this socket; True if the caller may now read it.

        False while the socket is not (yet, or any longer) being read by the
        loop (it is paused, lent, ended), or where the poller does not lend.
        """
        with self._lock:
            poller = self._poller
            if self.state != "reading" or poller is None or not poller.lends:
                return False
            if self.reading is not Reading.LOOP:
                return False
            self._lent = True
            if not self._arm():  # the poller refused: not ours to lend
                self._lent = False
                return False
            return True

    def read(self) -> bool:
        """Read once without blocking and report it (the borrower); False once it may not.

        False once the socket ended, or was paused: the borrower gives it
        back then, and the I/O thread watches it as the pause says.
        """
        self._lock.acquire()  # hot-path ledger: acquire/release
        try:
            if not self._lent or self.state != "reading" or self._paused:
                return False
            return self._read()
        finally:
            self._lock.release()

    def give_back(self) -> None:
        """Let the I/O thread read this socket again (or watch it as paused). Idempotent."""
        with self._lock:
            if not self._lent:
                return
            self._lent = False
            self._arm()

    # -- the transport's (any thread) ----------------------------------------------

    def want_write(self) -> None:
        """Call the write handler once the socket can take more (once per call)."""
        with self._lock:
            if self._wants_write or self.state in ("ended", "closed"):
                return
            self._wants_write = True
            self._arm()

    def sync_pause(self) -> None:
        """Read the pause source and stop (or start again) reading accordingly.

        Whoever changes what the source says calls this afterwards (directly,
        or through :meth:`IoLoop.resync`): since it reads the source under
        the lock, the last call sees the last change, whatever the order
        of the threads.
        """
        with self._lock:
            paused = self._pause_source()
            if paused == self._paused:
                return
            self._paused = paused
            self.pauses += paused
            self._arm()

    @property
    def paused(self) -> bool:
        """True while reading is paused (a close is still watched for, and read to the end)."""
        return self._paused and not self._to_the_end

    # -- the I/O thread's ----------------------------------------------------------

    def _register(self, poller: _Poller) -> None:
        with self._lock:
            if self.state != "queued":
                return  # closed before the thread got to it
            self.state = "connecting" if self._on_connect is not None else "reading"
            self._paused = self._pause_source()
            self.pauses += self._paused
            mask = self.interest()
            try:
                poller.register(self.fd, mask)
            except (ValueError, KeyError, OSError) as exc:  # closed meanwhile
                error = exc if isinstance(exc, OSError) else OSError(str(exc))
                self.state = "ended"
                if self._on_connect is not None:
                    self._on_connect(error)
                else:
                    self._on_read(None, error)
                return
            self._poller = poller
            self._armed = mask

    def _ready(self, events: int) -> None:
        """The poller reported the socket, ``events`` being what it is ready for."""
        with self._lock:
            if self._armed == IN:
                # The usual case: read by the loop, and asked for nothing else
                # (whatever changes that arms the socket anew).
                if self.state == "reading":
                    self._read()
                return
            poller = self._poller
            if poller is None:
                return
            if self._armed >= 0 and self._armed & ONESHOT:
                self._armed = _DISABLED  # epoll disabled it: armed again below if need be
            if self.state == "connecting":
                self._connected(poller)
            elif self.state == "reading":
                self._ready_to_read_or_write(events)
            self._arm()

    def _ready_to_read_or_write(self, events: int) -> None:
        if events & OUT and self._wants_write:
            self._wants_write = False
            if self._on_writable is not None:
                self._on_writable()
            if self.state != "reading":
                return  # the handler closed it (e.g. a write failed)
        reading = self.reading
        if reading is Reading.PAUSED and events & _CLOSED_BY_PEER:
            # The peer closed: what is left is bounded by the kernel's
            # buffers, and the owner must get the Down after it.
            self._to_the_end = True
            reading = Reading.TO_THE_END
        if (reading is Reading.LOOP or reading is Reading.TO_THE_END) and events & ~OUT:
            # Readable, or hung up, or in error: read() tells which.
            self._read()

    def _connected(self, poller: _Poller) -> None:
        """The socket became writable: its connect ended, well or not."""
        assert self._on_connect is not None
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._end(poller)
            self._on_connect(OSError(error, os.strerror(error)))  # e.g. ConnectionRefusedError
            return
        self.state = "reading"  # before the report: a write it leads to may want OUT
        self._on_connect(None)  # reports Connected before anything is read

    def _read(self) -> bool:
        """Read what is there (one chunk) without blocking; report it, or the end."""
        try:
            data = self.sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True  # nothing after all: wait for the next readiness
        except OSError as exc:
            end: BaseException | None = exc
        else:
            if data:
                self._on_read(data, None)
                return True
            end = None
        # EOF or an error: stop watching (a closed peer stays readable). The
        # socket itself is closed by the owner's close(), on the I/O thread.
        poller = self._poller
        if poller is not None:
            self._end(poller)
        self._on_read(None, end)
        return False

    def _end(self, poller: _Poller) -> None:
        self.state = "ended"
        if poller.lends:
            self._arm()  # any thread may end it: only silence it here
        else:
            poller.unregister(self.fd)
            self._poller = None

    def _fail(self, exc: Exception) -> None:
        """Stop watching after an unexpected error; tell the owner if possible."""
        log.exception("tether I/O: %r failed; it is no longer read", self.sock)
        with self._lock:
            poller = self._poller
            state = self.state
            if poller is not None:
                self._end(poller)
            lost = OSError(f"tether's I/O thread failed on this socket: {exc!r}")
            with contextlib.suppress(Exception):  # logged above; the handler may be what failed
                if self._on_connect is not None and state == "connecting":
                    self._on_connect(lost)
                else:
                    self._on_read(None, lost)

    def _close(self) -> None:
        with self._lock:
            self.state = "closed"
            if self._poller is not None:
                self._poller.unregister(self.fd)
                self._poller = None
            self.sock.close()


Request = Literal["add", "close", "resync"]


class IoLoop:
    """The I/O thread. Thread-safe: every public method."""

    def __init__(self) -> None:
        self._lock = new_lock(Rank.LOOP)
        self._requests: list[tuple[Watch, Request]] = []
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None
        self._woken = False
        self._tickers: list[Ticker] = []
        self._next_tick = 0.0

    def add(
        self,
        sock: socket.socket,
        handler: ReadHandler,
        *,
        on_writable: WriteHandler | None = None,
        pause_source: PauseSource | None = None,
    ) -> Watch:
        """Watch ``sock`` (connected) and call ``handler`` with what it reads.

        ``on_writable`` is called after :meth:`Watch.want_write` once the
        socket can take more; ``pause_source`` says when not to read it
        (:meth:`Watch.sync_pause`). Returns the :class:`Watch` to lend reads
        with and to :meth:`close`.
        """
        watch = Watch(sock, handler, None, on_writable, pause_source)
        self._request(watch, "add")
        return watch

    def connect(
        self,
        sock: socket.socket,
        on_connect: ConnectHandler,
        on_read: ReadHandler,
        *,
        on_writable: WriteHandler | None = None,
        pause_source: PauseSource | None = None,
    ) -> Watch:
        """Finish the non-blocking connect of ``sock``, then watch it like :meth:`add`.

        ``on_connect`` comes first, once, on the I/O thread: with ``None`` the
        socket is connected and ``on_read`` calls follow; with an error they
        do not (the socket is no longer read; the caller still closes the
        watch). There is no deadline here: the connection actor's
        ``connect_timeout`` timer closes an attempt that takes too long.
        """
        watch = Watch(sock, on_read, on_connect, on_writable, pause_source)
        self._request(watch, "add")
        return watch

    def close(self, watch: Watch) -> None:
        """Stop watching the socket and close it, on the I/O thread, soon. Idempotent.

        A handler call may still happen before the thread gets to it; the
        transport's epoch makes such a late report harmless.
        """
        self._request(watch, "close")

    def resync(self, watch: Watch) -> None:
        """Have the I/O thread call :meth:`Watch.sync_pause` (for a thread that may not).

        A thread holding a lock that is taken after a watch's (an Inbox's,
        see :mod:`~tether.actors._lending`) must not take the watch's lock:
        it asks the I/O thread instead.
        """
        self._request(watch, "resync")

    def tick(self, ticker: Ticker) -> None:
        """Call ``ticker`` on the I/O thread every :data:`TICK` s until it returns False.

        Thread-safe. For work that must happen while nothing is ready (a
        lent socket taken back from a caller that is away, see
        :mod:`tether.actors._lending`); the thread polls with a timeout
        only while there are tickers, so an idle loop does not wake up.
        """
        with self._lock:
            self._tickers.append(ticker)
            if len(self._tickers) > 1 or self._thread is None:
                return  # already ticking (or the next thread will)
            wake_w = self._wake_w
        if wake_w is not None:  # not self._woken: that one promises requests
            _wake(wake_w)

    def _tick(self) -> None:
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK
        with self._lock:
            tickers = self._tickers[:]
        done = []
        for ticker in tickers:
            try:
                more = ticker()
            except Exception:  # a bug must not stop the I/O of every connection
                log.exception("tether I/O: ticker %r failed; it is no longer called", ticker)
                more = False
            if not more:
                done.append(ticker)
        if done:
            with self._lock:
                for ticker in done:
                    self._tickers.remove(ticker)  # one entry each: it may be there again

    def _request(self, watch: Watch, request: Request) -> None:
        if request == "add":
            watch.loop = self
        with self._lock:
            self._requests.append((watch, request))
            if self._thread is None:
                # Also for a close: an ended socket is no longer watched, and
                # the thread may have gone, but only the thread closes it.
                wake_r, self._wake_w = socket.socketpair()
                self._woken = False
                self._thread = threading.Thread(
                    target=self._run, args=(wake_r,), daemon=True, name="tether-io"
                )
                self._thread.start()
                return
            if self._woken:
                return  # a wake-up byte is already on its way
            self._woken = True
            wake_w = self._wake_w
        assert wake_w is not None
        _wake(wake_w)

    def _take_requests(self, poller: _Poller, watches: dict[int, Watch]) -> bool:
        """Apply the queued requests; False once nothing is left to watch (thread ends)."""
        while True:
            with self._lock:
                requests, self._requests = self._requests, []
                self._woken = False
                if not requests:
                    if watches:
                        return True
                    self._thread = None  # the next request starts a new thread
                    wake_w, self._wake_w = self._wake_w, None
                    if wake_w is not None:
                        wake_w.close()
                    return False
            for watch, request in requests:
                if request == "add":
                    watch._register(poller)
                    if watch.state != "ended":
                        watches[watch.fd] = watch
                elif request == "resync":
                    watch.sync_pause()
                else:
                    if watches.get(watch.fd) is watch:
                        del watches[watch.fd]
                    watch._close()

    def _run(self, wake_r: socket.socket) -> None:
        poller = _new_poller()
        watches: dict[int, Watch] = {}
        wake_fd = wake_r.fileno()
        try:
            poller.register(wake_fd, IN)
            while True:
                # The lock only when there is something to do (or to end):
                # a request is always followed by a wake-up byte.
                if (self._requests or not watches) and not self._take_requests(poller, watches):
                    return
                # Read without the lock: a ticker added meanwhile sends a wake-up byte.
                ticking = bool(self._tickers)
                for fd, events in poller.poll(TICK if ticking else None):
                    if fd == wake_fd:
                        with contextlib.suppress(OSError):
                            wake_r.recv(4096)
                        continue
                    watch = watches.get(fd)
                    if watch is None:
                        continue  # closed since the poll returned
                    try:
                        watch._ready(events)
                    except Exception as exc:  # a bug must not stop every connection's I/O
                        watch._fail(exc)
                if ticking:
                    self._tick()
        finally:
            poller.close()
            wake_r.close()


def _wake(wake_w: socket.socket) -> None:
    """Send the I/O thread a wake-up byte (not under the loop's lock)."""
    with contextlib.suppress(OSError):  # full buffer: the thread is awake anyway
        wake_w.send(b"\0", socket.MSG_DONTWAIT)


_default: IoLoop | None = None
_default_lock = new_lock(Rank.DEFAULT)


def default_loop() -> IoLoop:
    """The process-wide I/O loop, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = IoLoop()
        return _default
