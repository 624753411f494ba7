"""The ASGI application bench/http2.py serves with hypercorn: ``GET /`` and a Websocket echo."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """``GET /`` -> ``hello``; a Websocket on any path echoes every message."""
    if scope["type"] == "http":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"5")],
            }
        )
        await send({"type": "http.response.body", "body": b"hello"})
    elif scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send(
                {
                    "type": "websocket.send",
                    **{k: message[k] for k in ("text", "bytes") if message.get(k) is not None},
                }
            )


# hypercorn's configuration (``--config python:bench._h2_app``): its default ends a
# connection after 1000 requests (GOAWAY), which a rate measured on one connection
# would count.
keep_alive_max_requests = 10**9
