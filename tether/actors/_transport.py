"""TCP connect, reads and writes that never block: the only code that touches a socket.

The I/O model (see ``docs/design.md`` and ``bench/NOTES.md``): the
process-wide :mod:`~tether.actors._ioloop` thread reads every connection's
socket and *tells* each actor what arrived, so a connection costs one
thread (its actor), not two. Connecting never blocks the actor thread: an
IP address is connected without blocking and the I/O thread finishes the
connect; a host name is resolved and connected by a short-lived thread
(DNS can block for seconds), which then hands the socket over.

Writes come from whichever thread handles the actor's message (the actor
thread, or a teller running it inline, see :mod:`~tether.actors._mailbox`),
and never block: what the socket does not take at once waits in a
*backlog*, later writes queue behind it (bytes go out in order), and the
I/O thread tells the actor (``Writable``) when the socket can take more,
which the actor then sends, again without blocking. No thread ever waits
for a slow peer, so ``close()``, timers and reads go on while a backlog
drains. How long a backlog may wait is the actor's rule (``send_timeout``):
:attr:`TcpTransport.waiting_since` says since when its oldest byte waits.

Reads are paused (:meth:`TcpTransport.sync_reads`) while the actor's
``hold_reads`` says so (the owner has not taken enough of what it was
told, or a stream's ``flow`` ran out) and while the actor has not handled
:data:`READ_AHEAD` bytes of what was reported (its mailbox is bounded
too). ``close`` hands the socket back to the I/O thread, which closes it
once it no longer watches it (a reused descriptor number is never read in
the old socket's name).

:class:`Transport` is the seam: the actor knows nothing else of sockets.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tether._errors import ConnectTimeout
from tether._locks import Rank, new_lock
from tether.actors._ioloop import IoLoop, Watch, default_loop
from tether.actors._lending import Lending
from tether.actors._loop_lending import LoopLending
from tether.actors._messages import (
    BytesIn,
    Closed,
    Connected,
    ConnectFailed,
    IoReport,
    Resolved,
    Writable,
)
from tether.protocol._validate import ip_version

__all__ = ["READ_AHEAD", "TcpTransport", "Transport", "UnixTransport", "check_unix_path", "unsent"]


def _ip_family(host: str) -> socket.AddressFamily | None:
    """The address family of an IP address literal; None for a host name."""
    version = ip_version(host)
    if version is None:
        return None
    return socket.AF_INET6 if version == 6 else socket.AF_INET


#: The resolver the connect thread calls (tests stall it: a real lookup cannot be made to).
resolve = socket.getaddrinfo

# Pieces per sendmsg call: Linux refuses more than IOV_MAX (1024) with EMSGSIZE.
_MAX_IOV = 512

READ_AHEAD = 128 * 1024
"""Bytes reported to the actor and not yet handled past which the socket is not read.

