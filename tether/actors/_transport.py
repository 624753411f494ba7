"""TCP connect, reads and bounded writes: the only code that touches a socket.

The I/O model (see ``docs/design.md``): one reader thread per connection,
which connects (DNS and ``connect`` can block for seconds, so never on the
actor thread), then loops on ``recv`` and *tells* the actor every chunk.
It never parses anything and never asks the actor; writes go out from the
actor thread with ``sendall``, bounded by ``SO_SNDTIMEO`` so a peer that
stops reading cannot block the actor forever. ``close`` uses
``shutdown(SHUT_RDWR)`` first, because on Linux ``close`` alone does not wake
a thread blocked in ``recv``.

:class:`Transport` is the seam the performance work can replace (for
instance by one shared selector thread) without touching the actor.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from tether._errors import ConnectTimeout, WriteTimeout
from tether.actors._messages import BytesIn, Closed, Connected, ConnectFailed, IoReport

__all__ = ["TcpTransport", "Transport"]

# Gun's tcp_opts default: send_timeout 15000 ms, send_timeout_close true.
SEND_TIMEOUT = 15.0
_READ_SIZE = 65536


class Transport:
    """What the connection actor needs from a transport."""

    def start(self) -> None:
        """Begin connecting; report ``Connected``/``ConnectFailed``, then reads."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Send all of ``data`` (actor thread). Raises ``OSError`` or ``WriteTimeout``."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection and make the reader exit. Idempotent, any thread."""
        raise NotImplementedError

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """``(local, peer)`` addresses while connected."""
        raise NotImplementedError


class TcpTransport(Transport):
    """A TCP connection with its reader thread.

    Args:
        report: called from the reader thread with each I/O report (the
            actor's ``tell``); it must not block.
        epoch: the connection epoch stamped on every report.
        host: host name or address.
        port: TCP port.
        connect_timeout: seconds for DNS + connect (``None``: the OS default).
    """

    def __init__(
        self,
        report: Callable[[IoReport], None],
        epoch: int,
        host: str,
        port: int,
        connect_timeout: float | None,
    ) -> None:
        self._report = report
        self._epoch = epoch
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"tether-io-{host}:{port}#{epoch}"
        )

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            sock = socket.create_connection(
                (self._host, self._port), timeout=self._connect_timeout
            )
        except TimeoutError:
            self._report(
                ConnectFailed(
                    self._epoch,
                    ConnectTimeout(
                        f"connecting to {self._host}:{self._port} took longer than "
                        f"{self._connect_timeout} s"
                    ),
                )
            )
            return
        except OSError as exc:
            self._report(ConnectFailed(self._epoch, exc))
            return
        try:
            # Set up before it is published: once it is, close() from another
            # thread may close it under us (EBADF here).
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            seconds = int(SEND_TIMEOUT)
            sock.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_SNDTIMEO,
                struct.pack("ll", seconds, int((SEND_TIMEOUT - seconds) * 1e6)),
            )
        except OSError as exc:
            sock.close()
            self._report(ConnectFailed(self._epoch, exc))
            return
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._sock = sock
        self._report(Connected(self._epoch))
        self._read_loop(sock)

    def _read_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except OSError as exc:
                self._report(Closed(self._epoch, None if self._closed else exc))
                return
            if not data:
                self._report(Closed(self._epoch, None))
                return
            self._report(BytesIn(self._epoch, data))

    def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise OSError("not connected")
        try:
            sock.sendall(data)
        except (BlockingIOError, TimeoutError) as exc:
            raise WriteTimeout(
                f"the server did not read for {SEND_TIMEOUT} s; the connection is closed"
            ) from exc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):  # already disconnected: nothing to wake
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        sock = self._sock
        if sock is None:
            return None
        try:
            local, peer = sock.getsockname(), sock.getpeername()
        except OSError:
            return None
        return (local[0], local[1]), (peer[0], peer[1])
