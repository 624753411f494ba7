"""A real websockets (asyncio API) server on 127.0.0.1, in a background thread.

It serves the routes :mod:`tests.interop._loop_server` lists, with what
websockets' HTTP handling allows: plain responses come from
``process_request`` (and websockets closes the connection after them, with
``Connection: close``); it takes GET requests only (it closes the connection
on any other method), so it has no ``POST /echo``. It accepts HTTP/1.0 but
answers in HTTP/1.1 and does not report a request's version.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.interop._loop_server import LoopServer, SeenRequest, WsEnded

__all__ = ["WebsocketsServer"]

_PLAIN = {"/": "hello", "/plain": "plain http"}


class WebsocketsServer(LoopServer):
    """A websockets server served from a thread; use as a context manager."""

    name = "websockets"
    closes_after_refused_upgrade = True  # with Connection: close

    def __init__(self) -> None:
        super().__init__()
        self._server: Server | None = None

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # websockets does not keep the request's HTTP version: None, unknown.
        self._record(SeenRequest("GET", request.path, None, tuple(request.headers.raw_items())))
        if request.path == "/forbidden":
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden")
        if request.path in _PLAIN:
            return connection.respond(HTTPStatus.OK, _PLAIN[request.path])
        return None  # /websocket: go on with the handshake

    async def _echo(self, connection: ServerConnection) -> None:
        try:
            async for message in connection:
                await connection.send(message)  # str as text, bytes as binary
        except ConnectionClosed:
            pass
        finally:
            self.ws_ended.put(WsEnded(connection.close_code))

    async def _setup(self) -> None:
        self._server = await serve(
            self._echo,
            self.host,
            0,
            # Like the other servers: mychat when offered, no subprotocol otherwise
            # (websockets' default refuses a client that offers none).
            select_subprotocol=_mychat_if_offered,
            process_request=self._process_request,
            compression="deflate",
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def _cleanup(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _transports(self) -> Iterable[asyncio.BaseTransport]:
        return [c.transport for c in self._server.connections] if self._server else []


def _mychat_if_offered(connection: ServerConnection, subprotocols: Sequence[str]) -> str | None:
    return "mychat" if "mychat" in subprotocols else None
