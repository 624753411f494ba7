"""TCP connect, reads and bounded writes: the only code that touches a socket.

The I/O model (see ``docs/design.md`` and ``docs/performance.md``): the
process-wide :mod:`~tether.actors._ioloop` thread reads every connection's
socket and *tells* each actor what arrived, so a connection costs one
thread (its actor), not two. Connecting never blocks the actor thread: an
IP address is connected without blocking and the I/O thread finishes the
connect; a host name is resolved and connected by a short-lived thread
(DNS can block for seconds), which then hands the socket over.

Writes come from whichever thread handles the actor's message (the actor
thread, or a teller running it inline, see :mod:`~tether.actors._mailbox`),
so a write never blocks: what the socket does not take at once waits in a
backlog, and a ``Drain`` report asks the actor thread to send it with
``sendall``, bounded by ``SO_SNDTIMEO`` so a peer that stops reading cannot
block the actor forever. Later writes queue behind the backlog, so bytes
go out in order. ``close`` hands the
socket back to the I/O thread, which closes it once it no longer watches
it (a reused descriptor number is never read in the old socket's name).

:class:`Transport` is the seam: the actor knows nothing else of sockets.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence

from tether._errors import ConnectTimeout, WriteTimeout
from tether.actors._ioloop import IoLoop, Watch, default_loop
from tether.actors._lending import Lending
from tether.actors._messages import BytesIn, Closed, Connected, ConnectFailed, Drain, IoReport

__all__ = ["TcpTransport", "Transport", "unsent"]


def _ip_family(host: str) -> socket.AddressFamily | None:
    """The address family of an IP address literal; None for a host name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


# Gun's tcp_opts default: send_timeout 15000 ms, send_timeout_close true.
SEND_TIMEOUT = 15.0

# Pieces per sendmsg call: Linux refuses more than IOV_MAX (1024) with EMSGSIZE.
_MAX_IOV = 512


def unsent(pieces: Sequence[bytes | bytearray], sent: int) -> list[memoryview]:
    """What is left of ``pieces`` once their first ``sent`` bytes went out (no empty views)."""
    rest: list[memoryview] = []
    for piece in pieces:
        size = len(piece)
        if sent >= size:
            sent -= size
            continue
        rest.append(memoryview(piece)[sent:])
        sent = 0
    return rest


class Transport:
    """What the connection actor needs from a transport."""

    def start(self) -> None:
        """Begin connecting; report ``Connected``/``ConnectFailed``, then reads."""
        raise NotImplementedError

    def write(self, data: bytes | Sequence[bytes | bytearray]) -> None:
        """Send ``data`` (or its pieces, in order) without blocking; ``Drain`` if some must wait.

        Called by the thread handling the actor's message. Raises ``OSError``.
        """
        raise NotImplementedError

    def drain(self) -> None:
        """Send what ``write`` left waiting (actor thread, may block).

        Raises ``OSError`` or ``WriteTimeout``.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection and stop reading it. Idempotent, any thread."""
        raise NotImplementedError

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """``(local, peer)`` addresses while connected."""
        raise NotImplementedError


