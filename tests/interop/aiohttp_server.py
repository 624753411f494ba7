"""A real aiohttp server on 127.0.0.1, run in a background thread with its own loop.

It serves the routes :mod:`tests.interop._loop_server` lists; aiohttp
answers the client's close of a Websocket. Given an ``ssl_context``, it
serves HTTPS and WSS instead (asyncio's TLS).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

from aiohttp import WSMsgType, web

from tests.interop._loop_server import LoopServer, SeenRequest, WsEnded

# How long aiohttp waits for running handlers at shutdown; tests close their
# connections first, so this only bounds a misbehaving test.
_SHUTDOWN_TIMEOUT = 2.0

__all__ = ["AiohttpServer", "SeenRequest", "WsEnded"]


class AiohttpServer(LoopServer):
    """An aiohttp application served from a thread; use as a context manager.

    Args:
        ssl_context: A server ``ssl.SSLContext`` to serve TLS with (None: plain TCP).
    """

    name = "aiohttp"

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__()
        self._ssl_context = ssl_context
        self._runner: web.AppRunner | None = None

    # -- the application -------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._hello)
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/websocket", self._websocket)
        app.router.add_get("/forbidden", self._forbidden)
        app.router.add_get("/plain", self._plain)
        return app

    def _seen(self, request: web.Request) -> None:
        self._record(
            SeenRequest(
                request.method,
                request.path,
                (request.version.major, request.version.minor),
                tuple(request.headers.items()),
            )
        )

    async def _hello(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text="hello")

    async def _echo(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(body=await request.read())

    async def _forbidden(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=403, text="forbidden")

    async def _plain(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(text="plain http")

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        self._seen(request)
        ws = web.WebSocketResponse(protocols=("mychat",))
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

    async def _setup(self) -> None:
        runner = web.AppRunner(
            self._app(), handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, self.host, 0, ssl_context=self._ssl_context)
        await site.start()
        address = runner.addresses[0]
        self.port = address[1]

    async def _cleanup(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def _transports(self) -> Iterable[asyncio.BaseTransport]:
        server = self._runner.server if self._runner else None
        handlers = server.connections if server else []
        return [h.transport for h in handlers if h.transport is not None]
