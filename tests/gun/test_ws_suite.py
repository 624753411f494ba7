"""Gun's ``ws_SUITE`` (HTTP/1.1 cases), against aiohttp and a scripted origin.

Gun's routes are Cowboy handlers; here they are the aiohttp test server's
(``tests/interop/aiohttp_server.py``): ``/`` (``ws_echo_h``) is
``/websocket``, ``/reject`` and ``/subprotocol`` are translations of
``ws_reject_h`` and ``ws_subprotocol_h``. Gun's ``{upgrade, [<<"websocket">>],
Headers}`` is ``Upgrade``, ``{ws, Frame}`` is ``Ws``, ``gun:await/2`` is
``conn.await_``.

ws_SUITE ``reply_to`` is ``tests/gun/test_gun_suite.py::test_reply_to_websocket``;
``unix_socket_hostname`` is with the Unix socket tests.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

import tether
from tests.conftest import inbox_of
from tests.events import await_as
from tests.events import awaited_up as up
from tests.gun.conftest import WAIT, Origin, Script, read_request
from tests.interop.aiohttp_server import AiohttpServer

pytestmark = pytest.mark.usefixtures("thread_baseline")

E = TypeVar("E")
Connect = Callable[..., tether.Connection]


def upgraded(conn: tether.Connection, path: str, **kwargs: object) -> tether.StreamRef:
    """``ws_upgrade(path)`` and its ``Upgrade`` (Gun's ``{upgrade, [<<"websocket">>], _}``)."""
    ws = conn.ws_upgrade(path, **kwargs)
    assert await_as(conn, ws, tether.Upgrade).protocols == ("websocket",)
    return ws


def test_await(connect: Connect) -> None:
    """ws_SUITE await: ``await_`` takes the Upgrade, then the echoed frame."""
    conn = up(connect)
    ws = upgraded(conn, "/websocket")
    conn.ws_send(tether.Text("Hello!"), ws)
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("Hello!"))


def test_headers_normalized_upgrade(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """ws_SUITE headers_normalized_upgrade: a dict of str/bytes names, sent lower-case.

    Gun takes a map with atom and string names; tether takes a dict or pairs,
    names as ``str`` or ``bytes``, and sends every name lower-case.
    """
    conn = up(connect)
    upgraded(
        conn,
        "/websocket",
        headers={"Atom_Header_Name": "value", b"STRING_header_name": b"value"},
    )
    seen = aiohttp_server.next_request()
    assert seen.path == "/websocket"
    assert ("atom_header_name", "value") in seen.headers  # as sent: aiohttp keeps the case
    assert ("string_header_name", "value") in seen.headers


def test_http10_upgrade_error(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """ws_SUITE http10_upgrade_error: an upgrade on HTTP/1.0 is an Error for its stream.

    Gun's reason is ``{badstate, _}``; tether's is an ``UpgradeError``. It is
    the owner's next event, and nothing reached the server.
    """
    conn = up(connect, http_opts={"version": "HTTP/1.0"})
    ws = conn.ws_upgrade("/websocket")
    error = inbox_of(conn).receive(WAIT)
    assert isinstance(error, tether.Error)
    assert error.stream is ws
    assert isinstance(error.reason, tether.UpgradeError)
    stream = conn.get("/")  # the connection is still usable (the server's first request)
    assert conn.await_body(stream, WAIT) == b"hello"
    assert aiohttp_server.next_request().path == "/"


def test_http11_keepalive(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """ws_SUITE http11_keepalive: ws_opts keepalive pings the server; the pong is told.

    With ``silence_pings=False`` the owner sees the server's answer as a
    ``Ws(Pong)``; Gun's pong has no payload, tether's ping (and so the pong)
    carries one.
    """
    conn = up(connect, ws_opts={"keepalive": 0.1, "silence_pings": False})
    ws = upgraded(conn, "/websocket-pings")
    ping = aiohttp_server.pings.get(timeout=WAIT)
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Pong(ping))


def test_http11_keepalive_default_silence_pings(
    connect: Connect, aiohttp_server: AiohttpServer
) -> None:
    """ws_SUITE http11_keepalive_default_silence_pings: the pongs are not told by default.

    Gun waits a second for nothing. Here the server shows that pings went out
    and were answered; the pong of the first ping went out before the echo of
    a frame sent after the second ping arrived, and that echo is the owner's
    first event of the stream.
    """
    conn = up(connect, ws_opts={"keepalive": 0.1})
    ws = upgraded(conn, "/websocket-pings")
    aiohttp_server.pings.get(timeout=WAIT)
    aiohttp_server.pings.get(timeout=WAIT)  # the first one's pong is out
    conn.ws_send("after the pongs")
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("after the pongs"))
    assert [e for e in inbox_of(conn).flush() if isinstance(e, tether.Ws)] == []


def test_http11_request_error(connect: Connect) -> None:
    """ws_SUITE http11_request_error: no HTTP request once upgraded.

    Gun accepts ``gun:get`` and answers ``{error, {connection_error,
    {badstate, _}}}`` through ``gun:await``; tether knows it is upgraded and
    raises ``UpgradedError`` at the call (API.md). The Websocket goes on.
    """
    conn = up(connect)
    ws = upgraded(conn, "/websocket")
    with pytest.raises(tether.UpgradedError):
        conn.get("/")
    with pytest.raises(tether.UpgradedError):
        conn.ws_upgrade("/websocket")
    conn.ws_send("still up")
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("still up"))


