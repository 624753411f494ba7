"""One shared I/O thread that reads every connection's socket, and lends its reads.

A reader thread per connection costs a thread (stack, scheduling) per
socket: 10,000 connections would mean 10,000 threads on top of their actor
threads. Instead, one daemon thread waits on a poller for all sockets,
finishes non-blocking connects, reads whatever is ready without blocking
and hands it to the socket's owner through a callback (the transport,
which *tells* its actor). It never asks anything and never blocks; when
the actor is idle and allows it, that tell handles the bytes right here
(:mod:`~tether.actors._mailbox`), parsing them and writing without
blocking, instead of waking the actor thread.

**Lending.** A thread that is about to wait for what a socket will bring
(a caller blocked in ``Inbox.receive`` for the only connection that
Inbox owns, see :mod:`~tether.actors._lending`) can read that socket
itself, as a blocking client would: :meth:`Watch.borrow` stops the I/O
thread from watching it (``epoll_ctl`` works from any thread), the
borrower polls and reads it, and :meth:`Watch.give_back` hands it back.
The reply then wakes one thread (the caller, from ``poll``) instead of
two (the I/O thread from ``epoll_wait``, then the caller from its
condition variable): on a small round trip that is most of the cost of a
thread hand-off (``docs/performance.md``). Reads stay in order because
every read and its report happen under the watch's lock, whoever makes
them, and a socket is read only while armed for the I/O thread or lent.
Lending needs ``select.epoll`` (Linux); elsewhere the loop runs on
``selectors`` and nothing is lent.

Sockets are registered, and closed, by requests queued to the thread and a
wake-up byte on a socket pair: registration is only ever changed by the
I/O thread (a borrower only disarms and re-arms a socket the thread has
registered), and a socket's file descriptor is closed only by the I/O
thread, under the watch's lock, once it no longer watches it, so a number
the kernel reuses for a new socket can never be read, or re-armed, in the
old one's name. Like the timer thread, the thread exits when no socket is
left and starts again with the next one, so an idle process keeps no
tether I/O thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["ConnectHandler", "IoLoop", "ReadHandler", "Watch", "default_loop"]

log = logging.getLogger("tether.io")

# One read per ready socket and turn. Measured (docs/performance.md): larger
# reports, or several reads joined into one report, make wsproto's parsing
# of a 1 MiB message slower, not faster; 64 KiB also bounds how long one
# busy connection keeps the others waiting.
_READ_SIZE = 64 * 1024

ReadHandler = Callable[[bytes | None, BaseException | None], None]
"""Called with ``(data, None)`` for bytes, ``(None, exc)`` at the end.

Called by the I/O thread, or by a thread that borrowed the socket, never
two at once. The end comes once: ``exc`` is ``None`` for EOF, else the
``OSError``.
"""

ConnectHandler = Callable[[OSError | None], None]
"""Called on the I/O thread when a non-blocking connect ends: ``None`` or the error."""

Ticker = Callable[[], bool]
"""Called on the I/O thread every :data:`TICK` s (:meth:`IoLoop.tick`); False: no more."""

TICK = 0.005
"""Seconds between two calls of the tickers, while there are some."""


class _Poller:
    """What the I/O thread waits on: ``epoll`` (lends sockets) or a ``selectors`` selector.

    ``register``/``watch_*``/``unregister``/``poll`` are the I/O thread's;
    ``disarm``/``rearm`` are what a borrower may call from any thread, and
    only where :attr:`lends` is true.
    """

    lends = False

    def register(self, fd: int, writable: bool) -> None:
        raise NotImplementedError

    def watch_reads(self, fd: int) -> None:
        raise NotImplementedError

    def unregister(self, fd: int) -> None:
        raise NotImplementedError

    def disarm(self, fd: int) -> None:
        """Stop reporting ``fd`` without forgetting it (any thread, epoll only)."""
        raise NotImplementedError

    def rearm(self, fd: int) -> None:
        """Report reads of a disarmed ``fd`` again (any thread, epoll only)."""
        raise NotImplementedError

    def poll(self, timeout: float | None) -> list[int]:
        """The ready descriptors, waiting up to ``timeout`` s (None: until one is)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _EpollPoller(_Poller):
    # A borrower waits in poll() and is woken by an eventfd (tether.actors._lending).
    lends = hasattr(os, "eventfd") and hasattr(select, "poll")

    def __init__(self) -> None:
        self._epoll = select.epoll()

    def register(self, fd: int, writable: bool) -> None:
        self._epoll.register(fd, select.EPOLLOUT if writable else select.EPOLLIN)

    def watch_reads(self, fd: int) -> None:
        self._epoll.modify(fd, select.EPOLLIN)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            self._epoll.unregister(fd)

    def disarm(self, fd: int) -> None:
        self._epoll.modify(fd, 0)

    def rearm(self, fd: int) -> None:
        self._epoll.modify(fd, select.EPOLLIN)

    def poll(self, timeout: float | None) -> list[int]:
        return [fd for fd, _ in self._epoll.poll(-1 if timeout is None else timeout)]

    def close(self) -> None:
        self._epoll.close()