Reports are usually handled at once by the reading thread (the actor run
inline); they wait in the actor's mailbox only while another thread has
its turn (an event handler, an ``info()``, a slow owner's ``tell``), and
then this bounds how much: two reads. It is also how far past its receive
bound a connection may deliver: what was read is delivered.
"""


def unsent(pieces: Sequence[bytes | bytearray | memoryview], sent: int) -> list[memoryview]:
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
        """Begin connecting; report ``Resolved``, ``Connected``/``ConnectFailed``, then reads."""
        raise NotImplementedError

    def write(self, data: bytes | Sequence[bytes | bytearray]) -> bool:
        """Send ``data`` (or its pieces, in order) without blocking; the rest waits.

        What the socket does not take waits in the backlog, and ``Writable``
        is reported once the socket can take more. Returns True if bytes
        wait now. Called by the thread handling the actor's message. Raises
        ``OSError``.
        """
        raise NotImplementedError

    def flush(self) -> None:
        """Send what waits in the backlog, without blocking (after ``Writable``).

        Raises ``OSError``.
        """
        raise NotImplementedError

    @property
    def backlog_size(self) -> int:
        """Bytes written that the socket has not taken yet."""
        raise NotImplementedError

    @property
    def waiting_since(self) -> float | None:
        """When the oldest byte of the backlog was written (its clock), or None if empty."""
        raise NotImplementedError

    @property
    def reads_paused(self) -> bool:
        """True while the socket is not read (see the module docstring)."""
        raise NotImplementedError

    @property
    def pauses(self) -> int:
        """How many times reading was paused so far."""
        raise NotImplementedError

    def consumed(self, size: int) -> None:
        """The actor handled a ``BytesIn`` of ``size`` bytes (its turn)."""
        raise NotImplementedError

    @property
    def bytes_read(self) -> int:
        """Bytes read and handled so far (the actor's turn reads it)."""
        raise NotImplementedError

    def sync_reads(self) -> None:
        """``hold_reads`` may have changed: pause or resume reading now (the actor's turn)."""
        raise NotImplementedError

    def relend(self, lending: Lending | LoopLending | None) -> None:
        """Lend the socket's reads to another Inbox (or to none): the owner changed."""
        raise NotImplementedError

    def resync_reads(self) -> None:
        """Like :meth:`sync_reads`, but done by the I/O thread (any thread, any locks held)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection and stop reading it. Idempotent, any thread."""
        raise NotImplementedError

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        """``(local, peer)`` addresses while connected."""
        raise NotImplementedError


def _not_held() -> bool:
    return False


class TcpTransport(Transport):
    """A TCP connection read by the shared I/O thread.

    Args:
        report: called with each I/O report (the actor's ``tell``), from the
            I/O thread, the connect thread, or ``start``'s caller (a connect
            that fails at once); it must not block.
        epoch: the connection epoch stamped on every report.
        host: host name or address.
        port: TCP port.
        connect_timeout: seconds for the TCP connect to each address
            (``None``: the OS default); the actor bounds the whole attempt.
        loop: the I/O loop (the process-wide one by default).
        lending: where to lend the socket's reads while it is read (the
            owner Inbox's, see :mod:`~tether.actors._lending`), or None.
        hold_reads: whether the actor wants reading paused now (read by
            any thread, so it must only read state); see :meth:`sync_reads`.
        clock: the clock :attr:`waiting_since` is read on (the scheduler's).
        resolve_too: a host name the lookup resolves as well, reported in
            ``Resolved.too`` (the origin's, for a ``socks5://`` proxy, which is
            given an address): the connect thread looks it up after ``host``.
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
        lending: Lending | LoopLending | None = None,
        hold_reads: Callable[[], bool] = _not_held,
        clock: Callable[[], float] = time.monotonic,
        resolve_too: str | None = None,
    ) -> None:
        self._report = report
        self._resolve_too = resolve_too
        self._epoch = epoch
        self._host = host
        self._port = port
        self._connect_timeout = connect_timeout
        self._loop = loop or default_loop()
        self._lending = lending
        self._hold_reads = hold_reads
        self._clock = clock
        self._lock = new_lock(Rank.TRANSPORT)
        self._sock: socket.socket | None = None
        self._closed = False
        # What the socket did not take yet, in order, with the time each piece
        # was written; touched only by the thread handling the actor's message.
        # None until the socket first refuses bytes (an empty deque is ~760 B).
        self._backlog: deque[tuple[memoryview, float]] | None = None
        self._backlog_size = 0
        # Read-ahead (READ_AHEAD): bytes reported, written only by the reading
        # thread (under the watch's lock), and bytes handled, written only by
        # the actor's turn. _reads_wait is set by the reader when it paused
        # for them and cleared by the actor: each writes its counter before it
        # reads the other's flag or counter, so one of them always sees the
        # other (see _on_read and consumed).
        self._reported = 0
        self._consumed = 0
        self._reads_wait = False
        # Set once the I/O loop has the socket: from then on only it closes it.
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None  # the connect thread, if a name needs one

    def _pause_source(self) -> bool:
        """What the watch asks (any thread, under its lock): is reading paused?"""
        return self._reads_wait or self._hold_reads()

    def _direct(self) -> tuple[socket.AddressFamily, Any] | None:
        """The family and address to connect to without DNS; None for a host name."""
        family = _ip_family(self._host)
        if family is None or self._resolve_too is not None:
            return None
        return family, (self._host, self._port)

    def _connect_error(self, code: int) -> OSError:
        """The error of a connect that failed at once with ``code``."""
        return OSError(code, os.strerror(code))

    def _looked_up_at_once(self) -> None:
        """An IP address is its own lookup: report it done (the phases, the lookup's timer)."""
        self._report(Resolved(self._epoch, (self._host,)))

    def start(self) -> None:
        direct = self._direct()
        if direct is None:
            self._start_connect_thread()  # a name: DNS can block
            return
        self._looked_up_at_once()
        # An address: a non-blocking connect that the I/O thread finishes.
        family, address = direct
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            error = sock.connect_ex(address)
        except OSError as exc:
            sock.close()
            self._report(ConnectFailed(self._epoch, exc))
            return
        if error not in (0, errno.EINPROGRESS):
            sock.close()
            self._report(ConnectFailed(self._epoch, self._connect_error(error)))
            return
        with self._lock:
            self._sock = sock
            self._watch = self._loop.connect(
                sock,
                self._on_connect,
                self._on_read,
                on_writable=self._on_writable,
                pause_source=self._pause_source,
            )
        self._lend()

    def _start_connect_thread(self) -> None:
        """A short-lived thread resolves the name and connects (see ``_connect``).

        Built here, not in ``__init__``: an address needs none, and an unused
        ``Thread`` object held ~2 KiB per connection.
        """
        self._thread = threading.Thread(
            target=self._connect, daemon=True, name=f"tether-connect-{self._where()}#{self._epoch}"
        )
        self._thread.start()

    def _lend(self) -> None:
        watch, lending = self._watch, self._lending
        if watch is not None and lending is not None:
            lending.lend(watch)

    def relend(self, lending: Lending | LoopLending | None) -> None:
        """Lend the socket's reads to another Inbox (or to none): the owner changed."""
        self._unlend()
        watch = self._watch
        if watch is not None:
            # The old owner's Inbox may have kept it between two receives, and
            # unlend gives back nothing (it may be ending): the I/O thread reads
            # it again, until a new borrower takes it. (Idempotent.)
            watch.give_back()
        self._lending = lending
        self._lend()

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

    def _where(self) -> str:
        """Where this transport connects to, for messages and thread names."""
        return f"{self._host}:{self._port}"

    def _timeout(self) -> ConnectTimeout:
        seconds = self._connect_timeout
        limit = "the system's limit" if seconds is None else f"{seconds} s"
        return ConnectTimeout(f"connecting to {self._where()} took longer than {limit}")

    def _connect(self) -> None:
        """On the connect thread: DNS, a blocking connect, then hand over to the I/O thread.

        The end of the lookup is reported (``Resolved``) before connecting:
        the actor times the two phases apart (``domain_lookup_timeout``) and
        tells its event handler.
        """
        try:
            addresses = self._lookup(self._host)
            too = () if self._resolve_too is None else self._lookup(self._resolve_too)
        except OSError as exc:
            self._report(ConnectFailed(self._epoch, exc))
            return
        self._report(Resolved(self._epoch, addresses, too))
        with self._lock:
            given_up = self._closed  # meanwhile (a lookup past its deadline)
        if given_up:
            return
        try:
            sock = self._connect_first(addresses)
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
            self._watch = self._loop.add(
                sock, self._on_read, on_writable=self._on_writable, pause_source=self._pause_source
            )
        self._lend()
        if self._backlog:  # written by the Connected report, before the socket was watched
            self._watch.want_write()

    def _lookup(self, host: str) -> tuple[str, ...]:
        """The addresses of ``host``, in the resolver's order, once each. Raises ``OSError``."""
        infos = resolve(host, self._port, type=socket.SOCK_STREAM)
        return tuple(dict.fromkeys(str(info[4][0]) for info in infos))

    def _connect_first(self, addresses: tuple[str, ...]) -> socket.socket:
        """Connect to the first of ``addresses`` that accepts (blocking); else the last error."""
        error: OSError = OSError(f"no address found for {self._host}")
        for address in addresses:
            try:
                return socket.create_connection(
                    (address, self._port), timeout=self._connect_timeout
                )
            except OSError as exc:
                error = exc
        raise error

    @staticmethod
    def _configure(sock: socket.socket) -> None:
        """No Nagle; the socket stays blocking, every call on it is MSG_DONTWAIT."""
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _on_read(self, data: bytes | None, end: BaseException | None) -> None:
        """The reading thread's callback (the watch's lock held): bytes, or the end (once)."""
        if data is not None:
            self._reported += len(data)  # before the report: it may be handled right here
            self._report(BytesIn(self._epoch, data))
            if self._reported - self._consumed > READ_AHEAD:
                # The actor is behind: pause until it catches up. The flag
                # first, then the counter again (see __init__).
                self._reads_wait = True
                if self._reported - self._consumed > READ_AHEAD:
                    watch = self._watch
                    if watch is not None:
                        watch.sync_pause()
                else:
                    self._reads_wait = False
            return
        self._unlend()
        with self._lock:
            closed = self._closed
        self._report(Closed(self._epoch, None if closed else end))

    @property
    def bytes_read(self) -> int:
        return self._consumed

    def consumed(self, size: int) -> None:
        self._consumed += size  # before the flag (see __init__)
        if self._reads_wait and self._reported - self._consumed <= READ_AHEAD // 2:
            self._reads_wait = False
            self.sync_reads()

    def _on_writable(self) -> None:
        """The I/O thread's callback (the watch's lock held): the socket can take more."""
        self._report(Writable(self._epoch))

    @property
    def reads_paused(self) -> bool:
        watch = self._watch
        return watch is not None and watch.paused

    @property
    def pauses(self) -> int:
        watch = self._watch
        return 0 if watch is None else watch.pauses

    def sync_reads(self) -> None:
        watch = self._watch
        if watch is not None:
            watch.sync_pause()

    def resync_reads(self) -> None:
        watch = self._watch
        if watch is not None:
            self._loop.resync(watch)

    # -- writing (the actor's turn) -----------------------------------------------------

    @property
    def backlog_size(self) -> int:
        return self._backlog_size

    @property
    def waiting_since(self) -> float | None:
        backlog = self._backlog
        return backlog[0][1] if backlog else None

    def write(self, data: bytes | Sequence[bytes | bytearray]) -> bool:
        sock = self._sock
        if sock is None:
            raise OSError("not connected")
        # A list is a message's pieces (ClientProtocol.drain's chunks: a frame
        # header and a masked payload): sendmsg writes them as one stream
        # without joining them, which on a 1 MiB message would be a 1 MiB copy.
        pieces = [data] if isinstance(data, bytes) else data
        if self._backlog:
            self._queue(unsent(pieces, 0))  # behind what is already waiting
            return True
        try:
            sent = sock.sendmsg(pieces[:_MAX_IOV], (), socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == sum(map(len, pieces)):  # all of it, the usual case: no more calls
            return False
        self._queue(unsent(pieces, sent))  # not empty: some bytes were not sent
        watch = self._watch
        if watch is not None:  # else it is asked for once the socket is watched
            watch.want_write()
        return True

    def _queue(self, views: list[memoryview]) -> None:
        now = self._clock()
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.extend((view, now) for view in views)
        self._backlog_size += sum(map(len, views))

    def flush(self) -> None:
        sock, backlog = self._sock, self._backlog
        while backlog and sock is not None:
            pieces = [view for view, _ in itertools.islice(backlog, _MAX_IOV)]
            try:
                sent = sock.sendmsg(pieces, (), socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            self._backlog_size -= sent
            while sent:
                view, since = backlog[0]
                if sent < len(view):
                    backlog[0] = (view[sent:], since)
                    break
                sent -= len(view)
                backlog.popleft()
            if backlog and len(pieces) < _MAX_IOV:
                break  # it took less than it was given: it is full again
        if backlog and self._watch is not None:
            self._watch.want_write()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
            watch = self._watch
        # What was never sent is dropped here, not kept for as long as someone
        # holds this transport (a Down's reason never refers to it either).
        self._backlog = None
        self._backlog_size = 0
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


# sun_path in struct sockaddr_un: 108 bytes on Linux, 104 on the BSDs and macOS.
_SUN_PATH_MAX = 104 if sys.platform == "darwin" or "bsd" in sys.platform else 108


def check_unix_path(path: object) -> str:
    """Validate a Unix domain socket path for ``open_unix``; return it as a ``str``.

    Raises:
        TypeError: not a ``str``, ``bytes`` or ``os.PathLike``.
        ValueError: empty, a NUL byte inside a file system path, or longer
            than the system allows (107 bytes on Linux): every connect would
            fail, so the call refuses it at once.
        OSError: the platform has no Unix domain sockets.
    """
    if not isinstance(path, str | bytes | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, not {type(path).__name__}")
    text = os.fsdecode(path)
    if not hasattr(socket, "AF_UNIX"):
        raise OSError(errno.EAFNOSUPPORT, "Unix domain sockets are not available here")
    if not text:
        raise ValueError("path must not be empty")
    # A leading NUL is Linux's abstract namespace (any bytes may follow); in a
    # file system path one would cut it short.
    if not text.startswith("\0") and "\0" in text:
        raise ValueError(f"path {text!r} contains a NUL character")
    size = len(os.fsencode(text))
    # A file system path also needs room for its terminating NUL.
    limit = _SUN_PATH_MAX if text.startswith("\0") else _SUN_PATH_MAX - 1
    if size > limit:
        raise ValueError(
            f"path {text!r} is {size} bytes long; a Unix socket path may have at most "
            f"{limit} (use a shorter directory, e.g. under /tmp)"
        )
    return text


class UnixTransport(TcpTransport):
    """A Unix domain socket (``AF_UNIX``), read, written and closed as a TCP connection is.

    Only connecting differs, and is simpler: a Unix socket connects at once
    or fails at once (a missing file, nobody listening, or a listen backlog
    that is full: ``EAGAIN``, a failed attempt like the others, retried per
    ``retry``), so no thread and no wait is ever needed. Reads, the
    backlog, read-ahead and closing are ``TcpTransport``'s.

    Args:
        report: as for ``TcpTransport``.
        epoch: as for ``TcpTransport``.
        path: the socket's path (checked by :func:`check_unix_path`).
        **options: ``loop``, ``lending``, ``hold_reads`` and ``clock``, as for
            ``TcpTransport``.
    """

    def __init__(
        self, report: Callable[[IoReport], None], epoch: int, path: str, **options: Any
    ) -> None:
        self._path = path
        super().__init__(report, epoch, "localhost", 0, None, **options)

    def _where(self) -> str:
        return f"unix:{self._path}"

    def _direct(self) -> tuple[socket.AddressFamily, Any]:
        return socket.AF_UNIX, self._path

    def _looked_up_at_once(self) -> None:
        # As Gun's lookup of {local, Path}: the path is the one address.
        self._report(Resolved(self._epoch, (self._path,)))

    def _connect_error(self, code: int) -> OSError:
        # The OSError subclass of the code (FileNotFoundError, ConnectionRefusedError...),
        # naming the path: "[Errno 2] No such file or directory: '/run/app.sock'".
        reason = os.strerror(code)
        if code in (errno.EAGAIN, errno.EWOULDBLOCK):
            reason = "the server's listen backlog is full"
        return OSError(code, reason, self._path)

    @staticmethod
    def _configure(sock: socket.socket) -> None:
        sock.settimeout(None)  # no Nagle to turn off on a Unix socket

    def addresses(self) -> tuple[tuple[str, int], tuple[str, int]] | None:
        return None  # no (host, port) pair: ConnectionInfo.unix_path says where it goes
