"""Gun's own test suites, translated: what the cases share.

Gun's suites run against Cowboy handlers and, where a case needs a server
that misbehaves, a scripted origin (``gun_test:init_origin(tcp, http,
ServerFun)``: a raw socket that the case's function drives). Here the
Cowboy handlers are the aiohttp test server's routes (the top-level
``connect`` fixture), and :func:`origin` is the scripted origin: a raw
socket server on 127.0.0.1 running a test's function on the one
connection it accepts, in a thread joined at teardown.

Each test names its Gun case (``gun_SUITE``, ``ws_SUITE``,
``shutdown_SUITE``, ``event_SUITE``, ``flow_SUITE``, ``rfc7230_SUITE``) in
its name or docstring.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from tether.testing import use_fake_clock
from tether.testing._clock import FakeTime

WAIT = 5.0

Script = Callable[[socket.socket], None]


class Origin:
    """A raw TCP server that runs ``script`` on the connection it accepts."""

    def __init__(self, script: Script) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host = "127.0.0.1"
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._serve, args=(script,), daemon=True, name="gun-origin"
        )
        self._thread.start()

    def _serve(self, script: Script) -> None:
        try:
            self.listener.settimeout(WAIT)
            client, _ = self.listener.accept()
            with client:
                client.settimeout(WAIT)
                script(client)
        except BaseException as exc:  # reported to the test at teardown
            self.error = exc
        finally:
            self.done.set()

    def close(self) -> None:
        self.listener.close()
        self._thread.join(WAIT)


def read_request(client: socket.socket) -> bytes:
    """One request head (bounded by the socket's timeout)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = client.recv(4096)
        if not chunk:
            return head
        head += chunk
    return head


@pytest.fixture
def origin(thread_baseline: int) -> Iterator[Callable[[Script], Origin]]:
    """``origin(script)``: start a scripted origin; it is closed and joined at teardown."""
    started: list[Origin] = []

    def start(script: Script) -> Origin:
        server = Origin(script)
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(OSError):
            server.close()


@pytest.fixture
def fake(thread_baseline: int) -> Iterator[FakeTime]:
    """tether's timers on virtual time for the whole test (e.g. the owner check)."""
    with use_fake_clock() as fake_time:
        yield fake_time
