"""A scripted HTTP CONNECT proxy on 127.0.0.1: Gun's ``do_proxy_start`` (``rfc7231_SUITE``).

Each connection it accepts is served in its own thread: it reads one
request head, records it (:attr:`ConnectProxy.requests`), and answers a
``CONNECT`` with the status line, headers and HTTP version it was built
with, after ``delay`` seconds if given (the answer is what is late, as in
Gun's ``connect_delay``), and ``body`` after it. After a 2xx it connects to the authority asked
for and relays bytes both ways until either side closes. Anything but a
CONNECT gets ``405`` (so a test sees a request that reached the proxy
itself; given ``hold``, only once that event is set, at most 5 s later);
after any answer but a 2xx it reads the next request. Given ``tls``, it
speaks TLS to its clients (an HTTPS proxy).

Everything is bounded: each socket has a timeout, reads are at most 64 KiB,
and :meth:`ConnectProxy.close` ends every connection and joins every thread.
"""

from __future__ import annotations

import contextlib
import queue
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass

WAIT = 5.0
_CHUNK = 65536


@dataclass(frozen=True)
class ProxyRequest:
    """A request head the proxy read: its method, target, version and headers (lower-case)."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[str, str], ...]
    #: Bytes that came after the head before the proxy answered (none, for a CONNECT).
    early: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)


class ConnectProxy:
    """See the module docstring; use as a context manager (or call :meth:`close`)."""

    def __init__(
        self,
        status: int = 200,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        delay: float = 0.0,
        version: str = "HTTP/1.1",
        body: bytes = b"",
        tls: ssl.SSLContext | None = None,
        hold: threading.Event | None = None,
    ) -> None:
        self.status, self.headers, self.delay, self.version = status, headers, delay, version
        self.body = body
        self._hold = hold
        self._tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.requests: queue.Queue[ProxyRequest] = queue.Queue()
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True, name="proxy")
        self._accepting.start()

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_request(self, timeout: float = WAIT) -> ProxyRequest:
        return self.requests.get(timeout=timeout)

    def drop_connections(self) -> None:
        """Close every connection to clients and origins now (the proxy keeps listening)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(WAIT)
        self.listener.close()
        self.drop_connections()
        for thread in self._threads:
            thread.join(WAIT)

    # -- the proxy's threads ---------------------------------------------------------

    def _keep(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
        return sock

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(WAIT)
            client = self._keep(
                self._tls.wrap_socket(raw, server_side=True) if self._tls is not None else raw
            )
            rest = b""
            while not self._stop.is_set():  # one request after another, until a tunnel
                head, rest = self._read_head(client, rest)
                origin = self._answer(client, head, rest)
                if origin is not None:
                    with origin:  # one side closed: so does the other
                        self._relay(client, origin)
                    return
        except OSError:
            pass  # a connection dropped by the test (drop_connections, close), or ended
        except BaseException as exc:  # reported by the test (errors)
            self.errors.append(exc)
        finally:
            raw.close()

    def _answer(self, client: socket.socket, head: bytes, rest: bytes) -> socket.socket | None:
        """Answer one request; the socket to the origin if a tunnel is now open."""
        request = _parse(head, rest)
        if request.method != "CONNECT":
            self.requests.put(request)
            if self._hold is not None:
                self._hold.wait(WAIT)
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
            return None
        if self.delay and self._stop.wait(self.delay):
            return None
        self.requests.put(_parse(head, rest + _waiting(client)))
        lines = [f"{self.version} {self.status} Reason phrase"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body)
        if not 200 <= self.status < 300:
            return None
        host, _, port = request.target.rpartition(":")
        return self._keep(socket.create_connection((host.strip("[]"), int(port)), WAIT))

    @staticmethod
    def _read_head(client: socket.socket, data: bytes) -> tuple[bytes, bytes]:
        while b"\r\n\r\n" not in data:
            chunk = client.recv(_CHUNK)
            if not chunk:
                raise ConnectionResetError("the client closed (before a request head ended)")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        return head, rest

    def _relay(self, client: socket.socket, origin: socket.socket) -> None:
        """Copy bytes both ways until a side closes or the proxy stops."""
        peers = {client: origin, origin: client}
        with selectors.DefaultSelector() as selector:
            try:
                for sock in peers:
                    selector.register(sock, selectors.EVENT_READ)
            except ValueError:  # closed meanwhile (drop_connections): nothing to relay
                return
            while not self._stop.is_set():
                # TLS may hold decrypted bytes the socket no longer signals.
                buffered = isinstance(client, ssl.SSLSocket) and client.pending()
                ready: list[object] = (
                    [client] if buffered else [key.fileobj for key, _ in selector.select(0.2)]
                )
                for readable in ready:
                    assert isinstance(readable, socket.socket)
                    data = readable.recv(_CHUNK)
                    if not data:
                        return
                    peers[readable].sendall(data)


def _waiting(client: socket.socket) -> bytes:
    """What the client sent that is there to read now (nothing, for a well-behaved one)."""
    client.setblocking(False)
    try:
        return client.recv(_CHUNK)
    except (BlockingIOError, ssl.SSLWantReadError):
        return b""
    finally:
        client.settimeout(WAIT)


def _parse(head: bytes, rest: bytes) -> ProxyRequest:
    line, *fields = head.decode("latin-1").split("\r\n")
    method, target, version = line.split(" ")
    headers = tuple(
        (name.strip().lower(), value.strip())
        for name, _, value in (field.partition(":") for field in fields)
    )
    return ProxyRequest(method, target, version, headers, rest)
