"""A real aiohttp server on 127.0.0.1, run in a background thread with its own loop.

Routes (the server side of the Gun Websocket guide's scenarios):

- ``GET /``          -> 200 ``hello``
- ``POST /echo``     -> 200 with the request body echoed
- ``GET /websocket`` -> a Websocket (subprotocol ``mychat``) echoing text as
  text and binary as binary until the client closes; aiohttp answers the close
- ``GET /websocket-nocompress`` -> the same echo, declining permessage-deflate
- ``GET /forbidden`` -> 403 ``forbidden``, upgrade request or not
- ``GET /plain``     -> 200 ``plain http``, upgrade request or not

The server records what it saw (request versions and headers, how each
Websocket ended) in thread-safe queues, so tests can check what reached the
wire. :meth:`AiohttpServer.stop` closes everything and joins the thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from dataclasses import dataclass
from types import TracebackType

from aiohttp import WSMsgType, web

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
# How long aiohttp waits for running handlers at shutdown; tests close their
# connections first, so this only bounds a misbehaving test.
_SHUTDOWN_TIMEOUT = 2.0

__all__ = ["AiohttpServer", "SeenRequest", "WsEnded"]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request as the server received it."""

    method: str
    path: str
    version: tuple[int, int]
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)


@dataclass(frozen=True, slots=True)
class WsEnded:
    """How one server-side Websocket ended: the close code aiohttp reports."""

    close_code: int | None


class AiohttpServer:
    """An aiohttp application served from a thread; use as a context manager."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self.requests: queue.Queue[SeenRequest] = queue.Queue()
        self.ws_ended: queue.Queue[WsEnded] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="aiohttp-server", daemon=True)

    # -- the application -------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._hello)
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/websocket", self._websocket)
        app.router.add_get("/websocket-nocompress", self._websocket_nocompress)
        app.router.add_get("/forbidden", self._forbidden)
        app.router.add_get("/plain", self._plain)
        return app

    def _record(self, request: web.Request) -> None:
        self.requests.put(
            SeenRequest(
                request.method,
                request.path,
                (request.version.major, request.version.minor),
                tuple(request.headers.items()),
            )
        )

    async def _hello(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(text="hello")

    async def _echo(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(body=await request.read())

    async def _forbidden(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(status=403, text="forbidden")

    async def _plain(self, request: web.Request) -> web.Response:
        self._record(request)
        return web.Response(text="plain http")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        return await self._echo_websocket(request, compress=True)

    async def _websocket_nocompress(self, request: web.Request) -> web.WebSocketResponse:
        return await self._echo_websocket(request, compress=False)

    async def _echo_websocket(self, request: web.Request, compress: bool) -> web.WebSocketResponse:
        self._record(request)
        ws = web.WebSocketResponse(protocols=("mychat",), compress=compress)
        await ws.prepare(request)
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await ws.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
        finally:
            self.ws_ended.put(WsEnded(ws.close_code))
        return ws

    # -- the thread --------------------------------------------------------------

    def start(self) -> AiohttpServer:
        """Start serving; return once the port is bound."""
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the aiohttp server did not start in time")
        if self._startup_error is not None:
            self._thread.join(_STOP_TIMEOUT)
            raise RuntimeError("the aiohttp server failed to start") from self._startup_error
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
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
        finally:
            # getaddrinfo ran on the loop's default executor: join its threads too.
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _setup(self) -> None:
        runner = web.AppRunner(
            self._app(), handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        address = runner.addresses[0]
        self.port = address[1]

    def stop(self) -> None:
        """Stop serving, close every connection and join the thread."""
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the aiohttp server thread did not stop in time")

    def __enter__(self) -> AiohttpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the server saw -------------------------------------------------------

    def next_request(self, timeout: float = 5.0) -> SeenRequest:
        """The next request the server received (waits up to ``timeout``)."""
        return self.requests.get(timeout=timeout)

    def next_ws_end(self, timeout: float = 5.0) -> WsEnded:
        """How the next server-side Websocket ended (waits up to ``timeout``)."""
        return self.ws_ended.get(timeout=timeout)
