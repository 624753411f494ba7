"""A server running on its own asyncio loop in a background thread, on 127.0.0.1.

The common part of every third-party server the interop tests use: start,
stop (bounded, thread joined), what the server saw (requests, how each
Websocket ended) in thread-safe queues, and :meth:`LoopServer.drop_connections`,
which cuts every open TCP connection without a close handshake (a server
going away, for the reconnect runs). Subclasses bind the port in
``_setup`` and say in ``_transports`` which connections are open.

Routes every subclass serves (the server side of the Gun Websocket guide):

- ``GET /``          -> 200 ``hello``
- ``POST /echo``     -> 200 with the request body echoed (where the server parses POST)
- ``GET /websocket`` -> a Websocket (subprotocol ``mychat``) echoing text as
  text and binary as binary until the client closes
- ``GET /forbidden`` -> 403 ``forbidden``, upgrade request or not
- ``GET /plain``     -> 200 ``plain http``, upgrade request or not
"""

from __future__ import annotations

import asyncio
import gc
import queue
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
_DROP_TIMEOUT = 5.0

__all__ = ["LoopServer", "SeenRequest", "WsEnded"]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request as the server received it (``version`` None: the server does not say)."""

    method: str
    path: str
    version: tuple[int, int] | None
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


@dataclass(frozen=True, slots=True)
class WsEnded:
    """How one server-side Websocket ended: the close code the server reports."""

    close_code: int | None


class LoopServer:
    """A server on its own loop and thread; use as a context manager."""

    host = "127.0.0.1"
    name = "server"
    #: The Unix domain socket it serves on instead of TCP, if any (subclasses that can).
    unix_path: str | None = None
    #: Whether the server closes the connection after refusing an upgrade
    #: (with a response), so that the client reconnects before its next request.
    closes_after_refused_upgrade = False

    def __init__(self) -> None:
        self.port = 0
        self.requests: queue.Queue[SeenRequest] = queue.Queue()
        self.ws_ended: queue.Queue[WsEnded] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-server", daemon=True)

    # -- what subclasses provide ---------------------------------------------------

    async def _setup(self) -> None:
        """Bind 127.0.0.1 on an ephemeral port, set ``self.port``, start serving."""
        raise NotImplementedError

    async def _cleanup(self) -> None:
        """Stop serving and close every connection."""
        raise NotImplementedError

    def _transports(self) -> Iterable[asyncio.BaseTransport]:
        """The transports of the open connections (called on the loop)."""
        raise NotImplementedError

    # -- the thread --------------------------------------------------------------

    def start(self) -> Self:
        """Start serving; return once the port is bound."""
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"the {self.name} server did not start in time")
        if self._startup_error is not None:
            self._thread.join(_STOP_TIMEOUT)
            raise RuntimeError(f"the {self.name} server failed to start") from self._startup_error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            try:
                loop.run_until_complete(self._setup())
            except BaseException as exc:  # reported to start()
                self._startup_error = exc
                self._ready.set()
                return
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(self._cleanup())
        finally:
            # getaddrinfo ran on the loop's default executor: join its threads too.
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the {self.name} server thread did not stop in time")
        self._collect_server_leaks()

    def _collect_server_leaks(self) -> None:
        """Collect now, not in a later test, what the third-party server leaked.

        A client reconnecting while the server shuts down can be accepted by
        the closing loop and then forgotten by the server library, unclosed;
        its ``ResourceWarning`` would surface at some later garbage collection
        and fail an unrelated test. Collected here, the server side's sockets
        (local address: this server's port, or its Unix socket) and its
        asyncio transports are the server library's leak, not tether's, and
        are ignored; anything else still reaches pytest.
        """
        self._loop = None
        marker = self.unix_path if self.unix_path is not None else f"('{self.host}', {self.port})"
        previous = sys.unraisablehook

        def hook(unraisable: sys.UnraisableHookArgs) -> None:
            # tether makes no asyncio transports: an unclosed one is the server's.
            text = str(unraisable.exc_value)
            ours = f"laddr={marker}" in text or text.startswith("unclosed transport <")
            if not (isinstance(unraisable.exc_value, ResourceWarning) and ours):
                previous(unraisable)

        sys.unraisablehook = hook
        try:
            gc.collect()
        finally:
            sys.unraisablehook = previous

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- making the server misbehave -------------------------------------------------

    def drop_connections(self) -> int:
        """Abort every open connection (a TCP cut, no close frame); return how many."""
        assert self._loop is not None, "the server is not running"

        async def drop() -> int:
            transports = list(self._transports())
            for transport in transports:
                transport.abort()
            return len(transports)

        return asyncio.run_coroutine_threadsafe(drop(), self._loop).result(_DROP_TIMEOUT)

    def drop_connection(self, client_port: int) -> bool:
        """Abort the one connection whose client end is ``client_port``; False if none is."""
        assert self._loop is not None, "the server is not running"

        async def drop() -> bool:
            for transport in self._transports():
                peer = transport.get_extra_info("peername")
                if peer is not None and peer[1] == client_port:
                    transport.abort()
                    return True
            return False

        return asyncio.run_coroutine_threadsafe(drop(), self._loop).result(_DROP_TIMEOUT)

    # -- what the server saw -------------------------------------------------------

    def _record(self, request: SeenRequest) -> None:
        self.requests.put(request)

    def next_request(self, timeout: float = 5.0) -> SeenRequest:
        """The next request the server received (waits up to ``timeout``)."""
        return self.requests.get(timeout=timeout)

    def next_ws_end(self, timeout: float = 5.0) -> WsEnded:
        """How the next server-side Websocket ended (waits up to ``timeout``)."""
        return self.ws_ended.get(timeout=timeout)
