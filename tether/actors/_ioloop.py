"""One shared I/O thread that reads every connection's socket.

A reader thread per connection costs a thread (stack, scheduling) per
socket: 10,000 connections would mean 10,000 threads on top of their actor
threads. Instead, one daemon thread waits on a ``selectors`` selector for
all sockets, finishes non-blocking connects, reads whatever is ready
without blocking and hands it to the socket's owner through a callback
(the transport, which *tells* its actor). It never asks anything and
never blocks; when the actor is idle and allows it, that tell handles the
bytes right here (:mod:`~tether.actors._mailbox`), parsing them and
writing without blocking, instead of waking the actor thread.

Sockets are registered, and closed, by requests queued to the thread and a
wake-up byte on a socket pair: the selector is only ever touched by its own
thread, and a socket's file descriptor is closed only once the thread has
stopped watching it, so a number the kernel reuses for a new socket can
never be read in the old one's name. Like the timer thread, the thread
exits when no socket is left and starts again with the next one, so an
idle process keeps no tether I/O thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import socket
import threading
from collections.abc import Callable

__all__ = ["ConnectHandler", "IoLoop", "ReadHandler", "default_loop"]

log = logging.getLogger("tether.io")

# One read per ready socket and turn. Measured (docs/performance.md): larger
# reports, or several reads joined into one report, make wsproto's parsing
# of a 1 MiB message slower, not faster; 64 KiB also bounds how long one
# busy connection keeps the others waiting.
_READ_SIZE = 64 * 1024

ReadHandler = Callable[[bytes | None, BaseException | None], None]
"""Called on the I/O thread: ``(data, None)`` for bytes, ``(None, exc)`` at the end.

The end comes once: ``exc`` is ``None`` for EOF, else the ``OSError``.
"""

ConnectHandler = Callable[[OSError | None], None]
"""Called on the I/O thread when a non-blocking connect ends: ``None`` or the error."""


class _Connecting:
    """What the selector holds for a socket whose connect is under way."""

    __slots__ = ("on_connect", "on_read")

    def __init__(self, on_connect: ConnectHandler, on_read: ReadHandler) -> None:
        self.on_connect = on_connect
        self.on_read = on_read


class IoLoop:
    """The selector thread. Thread-safe: :meth:`add` and :meth:`close` from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[tuple[socket.socket, ReadHandler | _Connecting | None]] = []
        self._thread: threading.Thread | None = None
        self._wake_w: socket.socket | None = None
        self._woken = False

    def add(self, sock: socket.socket, handler: ReadHandler) -> None:
        """Watch ``sock`` (connected, blocking) and call ``handler`` with what it reads."""
        self._request(sock, handler)

    def connect(
        self, sock: socket.socket, on_connect: ConnectHandler, on_read: ReadHandler
    ) -> None:
        """Finish the non-blocking connect of ``sock``, then watch it like :meth:`add`.

        ``on_connect`` comes first, once, on the I/O thread: with ``None`` the
        socket is connected and ``on_read`` calls follow; with an error they
        do not (the socket is no longer watched; the caller closes it). There
        is no deadline here: the connection actor's ``connect_timeout`` timer
        closes an attempt that takes too long.
        """
        self._request(sock, _Connecting(on_connect, on_read))

    def close(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` and close it, on the I/O thread, soon. Idempotent.

        A handler call for ``sock`` may still happen before the thread gets
        to it; the transport's epoch makes such a late report harmless.
        """
        self._request(sock, None)

    def _request(self, sock: socket.socket, handler: ReadHandler | _Connecting | None) -> None:
        with self._lock:
            self._requests.append((sock, handler))
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
        with contextlib.suppress(OSError):  # full buffer: the thread is awake anyway
            wake_w.send(b"\0", socket.MSG_DONTWAIT)

    def _take_requests(self, selector: selectors.BaseSelector) -> bool:
        """Apply the queued requests; False once nothing is left to watch (thread ends)."""
        while True:
            with self._lock:
                requests, self._requests = self._requests, []
                self._woken = False
                if not requests:
                    if len(selector.get_map()) > 1:  # more than the wake-up socket
                        return True
                    self._thread = None  # the next request starts a new thread
                    wake_w, self._wake_w = self._wake_w, None
                    if wake_w is not None:
                        wake_w.close()
                    return False
            for sock, handler in requests:
                if isinstance(handler, _Connecting):
                    try:
                        selector.register(sock, selectors.EVENT_WRITE, handler)
                    except (ValueError, KeyError, OSError) as exc:  # closed meanwhile
                        error = exc if isinstance(exc, OSError) else OSError(str(exc))
                        handler.on_connect(error)
                elif handler is not None:
                    try:
                        selector.register(sock, selectors.EVENT_READ, handler)
                    except (ValueError, KeyError, OSError) as exc:  # closed meanwhile
                        handler(None, exc)
                else:
                    with contextlib.suppress(KeyError, ValueError):
                        selector.unregister(sock)
                    sock.close()

    def _run(self, wake_r: socket.socket) -> None:
        with selectors.DefaultSelector() as selector, wake_r:
            selector.register(wake_r, selectors.EVENT_READ, None)
            watched = selector.get_map()
            while True:
                # The lock only when there is something to do (or to end):
                # a request is always followed by a wake-up byte.
                if (self._requests or len(watched) <= 1) and not self._take_requests(selector):
                    return
                for key, _ in selector.select():
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            wake_r.recv(4096)
                        continue
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        if isinstance(key.data, _Connecting):
                            self._connected(selector, sock, key.data)
                        else:
                            self._read(selector, sock, key.data)
                    except Exception as exc:  # a bug must not stop every connection's I/O
                        self._give_up(selector, sock, key.data, exc)

    @staticmethod
    def _give_up(
        selector: selectors.BaseSelector,
        sock: socket.socket,
        how: ReadHandler | _Connecting,
        exc: Exception,
    ) -> None:
        """Stop watching ``sock`` after an unexpected error; tell its owner if possible."""
        log.exception("tether I/O: %r failed; it is no longer read", sock)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        lost = OSError(f"tether's I/O thread failed on this socket: {exc!r}")
        with contextlib.suppress(Exception):  # logged above; the handler may be what failed
            if isinstance(how, _Connecting):
                how.on_connect(lost)
            else:
                how(None, lost)

    @staticmethod
    def _connected(
        selector: selectors.BaseSelector, sock: socket.socket, how: _Connecting
    ) -> None:
        """The socket became writable: its connect ended, well or not."""
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            selector.unregister(sock)
            how.on_connect(OSError(error, os.strerror(error)))  # e.g. ConnectionRefusedError
            return
        how.on_connect(None)  # reports Connected before anything is read
        selector.modify(sock, selectors.EVENT_READ, how.on_read)

    @staticmethod
    def _read(selector: selectors.BaseSelector, sock: socket.socket, handler: ReadHandler) -> None:
        """Read what is there (one chunk) without blocking; report it, or the end."""
        try:
            data = sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return  # nothing after all: wait for the next readiness
        except OSError as exc:
            end: BaseException | None = exc
        else:
            if data:
                handler(data, None)
                return
            end = None
        # EOF or an error: stop watching (a closed peer stays readable). The
        # socket itself is closed by the transport's close().
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        handler(None, end)


_default: IoLoop | None = None
_default_lock = threading.Lock()


def default_loop() -> IoLoop:
    """The process-wide I/O loop, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = IoLoop()
        return _default