class _SelectorPoller(_Poller):
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def register(self, fd: int, writable: bool) -> None:
        self._selector.register(fd, selectors.EVENT_WRITE if writable else selectors.EVENT_READ)

    def watch_reads(self, fd: int) -> None:
        self._selector.modify(fd, selectors.EVENT_READ)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def disarm(self, fd: int) -> None:
        # Only the I/O thread disarms here (nothing is lent): forget the socket.
        self.unregister(fd)

    def poll(self, timeout: float | None) -> list[int]:
        return [key.fd for key, _ in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


def _new_poller() -> _Poller:
    return _EpollPoller() if hasattr(select, "epoll") else _SelectorPoller()


State = Literal["queued", "connecting", "reading", "ended", "closed"]


class Watch:
    """One socket of the I/O loop: its connect, its reads, and who may read it.

    Returned by :meth:`IoLoop.add` and :meth:`IoLoop.connect`. Thread-safe:
    :meth:`borrow`, :meth:`read` and :meth:`give_back` from any thread (the
    borrower's); the rest is the I/O thread's.
    """

    __slots__ = (
        "_lent",
        "_lock",
        "_on_connect",
        "_on_read",
        "_poller",
        "fd",
        "loop",
        "sock",
        "state",
    )

    def __init__(
        self, sock: socket.socket, on_read: ReadHandler, on_connect: ConnectHandler | None
    ) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._on_read = on_read
        self._on_connect = on_connect
        # Every read and its report, and every change of state, happen
        # under this lock: it is what keeps the I/O thread and a borrower
        # from reading the socket at once, and reports in order.
        self._lock = threading.Lock()
        self.state: State = "queued"
        self._lent = False
        self._poller: _Poller | None = None  # set while registered
        self.loop: IoLoop | None = None  # the loop it was handed to

    def __repr__(self) -> str:
        lent = ", lent" if self._lent else ""
        return f"<Watch fd={self.fd} {self.state}{lent}>"

    # -- the borrower's (any thread) -----------------------------------------------

    def borrow(self) -> bool:
        """Stop the I/O thread from reading this socket; True if the caller may now read it.

        False while the socket is not (yet, or any longer) being read, or
        where the poller does not lend.
        """
        with self._lock:
            poller = self._poller
            if self._lent or self.state != "reading" or poller is None or not poller.lends:
                return False
            try:
                poller.disarm(self.fd)
            except OSError:
                return False
            self._lent = True
            return True

    def read(self) -> bool:
        """Read once without blocking and report it (the borrower); False once it ended."""
        # Not `with`: half the instructions, on every round trip (see Inbox.take).
        self._lock.acquire()
        try:
            if not self._lent or self.state != "reading":
                return False
            return self._read()
        finally:
            self._lock.release()

    def give_back(self) -> None:
        """Let the I/O thread read this socket again. Idempotent."""
        with self._lock:
            if not self._lent:
                return
            self._lent = False
            poller = self._poller
            if self.state == "reading" and poller is not None:
                # Not contextlib.suppress: this runs on every round trip's critical
                # path, and suppress is three Python calls (docs/performance.md).
                try:  # noqa: SIM105 - see above
                    poller.rearm(self.fd)
                except OSError:
                    pass  # unregistered meanwhile: nothing to read

    # -- the I/O thread's ----------------------------------------------------------

    def _register(self, poller: _Poller) -> None:
        with self._lock:
            if self.state != "queued":
                return  # closed before the thread got to it
            try:
                poller.register(self.fd, writable=self._on_connect is not None)
            except (ValueError, KeyError, OSError) as exc:  # closed meanwhile
                error = exc if isinstance(exc, OSError) else OSError(str(exc))
                self.state = "ended"
                if self._on_connect is not None:
                    self._on_connect(error)
                else:
                    self._on_read(None, error)
                return
            self._poller = poller
            self.state = "connecting" if self._on_connect is not None else "reading"

    def _ready(self) -> None:
        """The poller reported the socket."""
        with self._lock:
            poller = self._poller
            if poller is None:
                return
            if self.state == "connecting":
                self._connected(poller)
            elif self._lent:
                # Readiness seen just before the borrower disarmed it (or a
                # borrower's socket, not re-armed yet): not ours to read, and
                # level-triggered, so it must not stay armed.
                with contextlib.suppress(OSError):
                    poller.disarm(self.fd)
            elif self.state == "reading":
                self._read()

    def _connected(self, poller: _Poller) -> None:
        """The socket became writable: its connect ended, well or not."""
        assert self._on_connect is not None
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            self._end(poller)
            self._on_connect(OSError(error, os.strerror(error)))  # e.g. ConnectionRefusedError
            return
        self._on_connect(None)  # reports Connected before anything is read
        if self.state == "connecting":  # (not closed by that report)
            poller.watch_reads(self.fd)
            self.state = "reading"

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
            with contextlib.suppress(OSError):
                poller.disarm(self.fd)  # any thread may end it: only disarm here
        else:
            poller.unregister(self.fd)
            self._poller = None

    def _fail(self, exc: Exception) -> None:
        """Stop watching after an unexpected error; tell the owner if possible."""
        log.exception("tether I/O: %r failed; it is no longer read", self.sock)
        with self._lock:
            poller = self._poller
            if poller is not None:
                self._end(poller)
            lost = OSError(f"tether's I/O thread failed on this socket: {exc!r}")
            with contextlib.suppress(Exception):  # logged above; the handler may be what failed
                if self._on_connect is not None and self.state == "connecting":
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


class IoLoop:
    """The I/O thread. Thread-safe: :meth:`add`, :meth:`connect` and :meth:`close`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[tuple[Watch, bool]] = []  # (watch, True to add / False to close)
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None
        self._woken = False
        self._tickers: list[Ticker] = []
        self._next_tick = 0.0

    def add(self, sock: socket.socket, handler: ReadHandler) -> Watch:
        """Watch ``sock`` (connected, blocking) and call ``handler`` with what it reads.

        Returns the :class:`Watch` to lend reads with and to :meth:`close`.
        """
        watch = Watch(sock, handler, None)
        self._request(watch, add=True)
        return watch

    def connect(
        self, sock: socket.socket, on_connect: ConnectHandler, on_read: ReadHandler
    ) -> Watch:
        """Finish the non-blocking connect of ``sock``, then watch it like :meth:`add`.

        ``on_connect`` comes first, once, on the I/O thread: with ``None`` the
        socket is connected and ``on_read`` calls follow; with an error they
        do not (the socket is no longer read; the caller still closes the
        watch). There is no deadline here: the connection actor's
        ``connect_timeout`` timer closes an attempt that takes too long.
        """
        watch = Watch(sock, on_read, on_connect)
        self._request(watch, add=True)
        return watch

    def close(self, watch: Watch) -> None:
        """Stop watching the socket and close it, on the I/O thread, soon. Idempotent.

        A handler call may still happen before the thread gets to it; the
        transport's epoch makes such a late report harmless.
        """
        self._request(watch, add=False)

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

    def _request(self, watch: Watch, *, add: bool) -> None:
        if add:
            watch.loop = self
        with self._lock:
            self._requests.append((watch, add))
            if self._thread is None:
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
            for watch, add in requests:
                if add:
                    watch._register(poller)
                    if watch.state != "ended":
                        watches[watch.fd] = watch
                else:
                    if watches.get(watch.fd) is watch:
                        del watches[watch.fd]
                    watch._close()

    def _run(self, wake_r: socket.socket) -> None:
        poller = _new_poller()
        watches: dict[int, Watch] = {}
        wake_fd = wake_r.fileno()
        try:
            poller.register(wake_fd, writable=False)
            while True:
                # The lock only when there is something to do (or to end):
                # a request is always followed by a wake-up byte.
                if (self._requests or not watches) and not self._take_requests(poller, watches):
                    return
                # Read without the lock: a ticker added meanwhile sends a wake-up byte.
                ticking = bool(self._tickers)
                for fd in poller.poll(TICK if ticking else None):
                    if fd == wake_fd:
                        with contextlib.suppress(OSError):
                            wake_r.recv(4096)
                        continue
                    watch = watches.get(fd)
                    if watch is None:
                        continue  # closed since the poll returned
                    try:
                        watch._ready()
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
_default_lock = threading.Lock()


def default_loop() -> IoLoop:
    """The process-wide I/O loop, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = IoLoop()
        return _default
