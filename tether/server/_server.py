"""The embedded server: a listening socket, an accept thread, a thread per connection.

tether's tests, benchmarks, ``tether demo`` and ``tether serve`` need a real
HTTP/1.1 and Websocket peer on 127.0.0.1 that can also misbehave on
request (drop connections, send bad frames, delay). Threads keep it
independent of the client's concurrency model and easy to reason about:
every blocking call of the server can be woken by ``Server.stop``, and
``Server.stop`` joins every thread it started, so tests can check that
nothing leaks.

The accept thread waits on a selector over the listening socket and a
wake-up socket pair, so stopping it needs neither polling nor closing a
descriptor under a blocked ``accept``.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl
import threading
from collections.abc import Sequence
from types import TracebackType

from tether.server._client_socket import ClientSocket
from tether.server._http_connection import HttpConnection

__all__ = ["Server"]

_log = logging.getLogger("tether.server")

_BACKLOG = 128
_ACCEPT_THREAD_NAME = "tether-server-accept"


class Server:
    """A small HTTP/1.1 + Websocket test server on its own threads.

    Routes: ``/``, ``/echo``, ``/headers``, ``/chunked``, ``/trailers``,
    ``/inform``, ``/status/<NNN>``, ``/delay/<MS>``, ``/close``, ``/drop``,
    ``/big/<N>``, ``/forbidden-ws``, ``/headers/<N>``, ``/header-bytes/<N>``,
    ``/endless-head``, and a Websocket echo at ``/websocket`` and ``/ws`` (see
    ``tether.server._http_routes`` and ``tether.server._ws_echo``).

    Use it as a context manager, or call [`start`][tether.server.Server.start] and
    [`stop`][tether.server.Server.stop]:

    ```python
    with Server() as server:
        ...  # connect to server.host, server.port
    ```

    Args:
        host: The address to listen on.
        port: The port; 0 picks a free ephemeral port (see [`port`][tether.server.Server.port]).
        subprotocols: The Websocket subprotocols the server accepts, the
            first one the client offers wins.
        tls_context: A server-side ``ssl.SSLContext`` (certificate chain
            loaded) to serve HTTPS and WSS instead of plain HTTP; each
            connection's thread does its handshake before reading a request.
            A failed handshake closes that connection. Its ``sni_callback``,
            if set, sees the server name each client sends.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        subprotocols: Sequence[str] = ("mychat", "superchat"),
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if tls_context is not None and not isinstance(tls_context, ssl.SSLContext):
            raise TypeError("tls_context must be an ssl.SSLContext")
        self._host = host
        self._tls_context = tls_context
        self._requested_port = port
        self._subprotocols = tuple(subprotocols)
        self._cond = threading.Condition()
        self._lifecycle = threading.Lock()
        self._started = False
        self._stopping = False
        self._stopped = threading.Event()
        self._port: int | None = None
        self._wake_send: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._counter = 0
        self._active: set[ClientSocket] = set()
        self._threads: dict[ClientSocket, threading.Thread] = {}
        self._requests: list[tuple[str, str]] = []

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> Server:
        """Bind, listen and start the accept thread; return ``self``.

        Thread-safe. Calling it again on a running server does nothing; a
        stopped server cannot be started again (RuntimeError).
        """
        with self._lifecycle:
            if self._stopping:
                raise RuntimeError("a stopped Server cannot be started again")
            if self._started:
                return self
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            listener = socket.create_server(
                (self._host, self._requested_port), family=family, backlog=_BACKLOG
            )
            try:
                listener.setblocking(False)
                wake_recv, wake_send = socket.socketpair()
            except OSError:
                listener.close()
                raise
            self._wake_send = wake_send
            self._port = int(listener.getsockname()[1])
            self._accept_thread = threading.Thread(
                target=self._accept_loop,
                args=(listener, wake_recv),
                name=_ACCEPT_THREAD_NAME,
                daemon=True,
            )
            self._accept_thread.start()
            self._started = True
            return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening, end every connection and join every thread.

        Thread-safe and idempotent: a second call waits (at most ``timeout``
        seconds) for the first one to finish; before [`start`][tether.server.Server.start] it does
        nothing. Each join waits at most ``timeout`` seconds; connections are
        shut down first, so their threads end promptly.
        """
        with self._lifecycle:
            if not self._started:
                return
            first = not self._stopping
            self._stopping = True
        if not first:
            self._stopped.wait(timeout)
            return
        self._stop_accepting(timeout)
        with self._cond:
            threads = list(self._threads.items())
        for client, _ in threads:
            client.abort()
        for client, thread in threads:
            thread.join(timeout)
            if thread.is_alive():  # pragma: no cover - a stuck handler
                _log.warning("%s did not end within %s s", thread.name, timeout)
            client.release()
        self._stopped.set()

    def _stop_accepting(self, timeout: float) -> None:
        if self._wake_send is None or self._accept_thread is None:  # pragma: no cover
            return
        with contextlib.suppress(OSError):
            self._wake_send.send(b"x")
        self._accept_thread.join(timeout)
        if self._accept_thread.is_alive():  # pragma: no cover
            _log.warning("the accept thread did not end within %s s", timeout)
        self._wake_send.close()

    def serve_forever(self) -> None:
        """Start if needed, then block until ``stop`` (Ctrl-C stops the server).

        Thread-safe; meant for the main thread of ``tether serve``. Returns at
        once if the server was already stopped.
        """
        try:
            self.start()
            self._stopped.wait()
        except KeyboardInterrupt:
            pass
        except RuntimeError:  # already stopped: nothing to serve
            return
        finally:
            self.stop()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on, as given. Thread-safe."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the ephemeral one if 0 was given). Thread-safe.

        Raises:
            RuntimeError: The server was never started.
        """
        if self._port is None:
            raise RuntimeError("the Server is not started: no port yet")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``https://`` with TLS) of the server. Thread-safe.

        IPv6 hosts are in brackets.
        """
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "http" if self._tls_context is None else "https"
        return f"{scheme}://{host}:{self.port}"

    # -- observing and disturbing connections --------------------------------

    @property
    def active_connections(self) -> int:
        """How many client connections are open right now. Thread-safe.

        A connection stops counting before the client can see it closed.
        """
        with self._cond:
            return len(self._active)

    @property
    def requests(self) -> list[tuple[str, str]]:
        """A copy of ``(method, target)`` of every HTTP request received, in order.

        Thread-safe. A request is recorded before its response is sent.
        """
        with self._cond:
            return list(self._requests)

    def wait_for_connections(self, n: int, timeout: float) -> bool:
        """Block until exactly ``n`` connections are open; False after ``timeout`` s.

        Thread-safe.
        """
        with self._cond:
            return self._cond.wait_for(lambda: len(self._active) == n, timeout)

    def drop_connections(self) -> int:
        """Abruptly close every open client connection; keep listening.

        Thread-safe. The clients see their connections closed (no response,
        no close frame) when this returns, and they no longer count in
        [`active_connections`][tether.server.Server.active_connections]. Returns
        how many were dropped.
        """
        with self._cond:
            victims = list(self._active)
        for client in victims:
            client.abort()
        return len(victims)

    # -- threads ------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(listener, selectors.EVENT_READ, data=True)
                selector.register(wake, selectors.EVENT_READ, data=False)
                while not self._stopping:
                    for key, _ in selector.select():
                        if not key.data:  # woken by stop()
                            return
                        self._accept_one(listener)
        except Exception:  # pragma: no cover - the listener broke
            _log.exception("the accept thread failed")
        finally:
            listener.close()
            wake.close()

    def _accept_one(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        sock.setblocking(True)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._cond:
            if self._stopping:
                sock.close()
                return
            self._counter += 1
            client = ClientSocket(sock, self._counter, self._forget, self._tls_context)
            thread = threading.Thread(
                target=self._serve_client,
                args=(client,),
                name=f"tether-server-conn-{self._counter}",
                daemon=True,
            )
            for done in [c for c, t in self._threads.items() if not t.is_alive()]:
                del self._threads[done]
            self._threads[client] = thread
            self._active.add(client)
            # Started under the lock, so stop() never joins an unstarted thread.
            thread.start()
            self._cond.notify_all()

    def _serve_client(self, client: ClientSocket) -> None:
        try:
            if not client.start_tls():
                _log.debug("connection %d: TLS handshake failed", client.number)
                return
            HttpConnection(client, self._subprotocols, self._record_request).run()
        except Exception:
            _log.exception("connection %d failed", client.number)
        finally:
            client.release()

    def _forget(self, client: ClientSocket) -> None:
        with self._cond:
            self._active.discard(client)
            self._cond.notify_all()

    def _record_request(self, method: str, target: str) -> None:
        with self._cond:
            self._requests.append((method, target))
