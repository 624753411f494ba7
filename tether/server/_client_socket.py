"""The server's end of one TCP connection, and the rules for closing it safely.

A socket is read and written only by the thread that serves its connection
(its owner), but :meth:`Server.stop` and :meth:`Server.drop_connections`
must end a connection from another thread. Closing a file descriptor while
another thread is blocked in ``recv`` on it neither wakes that thread on
Linux nor is safe (the number can be reused by the next ``accept``), so
other threads only ever ``shutdown(SHUT_RDWR)`` the socket, which wakes a
blocked ``recv`` or ``send`` at once, and the owner closes the descriptor
when it is done. Both happen under one lock, so a shutdown never races with
the close.

A connection stops counting as active (``on_forget``) before its peer can
see it closed, so a test that saw EOF can rely on ``active_connections``.

With TLS the socket stays a plain one (so that the shutdown from another
thread stays safe) and :class:`ServerTls` encrypts on the owner thread.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable

from tether.server._tls import ServerTls

__all__ = ["ClientSocket"]

_RECV_SIZE = 65536
# How long a graceful close keeps reading (and discarding) what the peer still
# sends after our FIN, so that unread bytes do not turn the close into a reset
# that could destroy the end of our response in the peer's receive buffer.
_LINGER = 1.0


class ClientSocket:
    """One accepted connection: blocking I/O for its owner, shutdown for everyone.

    Args:
        sock: The accepted, connected socket; this object now owns it.
        number: The connection's serial number (names its thread).
        on_forget: Called once, from whichever thread ends the connection
            first, to remove it from the server's active set.
        tls_context: A server ``ssl.SSLContext`` to speak TLS with (after
            :meth:`start_tls`); None for plain TCP.
    """

    def __init__(
        self,
        sock: socket.socket,
        number: int,
        on_forget: Callable[[ClientSocket], None],
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.number = number
        self.aborted = threading.Event()
        self._sock = sock
        self._on_forget = on_forget
        self._lock = threading.Lock()
        self._forgotten = False
        self._closed = False
        self._tls = (
            None if tls_context is None else ServerTls(tls_context, self._raw_recv, self._raw_send)
        )

    def start_tls(self) -> bool:
        """Do the TLS handshake if the server speaks TLS; False if it failed. Owner thread only."""
        return self._tls is None or self._tls.handshake()

    def recv(self) -> bytes:
        """Receive some bytes; ``b""`` on EOF, error, timeout or abort. Owner thread only."""
        if self._tls is not None:
            return self._tls.recv()
        return self._raw_recv()

    def send(self, data: bytes) -> bool:
        """Send all of ``data``; False if the connection is gone. Owner thread only."""
        if self.aborted.is_set():
            return False
        if not data:
            return True
        if self._tls is not None:
            return self._tls.send(data)
        return self._raw_send(data)

    def _raw_recv(self) -> bytes:
        if self.aborted.is_set():
            return b""
        try:
            return self._sock.recv(_RECV_SIZE)
        except OSError:  # includes TimeoutError and a reset by the peer
            return b""

    def _raw_send(self, data: bytes) -> bool:
        if self.aborted.is_set():
            return False
        try:
            self._sock.sendall(data)
        except OSError:
            return False
        return True

    def set_timeout(self, seconds: float | None) -> None:
        """Bound the following ``recv`` calls (None: block). Owner thread only."""
        with contextlib.suppress(OSError):
            self._sock.settimeout(seconds)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless aborted first; True if the full time passed.

        Thread-safe, but meant for the owner thread.
        """
        return not self.aborted.wait(seconds)

    def abort(self) -> None:
        """End the connection now, without a goodbye. Thread-safe and idempotent.

        The peer sees the connection closed when this returns; a blocked
        ``recv`` or ``send`` of the owner thread returns at once. The owner
        closes the descriptor afterwards (see :meth:`release`).
        """
        self._forget()
        self.aborted.set()
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    def close_gracefully(self) -> None:
        """Send FIN, discard what the peer still sends (bounded), then close. Owner thread only.

        With TLS, the close_notify alert goes first.
        """
        self._forget()
        if self._tls is not None and not self.aborted.is_set():
            self._tls.close_notify()
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + _LINGER
        while not self.aborted.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.set_timeout(remaining)
            if not self._raw_recv():
                break
        self.release()

    def release(self) -> None:
        """Close the descriptor (the peer sees a close). Idempotent.

        Owner thread, or :meth:`Server.stop` once the owner has been given up on.
        """
        self._forget()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(OSError):
                self._sock.close()

    def _forget(self) -> None:
        with self._lock:
            if self._forgotten:
                return
            self._forgotten = True
        self._on_forget(self)
