"""tether's former I/O model (a reader thread per connection), for side-by-side runs.

``worker.py`` runs the client ``tether-threads`` with :class:`ThreadedTransport`
swapped in, so that every benchmark run measures the shared I/O thread
against the model it replaced, on the same machine at the same moment. It
is tether's own ``TcpTransport`` with the I/O loop replaced by
:class:`ReaderThreads`: every connection is connected by a thread (as
before, also for IP addresses) and read by a thread of its own that blocks
in ``recv``. Writes that leave a backlog are followed by a thread that waits
for the socket to take more (the shared loop's job otherwise); reading is
never paused (no receive bound, no flow control: a reader thread blocks in
``recv``). Not part of tether.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

from tether.actors._ioloop import (
    ConnectHandler,
    IoLoop,
    PauseSource,
    ReadHandler,
    Watch,
    WriteHandler,
)
from tether.actors._transport import TcpTransport

__all__ = ["ThreadedTransport"]

_READ_SIZE = 65536


class _ThreadedWatch(Watch):
    """A watch no poller has: asked to write, a thread waits until the socket can take more."""

    __slots__ = ()

    def want_write(self) -> None:
        threading.Thread(target=self._when_writable, daemon=True).start()

    def _when_writable(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            select.select([], [self.sock], [], 60.0)
        with self._lock:
            if self._on_writable is not None and self.sock.fileno() >= 0:
                self._on_writable()


class ReaderThreads(IoLoop):
    """An "I/O loop" that gives every socket a reader thread blocked in ``recv``."""

    def add(
        self,
        sock: socket.socket,
        handler: ReadHandler,
        *,
        on_writable: WriteHandler | None = None,
        pause_source: PauseSource | None = None,
    ) -> Watch:
        threading.Thread(target=self._read_loop, args=(sock, handler), daemon=True).start()
        # Never registered with a poller: never lent, never paused.
        return _ThreadedWatch(sock, handler, None, on_writable)

    def connect(
        self,
        sock: socket.socket,
        on_connect: ConnectHandler,
        on_read: ReadHandler,
        *,
        on_writable: WriteHandler | None = None,
        pause_source: PauseSource | None = None,
    ) -> Watch:
        raise NotImplementedError("ThreadedTransport connects on a thread")

    def close(self, watch: Watch) -> None:
        sock = watch.sock
        # On Linux close() alone does not wake a thread blocked in recv().
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    @staticmethod
    def _read_loop(sock: socket.socket, handler: ReadHandler) -> None:
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except OSError as exc:
                handler(None, exc)
                return
            if not data:
                handler(None, None)
                return
            handler(data, None)


_THREADS = ReaderThreads()


class ThreadedTransport(TcpTransport):
    """tether's transport with a connect thread and a reader thread per connection."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs, loop=_THREADS)  # type: ignore[arg-type]

    def start(self) -> None:
        self._start_connect_thread()  # always the connect thread, as before