class TcpTransport(Transport):
    """A TCP connection read by the shared I/O thread.

    Args:
        report: called with each I/O report (the actor's ``tell``), from the
            I/O thread, the connect thread, or ``start``'s caller (a connect
            that fails at once); it must not block.
        epoch: the connection epoch stamped on every report.
        host: host name or address.
        port: TCP port.
        connect_timeout: seconds for DNS + connect (``None``: the OS default).
        loop: the I/O loop (the process-wide one by default).
        lending: where to lend the socket's reads while it is read (the
            owner Inbox's, see :mod:`~tether.actors._lending`), or None.
    """

    def __init__(
        self,
        report: Callable[[IoReport], None],
        epoch: int,
        host: str,
        port: int,
        connect_timeout: float | None,
        *,
        loop: IoLoop | None = None,
        lending: Lending | None = None,
    ) -> None:
        self._report = report
        self._epoch = epoch
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._loop = loop or default_loop()
        self._lending = lending
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._closed = False
        # What the socket did not take yet, in order; touched only by the
        # thread handling the actor's message (the actor's turn).
        self._backlog: deque[memoryview] = deque()
        # Set once the I/O loop has the socket: from then on only it closes it.
        self._watch: Watch | None = None
        self._thread = threading.Thread(
            target=self._connect, daemon=True, name=f"tether-connect-{host}:{port}#{epoch}"
        )

    def start(self) -> None:
        family = _ip_family(self._host)
        if family is None:
            self._thread.start()  # a name: DNS can block, so a thread connects
            return
        # An IP address: a non-blocking connect that the I/O thread finishes.
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            error = sock.connect_ex((self._host, self._port))
        except OSError as exc:
            sock.close()
            self._report(ConnectFailed(self._epoch, exc))
            return
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            self._report(ConnectFailed(self._epoch, OSError(error, os.strerror(error))))
            return
        with self._lock:
            self._sock = sock
            self._watch = self._loop.connect(sock, self._on_connect, self._on_read)
        self._lend()

    def _lend(self) -> None:
        watch, lending = self._watch, self._lending
        if watch is not None and lending is not None:
            lending.lend(watch)

    def _unlend(self) -> None:
        watch, lending = self._watch, self._lending
        if watch is not None and lending is not None:
            lending.unlend(watch)

    def _on_connect(self, error: OSError | None) -> None:
        """The I/O thread's callback when the non-blocking connect ends."""
        with self._lock:
            sock = self._sock
        if error is not None:
            self._unlend()
        if isinstance(error, TimeoutError):  # the kernel gave up (no connect_timeout)
            error = self._timeout()
        if error is not None:
            self._report(ConnectFailed(self._epoch, error))
        elif sock is not None:
            self._configure(sock)
            self._report(Connected(self._epoch))

    def _timeout(self) -> ConnectTimeout:
        seconds = self._connect_timeout
        limit = "the system's limit" if seconds is None else f"{seconds} s"
        return ConnectTimeout(f"connecting to {self._host}:{self._port} took longer than {limit}")

    def _connect(self) -> None:
        """On the connect thread: DNS and a blocking connect, then hand over to the I/O thread."""
        try:
            sock = socket.create_connection(
                (self._host, self._port), timeout=self._connect_timeout
            )
        except TimeoutError:
            self._report(ConnectFailed(self._epoch, self._timeout()))
            return
        except OSError as exc:
            self._report(ConnectFailed(self._epoch, exc))
            return
        try:
            # Set up before it is published: once it is, a close() from
            # another thread may close it under us (EBADF here).
            self._configure(sock)
        except OSError as exc:
            sock.close()
            self._report(ConnectFailed(self._epoch, exc))
            return
        with self._lock:
            if self._closed:
                sock.close()
                return
            self._sock = sock
        # Not under the lock: the report may be handled right here (the actor
        # idle), and handling it may close this transport. Connected goes
        # before the socket is watched, so before any bytes.
        self._report(Connected(self._epoch))
        with self._lock:
            if self._sock is not sock:  # closed by that report (or meanwhile): never watched
                sock.close()
                return
            self._watch = self._loop.add(sock, self._on_read)
        self._lend()

    @staticmethod
    def _configure(sock: socket.socket) -> None:
        """Blocking writes bounded by SO_SNDTIMEO (reads never block: MSG_DONTWAIT)."""
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        seconds = int(SEND_TIMEOUT)
        sock.setsockopt(
            socket.SOL_SOCKET,
            socket.SO_SNDTIMEO,
            struct.pack("ll", seconds, int((SEND_TIMEOUT - seconds) * 1e6)),
        )

    def _on_read(self, data: bytes | None, end: BaseException | None) -> None:
        """The I/O thread's callback: bytes, or the end of the stream (once)."""
        if data is not None:
            self._report(BytesIn(self._epoch, data))
            return
        self._unlend()
        with self._lock:
            closed = self._closed
        self._report(Closed(self._epoch, None if closed else end))

    def write(self, data: bytes | Sequence[bytes | bytearray]) -> None:
        sock = self._sock
        if sock is None:
            raise OSError("not connected")
        # A list is a message's pieces (ClientProtocol.drain's chunks: a frame
        # header and a masked payload): sendmsg writes them as one stream
        # without joining them, which on a 1 MiB message would be a 1 MiB copy.
        pieces = [data] if isinstance(data, bytes) else data
        if self._backlog:
            self._backlog.extend(unsent(pieces, 0))  # behind what is already waiting
            return
        try:
            sent = sock.sendmsg(pieces[:_MAX_IOV], (), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == sum(map(len, pieces)):  # all of it, the usual case: no more calls
            return
        self._backlog.extend(unsent(pieces, sent))  # not empty: some bytes were not sent
        self._report(Drain(self._epoch))

    def drain(self) -> None:
        sock = self._sock
        while self._backlog and sock is not None:
            try:
                sock.sendall(self._backlog[0])
            except (BlockingIOError, TimeoutError) as exc:
                raise WriteTimeout(
                    f"the server did not read for {SEND_TIMEOUT} s; the connection is closed"
                ) from exc
            self._backlog.popleft()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
            watch = self._watch
        if sock is None:
            return
        if watch is not None:
            self._unlend()
            self._loop.close(watch)  # closed by the I/O thread once it stopped watching
        else:
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
