"""A real aiohttp server on 127.0.0.1, run in a background thread with its own loop.

It serves the routes :mod:`tests.interop._loop_server` lists, plus
``GET /websocket-nocompress`` (the same echo, declining permessage-deflate);
aiohttp answers the client's close of a Websocket. Given an ``ssl_context``,
it serves HTTPS and WSS instead (asyncio's TLS).

For the backpressure and timeout tests, a server that is fast, slow or
silent where a test needs it:

- ``GET /push?count=N&size=S`` (Websocket): N text messages (for ever if N
  is 0) of S bytes, each starting ``"<seq>:"`` so order can be checked,
  sent as fast as the client takes them (aiohttp waits for its transport to
  drain); :attr:`AiohttpServer.pushed` counts them;
- ``GET /sink`` (Websocket): never reads what the client sends (aiohttp
  stops reading its socket once its own queue is full: TCP pushes back);
- ``GET /clock?period=P`` (HTTP): a chunked body, one chunk ``"tick <n>\n"``
  every P seconds for ever (Gun's ``sse_clock_h``, as flow_SUITE uses it);
- ``GET /stream?count=N&size=S`` (HTTP): a chunked body of N chunks of S bytes;
- ``GET /slow?delay=D`` (HTTP) and ``GET /websocket-slow?delay=D`` (an
  echo Websocket): the answer comes D seconds late.

For Gun's ``ws_SUITE`` and ``shutdown_SUITE`` (their Cowboy handlers):

- ``GET /reject`` (``ws_reject_h``): 400 ``Upgrade rejected``, upgrade request or not;
- ``GET /subprotocol`` (``ws_subprotocol_h``): an echo Websocket choosing the
  subprotocol ``echo`` if the client offers it; else 400 ``nomatch`` (other
  subprotocols offered) or ``undefined`` (none);
- ``GET /close`` (``hello_h`` behind Cowboy's ``max_keepalive => 1``): 200
  ``hello`` with ``connection: close``, then the server closes; with
  ``?frozen``, only once :meth:`AiohttpServer.thaw` was called (at most 5 s);
- ``GET /websocket-frozen`` (``ws_frozen_h``): an echo Websocket that reads
  nothing until :meth:`AiohttpServer.thaw` (at most 5 s), so a close frame
  from the client waits unanswered;
- ``GET /websocket-close?delay=D&code=C`` (``ws_timeout_close_h``): a
  Websocket that sends a close frame with code C after D seconds;
- ``GET /websocket-pings``: an echo Websocket that answers pings itself and
  puts each ping's payload in :attr:`AiohttpServer.pings` (aiohttp's autoping
  would answer them unseen).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import ssl
from collections.abc import Iterable

from aiohttp import WSMsgType, web

from tests.interop._loop_server import LoopServer, SeenRequest, WsEnded

# How long aiohttp waits for running handlers at shutdown; tests close their
# connections first, so this only bounds a misbehaving test.
_SHUTDOWN_TIMEOUT = 2.0
# The longest a frozen route stays frozen without thaw() (a test that failed first).
_FROZEN_AT_MOST = 5.0

__all__ = ["AiohttpServer", "SeenRequest", "WsEnded"]


class AiohttpServer(LoopServer):
    """An aiohttp application served from a thread; use as a context manager.

    Args:
        ssl_context: A server ``ssl.SSLContext`` to serve TLS with (None: plain TCP).
        unix_path: serve on a Unix domain socket at this path (aiohttp's
            ``UnixSite``) instead of TCP; ``port`` stays 0.
    """

    name = "aiohttp"

    def __init__(
        self, ssl_context: ssl.SSLContext | None = None, unix_path: str | None = None
    ) -> None:
        super().__init__()
        self._ssl_context = ssl_context
        self.unix_path = unix_path
        self._runner: web.AppRunner | None = None
        #: Messages /push has sent so far (written on the server's loop only).
        self.pushed = 0
        #: The payload of each ping /websocket-pings received (and answered).
        self.pings: queue.Queue[bytes] = queue.Queue()
        self._thawed: asyncio.Event | None = None  # made on the server's loop

    # -- the application -------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._hello)
        app.router.add_post("/echo", self._echo)
        app.router.add_get("/websocket", self._websocket)
        app.router.add_get("/websocket-nocompress", self._websocket_nocompress)
        app.router.add_get("/forbidden", self._forbidden)
        app.router.add_get("/plain", self._plain)
        app.router.add_get("/push", self._push)
        app.router.add_get("/sink", self._sink)
        app.router.add_get("/clock", self._clock)
        app.router.add_get("/stream", self._stream)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/websocket-slow", self._websocket_slow)
        # Gun's ws_SUITE and shutdown_SUITE handlers.
        app.router.add_get("/reject", self._reject)
        app.router.add_get("/subprotocol", self._subprotocol)
        app.router.add_get("/close", self._close)
        app.router.add_get("/websocket-frozen", self._websocket_frozen)
        app.router.add_get("/websocket-close", self._websocket_close)
        app.router.add_get("/websocket-pings", self._websocket_pings)
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

    async def _push(self, request: web.Request) -> web.WebSocketResponse:
        self._seen(request)
        count, size = int(request.query.get("count", "0")), int(request.query.get("size", "16"))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        # Reading meanwhile answers the client's pings (aiohttp's autoping runs
        # in receive()), as a server that pushes and stays alive does.
        reader = asyncio.create_task(self._read_until_closed(ws))
        seq = 0
        try:
            while not ws.closed and (count == 0 or seq < count):
                head = f"{seq}:"
                await ws.send_str(head + "x" * max(size - len(head), 0))
                seq += 1
                self.pushed = seq
        except ConnectionResetError:  # the client went away mid-push (aiohttp's own subclass)
            pass
        await reader  # until the client closes
        self.ws_ended.put(WsEnded(ws.close_code))
        return ws

    @staticmethod
    async def _read_until_closed(ws: web.WebSocketResponse) -> None:
        async for _ in ws:
            pass

    async def _sink(self, request: web.Request) -> web.WebSocketResponse:
        self._seen(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # never reads; ends when the server stops
        return ws

    async def _clock(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        period = float(request.query.get("period", "0.1"))
        sse = "sse" in request.query  # each tick a server-sent event (Cowboy's sse_clock_h)
        response = web.StreamResponse()
        if sse:
            response.content_type = "text/event-stream"
        await response.prepare(request)
        tick = 0
        while True:
            await response.write(
                f"data: tick {tick}\n\n".encode() if sse else f"tick {tick}\n".encode()
            )
            tick += 1
            await asyncio.sleep(period)

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        count, size = int(request.query["count"]), int(request.query["size"])
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(count):
            await response.write(b"x" * size)
        await response.write_eof()
        return response

    async def _slow(self, request: web.Request) -> web.Response:
        self._seen(request)
        await asyncio.sleep(float(request.query["delay"]))
        return web.Response(text="late")

    async def _websocket_slow(self, request: web.Request) -> web.WebSocketResponse:
        await asyncio.sleep(float(request.query["delay"]))
        return await self._echo_websocket(request, compress=False)

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        return await self._echo_websocket(request, compress=True)

    async def _websocket_nocompress(self, request: web.Request) -> web.WebSocketResponse:
        return await self._echo_websocket(request, compress=False)

    async def _echo_websocket(
        self,
        request: web.Request,
        compress: bool,
        *,
        protocols: tuple[str, ...] = ("mychat",),
        autoping: bool = True,
        frozen: bool = False,
    ) -> web.WebSocketResponse:
        self._seen(request)
        ws = web.WebSocketResponse(protocols=protocols, compress=compress, autoping=autoping)
        await ws.prepare(request)
        try:
            if frozen:
                await self._until_thawed()
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await ws.send_str(message.data)
                elif message.type is WSMsgType.BINARY:
                    await ws.send_bytes(message.data)
                elif message.type is WSMsgType.PING:  # only with autoping off
                    await ws.pong(message.data)
                    self.pings.put(message.data)
        finally:
            self.ws_ended.put(WsEnded(ws.close_code))
        return ws

    # -- Gun's ws_SUITE and shutdown_SUITE handlers ------------------------------------

    async def _reject(self, request: web.Request) -> web.Response:
        self._seen(request)
        return web.Response(status=400, text="Upgrade rejected")

    async def _subprotocol(self, request: web.Request) -> web.StreamResponse:
        self._seen(request)
        offered = request.headers.get("sec-websocket-protocol")
        if offered is None:
            return web.Response(status=400, text="undefined")
        if "echo" not in (name.strip() for name in offered.split(",")):
            return web.Response(status=400, text="nomatch")
        return await self._echo_websocket(request, compress=False, protocols=("echo",))

    async def _close(self, request: web.Request) -> web.Response:
        self._seen(request)
        if "frozen" in request.query:
            await self._until_thawed()
        response = web.Response(text="hello")
        response.force_close()  # connection: close, then the server closes
        return response

    def thaw(self) -> None:
        """Let every /websocket-frozen read (and /close?frozen answer) from now on."""
        loop, thawed = self._loop, self._thawed
        assert loop is not None, "the server is not running"
        assert thawed is not None
        loop.call_soon_threadsafe(thawed.set)

    async def _until_thawed(self) -> None:
        assert self._thawed is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._thawed.wait(), _FROZEN_AT_MOST)

    async def _websocket_frozen(self, request: web.Request) -> web.WebSocketResponse:
        return await self._echo_websocket(request, compress=False, frozen=True)

    async def _websocket_close(self, request: web.Request) -> web.WebSocketResponse:
        self._seen(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await asyncio.sleep(float(request.query.get("delay", "0")))
        # Sends the close frame, then waits for the client's (aiohttp's own timeout).
        await ws.close(code=int(request.query.get("code", "1000")))
        self.ws_ended.put(WsEnded(ws.close_code))
        return ws

    async def _websocket_pings(self, request: web.Request) -> web.WebSocketResponse:
        return await self._echo_websocket(request, compress=False, autoping=False)

    async def _setup(self) -> None:
        self._thawed = asyncio.Event()
        runner = web.AppRunner(
            self._app(), handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._runner = runner
        if self.unix_path is not None:
            await web.UnixSite(runner, self.unix_path, ssl_context=self._ssl_context).start()
            return
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
