"""A loopback TCP proxy that injects network faults between tether and a server.

Faults it can inject, each what a long-lived client meets in production:

- ``refuse()`` / ``accept()``: the port stops (or starts again) accepting
  connections, as a restarting server does;
- ``drop()``: every open connection is cut at once (a crash, a NAT reset);
- ``stall()`` / ``resume()``: bytes stop flowing both ways while the TCP
  connections stay open (a half-open connection: only a timeout notices);
- ``delay(seconds)``: every chunk is held that long before it is forwarded;
- ``cut_after(n)``: the next ``n`` bytes from the server reach the client,
  then the connection is cut (a connection lost in the middle of a frame);
- ``rechunk(n)``: the server's bytes go on in writes of at most ``n`` bytes
  (a slow link, a server writing piecemeal): the client's reads end
  anywhere, in the middle of a frame header too.

Threads: one accept thread and two pump threads per connection, all joined
by :meth:`FaultProxy.stop`. Waits are bounded; nothing sleeps blindly.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType

_CHUNK = 65536
_JOIN_TIMEOUT = 5.0


class _Link:
    """One proxied connection: the client side, the server side, two pumps."""

    def __init__(self, proxy: FaultProxy, client: socket.socket, server: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.closed = False
        self.threads = [
            threading.Thread(
                target=self._pump, args=(client, server, False), daemon=True, name="fault-proxy-up"
            ),
            threading.Thread(
                target=self._pump,
                args=(server, client, True),
                daemon=True,
                name="fault-proxy-down",
            ),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, downstream: bool) -> None:
        while True:
            try:
                data = src.recv(_CHUNK)
            except OSError:
                break
            if not data or not self.proxy._forward(self, data, dst, downstream):
                break
        self.close()

    def close(self) -> None:
        with self.proxy._cond:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        with self.proxy._cond:
            self.proxy._cond.notify_all()


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to ``upstream`` and injects faults on demand."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._cond = threading.Condition()
        self._links: list[_Link] = []
        self._stalled = False
        self._delay = 0.0
        self._cut_after: int | None = None
        self._chunk: int | None = None
        self._stopping = False
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self.port = 0
        self.accepted = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), daemon=True, name="fault-proxy-accept"
        )
        self._accept_thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            try:
                server = socket.create_connection(self._upstream, timeout=_JOIN_TIMEOUT)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            link = _Link(self, client, server)
            with self._cond:
                # Forget the links that are over (a long soak opens thousands).
                self._links = [
                    old
                    for old in self._links
                    if not old.closed or any(t.is_alive() for t in old.threads)
                ]
                self._links.append(link)
                self.accepted += 1
                self._cond.notify_all()
            link.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(_JOIN_TIMEOUT)
            self._accept_thread = None

    def stop(self) -> None:
        """Close everything and join every thread."""
        with self._cond:
            self._stopping = True
            self._stalled = False
            self._cond.notify_all()
        self._close_listener()
        self.drop()
        with self._cond:
            links = list(self._links)
        for link in links:
            for thread in link.threads:
                thread.join(_JOIN_TIMEOUT)

    # -- faults ----------------------------------------------------------------

    def refuse(self) -> None:
        """Stop accepting: new connections to the port are refused."""
        self._close_listener()

    def accept(self) -> None:
        """Accept connections again, on the same port."""
        if self._listener is None:
            self._listen()

    def drop(self) -> int:
        """Cut every open connection; return how many were cut."""
        with self._cond:
            links = [link for link in self._links if not link.closed]
        for link in links:
            link.close()
        return len(links)

    def stall(self) -> None:
        """Hold every byte in both directions, keeping the connections open."""
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        """Forward again (held bytes go out in order)."""
        with self._cond:
            self._stalled = False
            self._cond.notify_all()

    def delay(self, seconds: float) -> None:
        """Hold each chunk ``seconds`` before forwarding it (0 to stop)."""
        with self._cond:
            self._delay = seconds

    def cut_after(self, n: int | None) -> None:
        """Forward ``n`` more bytes from the server, then cut that connection (None: disarm)."""
        with self._cond:
            self._cut_after = n

    def rechunk(self, n: int | None) -> None:
        """Forward the server's bytes in writes of at most ``n`` bytes (None: as they come)."""
        with self._cond:
            self._chunk = n

    # -- observation -------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        with self._cond:
            return sum(not link.closed for link in self._links)

    def wait_for(
        self,
        *,
        accepted: int | None = None,
        open_connections: int | None = None,
        timeout: float = 5.0,
    ) -> bool:
        """Wait until the counts reach the given values; False on timeout."""

        def reached() -> bool:
            ok = accepted is None or self.accepted >= accepted
            return ok and (
                open_connections is None
                or sum(not link.closed for link in self._links) == open_connections
            )

        with self._cond:
            return self._cond.wait_for(reached, timeout)

    # -- forwarding (pump threads) -------------------------------------------------

    def _forward(self, link: _Link, data: bytes, dst: socket.socket, downstream: bool) -> bool:
        with self._cond:
            self._cond.wait_for(
                lambda: not self._stalled or link.closed or self._stopping, timeout=60.0
            )
            # Once stopping, nothing more is forwarded: stop() lifts the stall only
            # to wake the pumps, not to deliver what the stall held.
            if link.closed or self._stopping:
                return False
            if self._delay:
                # A timed wait on the condition, so stop() and drop() cut it short.
                self._cond.wait_for(lambda: link.closed or self._stopping, self._delay)
                if link.closed or self._stopping:
                    return False
            cut = False
            if downstream and self._cut_after is not None:
                if len(data) >= self._cut_after:
                    data, cut = data[: self._cut_after], True
                    self._cut_after = None
                else:
                    self._cut_after -= len(data)
            chunk = self._chunk if downstream else None
        try:
            if chunk is None:
                dst.sendall(data)
            else:
                # No Nagle: each small write leaves as its own segment.
                dst.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for start in range(0, len(data), chunk):
                    dst.sendall(data[start : start + chunk])
        except OSError:
            return False
        if cut:
            link.close()
            return False
        return True