def test_http11_request_error_raced_the_upgrade(origin: Callable[[Script], Origin]) -> None:
    """ws_SUITE http11_request_error, as Gun sees it: a request the connection took.

    A request made after ``ws_upgrade`` but before the server's 101 is
    accepted at the call; once upgraded it is an ``Error`` for its stream
    (Gun's ``badstate``), and it never reaches the server.
    """
    requested = threading.Event()
    sent_after_head = bytearray()  # what the client sent after the upgrade request's head

    def serve(client: socket.socket) -> None:
        head, _, rest = read_request(client).partition(b"\r\n\r\n")
        assert head.startswith(b"GET /ws HTTP/1.1\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        assert requested.wait(WAIT)
        client.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: upgrade\r\nsec-websocket-accept: " + _accept(key) + b"\r\n\r\n"
        )
        sent_after_head.extend(rest)
        while chunk := client.recv(4096):  # until the client goes
            sent_after_head.extend(chunk)

    server = origin(serve)
    conn = tether.open(server.host, server.port, retry=0)
    try:
        assert conn.await_up(WAIT) == "http"
        ws = conn.ws_upgrade("/ws")
        stream = conn.get("/")  # the 101 is held back until now
        requested.set()
        await_as(conn, ws, tether.Upgrade)
        error = await_as(conn, stream, tether.Error)
        assert isinstance(error.reason, tether.UpgradedError)
    finally:
        conn.close()  # brutal: no close frame
    assert conn.wait_stopped(WAIT)
    server.close()
    assert server.error is None
    assert sent_after_head == b""  # the request never went out


def _accept(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for ``key`` (RFC 6455 4.2.2)."""
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(key + guid).digest())


def test_reject_upgrade(connect: Connect) -> None:
    """ws_SUITE reject_upgrade: a refusal is a Response (not fin) and its body."""
    conn = up(connect)
    ws = conn.ws_upgrade("/reject")
    response = await_as(conn, ws, tether.Response)
    assert (response.status, response.fin) == (400, False)
    assert conn.await_body(ws, WAIT) == b"Upgrade rejected"


def test_send_many(connect: Connect) -> None:
    """ws_SUITE send_many: a list of frames in one ws_send, echoed in order."""
    conn = up(connect)
    ws = upgraded(conn, "/websocket")
    conn.ws_send([tether.Text("Hello!"), tether.Binary(b"World!")], ws)
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("Hello!"))
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Binary(b"World!"))


def test_send_many_close(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """ws_SUITE send_many_close: a list ending with a close frame: both echoes, then the close.

    Cowboy answers a bare close; aiohttp answers ``Close(1000)``.
    """
    conn = up(connect)
    ws = upgraded(conn, "/websocket")
    conn.ws_send([tether.Text("Hello!"), tether.Binary(b"World!"), tether.Close()], ws)
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("Hello!"))
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Binary(b"World!"))
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Close(1000, ""))
    assert aiohttp_server.next_ws_end().close_code == 1000


def test_subprotocol_match(connect: Connect, aiohttp_server: AiohttpServer) -> None:
    """ws_SUITE subprotocol_match: ws_opts protocols offered; the server picks ``echo``.

    Gun's ``protocols`` pairs each name with a handler module; tether's are
    names only (frames go to the owner).
    """
    conn = up(connect)
    ws = conn.ws_upgrade("/subprotocol", opts={"protocols": ["dummy", "echo", "junk"]})
    upgrade = await_as(conn, ws, tether.Upgrade)
    assert ("sec-websocket-protocol", "echo") in upgrade.headers
    seen = aiohttp_server.next_request()
    assert seen.header("sec-websocket-protocol") == "dummy, echo, junk"
    conn.ws_send(tether.Text("Hello!"), ws)
    assert conn.await_(ws, WAIT) == tether.Ws(conn, ws, tether.Text("Hello!"))


def test_subprotocol_nomatch(connect: Connect) -> None:
    """ws_SUITE subprotocol_nomatch: none of ours suits the server: its 400 and body."""
    conn = up(connect)
    ws = conn.ws_upgrade("/subprotocol", opts={"protocols": ["dummy", "junk"]})
    response = await_as(conn, ws, tether.Response)
    assert (response.status, response.fin) == (400, False)
    assert conn.await_body(ws, WAIT) == b"nomatch"


def test_subprotocol_required_but_missing(connect: Connect) -> None:
    """ws_SUITE subprotocol_required_but_missing: none offered, the server needs one: 400."""
    conn = up(connect)
    ws = conn.ws_upgrade("/subprotocol")
    response = await_as(conn, ws, tether.Response)
    assert (response.status, response.fin) == (400, False)
    assert conn.await_body(ws, WAIT) == b"undefined"
