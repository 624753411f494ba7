"""permessage-deflate on loopback: the embedded server and aiohttp, through the public API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.interop.aiohttp_server import AiohttpServer
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

# Tests take the server fixture before ``open_conn``, so connections are closed
# before their server stops (fixtures are torn down in reverse order).

WAIT = 5.0
TEXT = "compress me, compress me again " * 2000  # 62 kB that deflate shrinks a lot
BLOB = bytes(range(256)) * 300


@pytest.fixture(params=["embedded", "aiohttp"])
def ws_port(request: pytest.FixtureRequest, thread_baseline: int) -> Iterator[int]:
    """The port of a Websocket echo server (on ``/websocket``) that accepts deflate."""
    server: Server | AiohttpServer = Server() if request.param == "embedded" else AiohttpServer()
    with server:
        yield server.port


def upgraded(
    open_conn: ConnectionTracker, port: int, path: str = "/websocket", **ws_opts: Any
) -> tuple[tether.Connection, dict[str, str]]:
    """A connection upgraded on ``path`` with ``ws_opts``, and the 101's headers."""
    conn = open_conn("127.0.0.1", port, ws_opts={"max_message_size": None, **ws_opts})
    assert conn.await_up(WAIT) == "http"
    stream = conn.ws_upgrade(path)
    event = conn.await_(stream, WAIT)
    assert isinstance(event, tether.Upgrade), event
    return conn, dict(event.headers)


def assert_echoes(conn: tether.Connection, rounds: int = 3) -> None:
    """Several text and binary messages come back unchanged, in order."""
    sent: list[tether.Frame] = []
    for i in range(rounds):
        sent += [tether.Text(f"{i} {TEXT}"), tether.Binary(BLOB + bytes([i]))]
    conn.ws_send(sent)
    got = []
    for _ in sent:
        event = inbox_of(conn).receive(timeout=WAIT)
        assert isinstance(event, tether.Ws), event
        got.append(event.frame)
    assert got == sent


def params_of(headers: dict[str, str]) -> set[str]:
    """The parameters of the server's permessage-deflate answer (it must have one)."""
    name, *params = (p.strip() for p in headers["sec-websocket-extensions"].split(";"))
    assert name == "permessage-deflate"
    return set(params)


@pytest.mark.parametrize(
    ("options", "agreed"),
    [
        ({}, set()),
        # the server must say it agrees to the limits asked of it
        (
            {"server_max_window_bits": 9, "server_no_context_takeover": True},
            {"server_max_window_bits=9", "server_no_context_takeover"},
        ),
        # limits on tether's own compression: the server needs not repeat them
        ({"client_max_window_bits": 9, "client_no_context_takeover": True}, set()),
    ],
    ids=["defaults", "server-limits", "client-limits"],
)
def test_compressed_echo(
    ws_port: int, open_conn: ConnectionTracker, options: dict[str, Any], agreed: set[str]
) -> None:
    conn, headers = upgraded(open_conn, ws_port, compress=True, **options)
    assert agreed <= params_of(headers)
    assert_echoes(conn)


def test_a_server_that_declines_compression_still_echoes(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> None:
    conn, headers = upgraded(
        open_conn, aiohttp_server.port, "/websocket-nocompress", compress=True
    )
    assert "sec-websocket-extensions" not in headers
    assert_echoes(conn)
