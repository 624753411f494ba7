"""A real hypercorn (ASGI) server on 127.0.0.1, in a background thread: HTTP/2 and HTTP/1.1.

Over TLS it offers ``h2`` and ``http/1.1`` by ALPN; over TCP it takes
HTTP/1.1 and HTTP/2 with prior knowledge (h2c). Its HTTP/2 enables
Websocket over HTTP/2 (RFC 8441, ``SETTINGS_ENABLE_CONNECT_PROTOCOL``).
A graceful stop sends GOAWAY. Routes, beside :mod:`tests.interop._loop_server`'s:

- ``GET /stream``   -> 200, the body in three pieces (``one``, ``two``, ``three``)
- ``GET /trailers`` -> 200 ``body`` then the trailer ``x-checksum: 42`` (``te: trailers``)
- ``GET /wait``     -> waits until :meth:`HypercornServer.release` (for cancel, GOAWAY)
- on ``/websocket``, the text ``close me`` -> the server closes the Websocket (1000)

Stopping it while a Websocket is open makes hypercorn's own tasks fail
and leak their transports: tests close their Websockets first.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import hypercorn.asyncio
import hypercorn.config
import trustme

from tests.interop._loop_server import LoopServer, SeenRequest, WsEnded

__all__ = ["HypercornServer"]

_START_TIMEOUT = 10.0
_SERVE_STOP = 3.0  # s: its graceful stop (graceful_timeout is 1 s), then its tasks are cancelled

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ANSWERS = {
    ("GET", "/"): (200, b"hello"),
    ("GET", "/forbidden"): (403, b"forbidden"),
    ("GET", "/plain"): (200, b"plain http"),
}


class HypercornServer(LoopServer):
    """A hypercorn server served from a thread; use as a context manager.

    Args:
        ca: sign a certificate for ``127.0.0.1`` with it and serve TLS; None: TCP.
        tmp: a directory for the certificate files (TLS only).
        port: the port to bind (0: any); a restart binds the same one.
    """

    name = "hypercorn"

    def __init__(
        self, ca: trustme.CA | None = None, tmp: Path | None = None, port: int = 0
    ) -> None:
        super().__init__()
        self.port = port
        self._ca = ca
        self._tmp = tmp
        self._stop_event: asyncio.Event | None = None
        self._serving: asyncio.Task[None] | None = None
        self._release: asyncio.Event | None = None

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting this server's CA, offering h2 and http/1.1 by ALPN."""
        assert self._ca is not None
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        context.set_alpn_protocols(["h2", "http/1.1"])
        return context

    def release(self) -> None:
        """Let every ``/wait`` request answer (``200 released``)."""
        loop, event = self._loop, self._release
        assert loop is not None
        assert event is not None
        loop.call_soon_threadsafe(event.set)

    # -- the ASGI application ------------------------------------------------------

    async def _app(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return
        version = (*tuple(int(p) for p in scope["http_version"].split(".")), 0)
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"])
        method = scope.get("method", "GET")
        self._record(SeenRequest(method, scope["path"], (version[0], version[1]), headers))
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope["path"], method, receive, send)

    async def _http(self, path: str, method: str, receive: Receive, send: Send) -> None:
        if (method, path) == ("POST", "/echo"):
            await _respond(send, 200, await _read_body(receive))
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for piece in (b"one", b"two"):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": b"three"})
        elif path == "/trailers":
            await send(
                {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
            )
            await send({"type": "http.response.body", "body": b"body"})
            await send(
                {
                    "type": "http.response.trailers",
                    "headers": [(b"x-checksum", b"42")],
                    "more_trailers": False,
                }
            )
        elif path == "/wait":
            assert self._release is not None
            await self._release.wait()
            await _respond(send, 200, b"released")
        else:
            status, body = _ANSWERS.get((method, path), (404, b"not found"))
            await _respond(send, status, body)

    async def _websocket(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await receive()  # websocket.connect
        if scope["path"] != "/websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        offered = "mychat" in scope["subprotocols"]
        await send({"type": "websocket.accept", "subprotocol": "mychat" if offered else None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                self.ws_ended.put(WsEnded(message.get("code")))
                return
            if message.get("text") == "close me":
                # Then wait for the client's close: an app that returns at once makes
                # hypercorn forget the stream, and fail on the client's close frame.
                await send({"type": "websocket.close", "code": 1000})
                continue
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})

    # -- the server ----------------------------------------------------------------

    async def _setup(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = hypercorn.config.Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        config.graceful_timeout = 1.0
        if self._ca is not None:
            assert self._tmp is not None
            cert = self._ca.issue_cert("127.0.0.1", "localhost")
            certfile, keyfile = self._tmp / "hypercorn.pem", self._tmp / "hypercorn.key"
            cert.cert_chain_pems[0].write_to_path(certfile)
            cert.private_key_pem.write_to_path(keyfile)
            config.certfile, config.keyfile = str(certfile), str(keyfile)
        self._stop_event = asyncio.Event()
        self._release = asyncio.Event()
        started = asyncio.Event()

        async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
            await self._app(scope, receive, send)

        self._serving = asyncio.ensure_future(
            hypercorn.asyncio.serve(app, config, shutdown_trigger=self._stop_event.wait)  # type: ignore[arg-type]
        )
        # hypercorn serves once its sockets listen: a connect proves it.
        async with asyncio.timeout(_START_TIMEOUT):
            while not started.is_set():
                if self._serving.done():
                    self._serving.result()
                try:
                    _, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    await asyncio.sleep(0.01)
                    continue
                writer.close()
                started.set()

    async def _cleanup(self) -> None:
        if self._stop_event is not None and self._serving is not None:
            if self._release is not None:
                self._release.set()
            self._stop_event.set()
            # hypercorn's graceful stop waits for its connections' tasks, and on
            # Python 3.12+ (asyncio.Server.wait_closed waits for every connection)
            # a Websocket stream's task that never ends after its connection was
            # cut (seen in the chaos soak over HTTP/2) holds it for good: after a
            # bound, its tasks are cancelled.
            done, _ = await asyncio.wait({self._serving}, timeout=_SERVE_STOP)
            if not done:
                await _cancel_the_rest()

    def _transports(self) -> Iterable[asyncio.BaseTransport]:
        raise NotImplementedError("hypercorn keeps its connections to itself")


async def _cancel_the_rest() -> None:
    """Cancel every task of this loop but the caller's, and wait (bounded) for them to end."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=_SERVE_STOP)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
