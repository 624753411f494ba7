"""tether's first transport (a reader thread per connection), kept for side-by-side runs.

``client_tether`` runs as ``tether-threads`` with this transport swapped in,
so that every benchmark run measures the shared I/O thread against the
model it replaced, on the same machine at the same moment. This is the
transport of ``tether/actors/_transport.py`` before the I/O thread (git
history has it); it is not part of tether.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable

from tether._errors import ConnectTimeout, WriteTimeout
from tether.actors._messages import BytesIn, Closed, Connected, ConnectFailed, IoReport
from tether.actors._transport import Transport

__all__ = ["ThreadedTransport"]

# Gun's tcp_opts default: send_timeout 15000 ms, send_timeout_close true.
SEND_TIMEOUT = 15.0
_READ_SIZE = 65536


class ThreadedTransport(Transport):
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
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._sock = sock
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        seconds = int(SEND_TIMEOUT)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            struct.pack("ll", seconds, int((SEND_TIMEOUT - seconds) * 1e6)),
        )
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
