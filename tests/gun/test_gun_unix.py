"""Gun's Unix domain socket cases (``gun_SUITE``, ``ws_SUITE``), against a scripted origin.

Gun listens with ``gen_tcp:listen(0, [{ifaddr, {local, Path}}])`` and reads
the raw request; here the scripted origin accepts on an ``AF_UNIX``
listener. tests/interop/test_unix.py runs the same over aiohttp and
uvicorn, with reconnects, failures, TLS and supervision.
"""

from __future__ import annotations

import os
import queue
import socket
import sys
from collections.abc import Callable

import pytest

import tether
from tests.conftest import ConnectionTracker
from tests.gun.conftest import WAIT, Origin, read_request

pytestmark = pytest.mark.usefixtures("thread_baseline")


def unix_listener(path: str) -> socket.socket:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    return listener


def recording_origin(
    origin: Callable[..., Origin], path: str
) -> tuple[Origin, queue.Queue[bytes]]:
    """An origin on the Unix socket ``path`` that records the one request head it reads."""
    heads: queue.Queue[bytes] = queue.Queue()

    def script(client: socket.socket) -> None:
        heads.put(read_request(client))

    return origin(script, listener=unix_listener(path)), heads


def test_unix_socket_connect(
    origin: Callable[..., Origin], unix_path: str, open_conn: ConnectionTracker
) -> None:
    """gun_SUITE:unix_socket_connect: a request over a Unix socket says ``host: localhost``."""
    _, heads = recording_origin(origin, unix_path)
    conn = open_conn.track(tether.open_unix(unix_path, retry=0))
    assert conn.info().host == "localhost"  # Gun's origin_host
    conn.get("/")
    assert b"\r\nhost: localhost\r\n" in heads.get(timeout=WAIT)


def test_unix_socket_hostname(
    origin: Callable[..., Origin], unix_path: str, open_conn: ConnectionTracker
) -> None:
    """ws_SUITE:unix_socket_hostname: an upgrade over a Unix socket says ``host: localhost``."""
    _, heads = recording_origin(origin, unix_path)
    conn = open_conn.track(tether.open_unix(unix_path, retry=0))
    assert conn.info().host == "localhost"
    conn.ws_upgrade("/", [])
    head = heads.get(timeout=WAIT)
    assert head.startswith(b"GET / HTTP/1.1\r\n")
    assert b"\r\nupgrade: websocket\r\n" in head
    assert b"\r\nhost: localhost\r\n" in head


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's abstract namespace")
def test_a_linux_abstract_socket_is_reached(
    origin: Callable[..., Origin], open_conn: ConnectionTracker
) -> None:
    """A path starting with NUL names a socket in Linux's abstract namespace (no file)."""
    path = f"\0tether-test-{os.getpid()}-{id(open_conn)}"
    _, heads = recording_origin(origin, path)
    conn = open_conn.track(tether.open_unix(path, retry=0))
    conn.get("/abstract")
    assert heads.get(timeout=WAIT).startswith(b"GET /abstract HTTP/1.1\r\n")


def test_the_lookup_of_a_unix_socket_is_its_path(
    origin: Callable[..., Origin], unix_path: str, open_conn: ConnectionTracker
) -> None:
    """As Gun's lookup of ``{local, Path}``: the event handler's lookup phases name the path."""
    recording_origin(origin, unix_path)
    phases: queue.Queue[tuple[str, dict[str, object]]] = queue.Queue()
    conn = open_conn.track(
        tether.open_unix(unix_path, retry=0, event_handler=lambda n, d: phases.put((n, d)))
    )
    assert conn.await_up(WAIT) == "http"
    seen: dict[str, dict[str, object]] = {}
    while "connect_end" not in seen:
        name, data = phases.get(timeout=WAIT)
        seen[name] = data
    assert list(seen) == [
        "init",
        "domain_lookup_start",
        "domain_lookup_end",
        "connect_start",
        "connect_end",
    ]
    assert seen["domain_lookup_end"]["lookup_info"] == {"ip_addresses": [unix_path], "port": 80}
    assert seen["connect_end"]["protocol"] == "http"
