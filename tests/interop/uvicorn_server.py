"""A real uvicorn (ASGI) server on 127.0.0.1, in a background thread.

It serves the routes :mod:`tests.interop._loop_server` lists from a bare
ASGI application, with uvicorn's wsproto Websocket implementation (and
permessage-deflate on). A refused upgrade is an ASGI
``websocket.http.response`` (a full HTTP response with a body).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import uvicorn

from tests.interop._loop_server import LoopServer, SeenRequest, WsEnded

__all__ = ["UvicornServer"]

_START_TIMEOUT = 10.0

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ANSWERS = {
    ("GET", "/"): (200, b"hello"),
    ("GET", "/forbidden"): (403, b"forbidden"),
    ("GET", "/plain"): (200, b"plain http"),
}


class UvicornServer(LoopServer):
    """A uvicorn server served from a thread; use as a context manager."""

    name = "uvicorn"
    closes_after_refused_upgrade = True  # without Connection: close, which HTTP/1.1 allows

    def __init__(self, unix_path: str | None = None) -> None:
        super().__init__()
        #: Serve on a Unix domain socket at this path (``--uds``) instead of TCP.
        self.unix_path = unix_path
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None

    # -- the ASGI application ------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return  # lifespan is off; nothing else is expected
        major, minor = scope["http_version"].split(".")
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
        if scope["type"] == "websocket" and scope["subprotocols"]:
            # uvicorn moves the offered subprotocols out of the headers into the scope.
            headers += (("sec-websocket-protocol", ", ".join(scope["subprotocols"])),)
        method = scope.get("method", "GET")
        self._record(SeenRequest(method, scope["path"], (int(major), int(minor)), headers))
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(method, scope["path"], receive, send)

    async def _http(self, method: str, path: str, receive: Receive, send: Send) -> None:
        if (method, path) == ("POST", "/echo"):
            status, body = 200, await _read_body(receive)
        else:
            status, body = _ANSWERS.get((method, path), (404, b"not found"))
        await _respond(send, "http.response", status, body)

    async def _websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        if scope["path"] != "/websocket":
            status, body = _ANSWERS.get(("GET", scope["path"]), (404, b"not found"))
            await _respond(send, "websocket.http.response", status, body)
            return
        offered = "mychat" in scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": "mychat" if offered else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ws_ended.put(WsEnded(message.get("code")))
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    # -- the server ----------------------------------------------------------------

    async def _setup(self) -> None:
        if self.unix_path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self.unix_path)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((self.host, 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            interface="asgi3",
            lifespan="off",
            ws="wsproto",
            ws_per_message_deflate=True,
            log_level="warning",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._serving = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        # uvicorn has no "started" event to await, only a flag: poll it, bounded.
        async with asyncio.timeout(_START_TIMEOUT):
            while not self._server.started:
                if self._serving.done():
                    self._serving.result()  # raise its startup error
                await asyncio.sleep(0.01)

    async def _cleanup(self) -> None:
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            await self._serving

    def _transports(self) -> Iterable[asyncio.BaseTransport]:
        connections = self._server.server_state.connections if self._server else ()
        return [c.transport for c in connections if c.transport is not None]


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _respond(send: Send, kind: str, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": f"{kind}.start", "status": status, "headers": headers})
    await send({"type": f"{kind}.body", "body": body})
