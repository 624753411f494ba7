"""The interop fixtures: one scenario suite, run against every third-party server.

``server`` is parametrized over :data:`SERVERS` (a test narrows it with
:func:`tests.interop.servers.on_servers` when a server cannot express a
scenario); ``connect`` here overrides the top-level one (which is bound to
aiohttp) to open connections to whichever server the test runs against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker
from tests.interop.servers import SERVERS, LoopServer


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, thread_baseline: int) -> Iterator[LoopServer]:
    """A fresh server on 127.0.0.1 (ephemeral port), stopped and joined at teardown."""
    with SERVERS[request.param]() as running:
        yield running


@pytest.fixture
def connect(server: LoopServer, open_conn: ConnectionTracker) -> Callable[..., tether.Connection]:
    """Open a connection to ``server`` (closed before the server stops)."""

    def _connect(**options: Any) -> tether.Connection:
        return open_conn(server.host, server.port, **options)

    return _connect
