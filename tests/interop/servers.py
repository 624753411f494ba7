"""The third-party servers the interop suite runs against, by name."""

from __future__ import annotations

import pytest

from tests.interop._loop_server import LoopServer
from tests.interop.aiohttp_server import AiohttpServer
from tests.interop.uvicorn_server import UvicornServer
from tests.interop.websockets_server import WebsocketsServer

__all__ = ["SERVERS", "LoopServer", "on_servers"]

SERVERS: dict[str, type[LoopServer]] = {
    "aiohttp": AiohttpServer,
    "websockets": WebsocketsServer,
    "uvicorn": UvicornServer,
}


def on_servers(**cannot: str) -> pytest.MarkDecorator:
    """Run a test on every server, skipping those named with why they cannot express it."""
    return pytest.mark.parametrize(
        "server",
        [
            pytest.param(name, marks=pytest.mark.skip(reason=f"{name}: {cannot[name]}"))
            if name in cannot
            else name
            for name in SERVERS
        ],
        indirect=True,
    )
