"""Gun's header-name cases (``gun_SUITE``), with the raw request bytes a scripted origin reads.

Gun takes header names as atoms, lists, binaries or map keys and sends them
lower-case; tether takes ``str`` or ``bytes`` names, in a list of pairs or a
dict, and does the same. ``transform_header_name`` (``http_opts``) re-cases
names on their way out, the ones tether adds included.
"""

from __future__ import annotations

import contextlib
import queue
import socket
from collections.abc import Callable
from typing import Any

import pytest

import tether
from tests.conftest import ConnectionTracker, inbox_of
from tests.gun.conftest import WAIT, Origin

pytestmark = pytest.mark.usefixtures("thread_baseline")

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def head_lines(head: bytes) -> list[bytes]:
    """The request line and header lines of a request head."""
    return head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def read_message(client: socket.socket, buffer: bytearray) -> bytes:
    """One whole request (head and body, by content-length or chunked); the head is returned.

    ``buffer`` keeps what was read past it, for the next request.
    """
    while b"\r\n\r\n" not in buffer:
        buffer += client.recv(4096) or b"\r\n\r\n"  # EOF: give up on this one
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lower = head.lower()
    if b"\r\ncontent-length: " in lower:
        size = int(lower.split(b"\r\ncontent-length: ")[1].split(b"\r\n")[0])
        end = size
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while b"0\r\n\r\n" not in rest:
            rest += client.recv(4096) or b"0\r\n\r\n"
        end = rest.index(b"0\r\n\r\n") + 5
    else:
        end = 0
    while len(rest) < end:
        rest += client.recv(4096)
    buffer[:] = rest[end:]
    return head


def serving(origin: Callable[..., Origin], count: int = 1) -> tuple[Origin, queue.Queue[bytes]]:
    """An origin that records ``count`` request heads, answering each ``ok`` once it is whole."""
    heads: queue.Queue[bytes] = queue.Queue()

    def script(client: socket.socket) -> None:
        buffer = bytearray()
        for _ in range(count):
            heads.put(read_message(client, buffer))
            client.sendall(OK)
        # Until the client goes (bounded by the socket's timeout); a close()
        # with the answer still unread in its socket resets instead.
        with contextlib.suppress(ConnectionResetError):
            client.recv(1)

    return origin(script), heads


def up(open_conn: ConnectionTracker, server: Origin, **options: Any) -> tether.Connection:
    conn = open_conn(server.host, server.port, **options)
    assert conn.await_up(WAIT) == "http"
    return conn


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([("User-Agent", "tether/str-headers")], id="atom_header_name"),
        pytest.param([("user-agent", "tether/str-headers")], id="list_header_name"),
        pytest.param({b"USER-agent": "tether/str-headers"}, id="map_headers"),
        pytest.param([(b"USER-agent", b"tether/str-headers")], id="uppercase_header_name"),
    ],
)
def test_header_names_go_out_lower_case(
    origin: Callable[..., Origin], open_conn: ConnectionTracker, headers: Any
) -> None:
    """gun_SUITE:atom_header_name, list_header_name, map_headers, uppercase_header_name.

    Gun's atoms and lists are Python's ``str``, its binaries ``bytes``, its
    maps a ``dict``: whatever the casing given, the name goes out lower-case.
    """
    server, heads = serving(origin)
    conn = up(open_conn, server)
    conn.get("/", headers)
    lines = head_lines(heads.get(timeout=WAIT))
    assert [line for line in lines if line.lower().startswith(b"user-agent: ")] == [
        b"user-agent: tether/str-headers"
    ]


def test_transform_header_name(
    origin: Callable[..., Origin], open_conn: ConnectionTracker
) -> None:
    """gun_SUITE:transform_header_name: the server sees the names as the function made them."""
    server, heads = serving(origin)

    def shout_host(name: str) -> str:
        return "HOST" if name == "host" else name

    conn = up(open_conn, server, http_opts={"transform_header_name": shout_host})
    conn.get("/", [("x-kept", "1")])
    lines = head_lines(heads.get(timeout=WAIT))
    assert len([line for line in lines if line.startswith(b"HOST: ")]) == 1
    assert not [line for line in lines if line.startswith(b"host: ")]
    assert b"x-kept: 1" in lines  # the others as they were


def test_transform_header_name_renames_the_headers_tether_adds(
    origin: Callable[..., Origin], open_conn: ConnectionTracker
) -> None:
    """Every name goes through it: content-length and transfer-encoding, as Gun's manual says."""
    server, heads = serving(origin, count=2)
    conn = up(open_conn, server, http_opts=tether.HttpOpts(transform_header_name=str.title))

    whole = conn.post("/", [("x-trace-id", "7")], b"body")
    assert conn.await_body(whole, WAIT) == b"ok"
    first = head_lines(heads.get(timeout=WAIT))
    assert first[0] == b"POST / HTTP/1.1"
    names = {line.partition(b":")[0] for line in first[1:] if line}
    assert names == {b"Host", b"X-Trace-Id", b"Content-Length"}

    streamed = conn.headers("POST", "/", [("content-type", "text/plain")])
    conn.data(streamed, True, b"x")
    second = head_lines(heads.get(timeout=WAIT))
    names = {line.partition(b":")[0] for line in second[1:] if line}
    assert names >= {b"Host", b"Content-Type", b"Transfer-Encoding"}
    assert conn.await_body(streamed, WAIT) == b"ok"


def test_transform_header_name_applies_to_the_websocket_handshake(
    origin: Callable[..., Origin], open_conn: ConnectionTracker
) -> None:
    server, heads = serving(origin)
    conn = up(open_conn, server, http_opts={"transform_header_name": str.upper})
    conn.ws_upgrade("/ws")
    lines = head_lines(heads.get(timeout=WAIT))
    names = [line.partition(b":")[0] for line in lines[1:] if line]
    assert names
    assert all(name == name.upper() for name in names)
    assert b"SEC-WEBSOCKET-KEY" in names


@pytest.mark.parametrize(
    ("transform", "message"),
    [
        pytest.param(lambda name: 1 / 0, "raised", id="raises"),
        pytest.param(lambda name: name.encode(), "must return a str", id="returns-bytes"),
        pytest.param(lambda name: name + " x", "not a valid header name", id="not-a-token"),
        pytest.param(lambda name: name + "\n", "not a valid header name", id="newline"),
    ],
)
def test_a_failing_transform_fails_its_request_only(
    origin: Callable[..., Origin],
    open_conn: ConnectionTracker,
    transform: Callable[[str], Any],
    message: str,
) -> None:
    """The request is not sent (an Error says why); the connection serves the next one."""
    server, heads = serving(origin)
    calls: list[str] = []

    def flaky(name: str) -> Any:
        calls.append(name)
        return transform(name) if len(calls) == 1 else name

    conn = up(open_conn, server, http_opts={"transform_header_name": flaky})
    failed = conn.get("/first")
    error = conn.await_(failed, WAIT)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.InvalidRequestError)
    assert message in str(error.reason)

    served = conn.get("/second")
    assert conn.await_body(served, WAIT) == b"ok"
    assert heads.get(timeout=WAIT).startswith(b"GET /second HTTP/1.1\r\n")  # /first never went
    assert inbox_of(conn).flush() == []  # no Down: the connection stayed up


@pytest.mark.parametrize("value", ["upper", 42, b"x"])
def test_transform_header_name_must_be_callable(value: object) -> None:
    with pytest.raises(TypeError, match="transform_header_name"):
        tether.open("127.0.0.1", 9, http_opts={"transform_header_name": value})
