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

WAIT = 5.0

Script = Callable[[socket.socket], None]


class Origin:
    """A raw TCP server that runs ``script`` on the connection it accepts.

    Given a ``listener`` (e.g. a Unix domain socket, for ``open_unix``), it
    accepts on that one instead; ``port`` is then 0. Otherwise it listens on
    ``host`` (an IPv4 or IPv6 address) and ``port`` (0: any free one).
    """

    def __init__(
        self,
        script: Script,
        host: str = "127.0.0.1",
        port: int = 0,
        listener: socket.socket | None = None,
    ) -> None:
        if listener is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener = socket.create_server((host, port), family=family)
        self.listener = listener
        self.host = host
        self.port = self.listener.getsockname()[1] if listener.family != socket.AF_UNIX else 0
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
def origin(thread_baseline: int) -> Iterator[Callable[..., Origin]]:
    """``origin(script, host=..., port=..., listener=None)``: start a scripted origin.

    Each one is closed and joined at teardown.
    """
    started: list[Origin] = []

    def start(
        script: Script,
        host: str = "127.0.0.1",
        port: int = 0,
        listener: socket.socket | None = None,
    ) -> Origin:
        server = Origin(script, host, port, listener)
        started.append(server)
        return server

    yield start
    for server in started:
        with contextlib.suppress(OSError):
            server.close()
    # A script that failed (an assertion about what it read, a timeout waiting
    # for a request) fails its test, even when the client side saw nothing wrong.
    errors = [server.error for server in started if server.error is not None]
    if errors:
        raise errors[0]


@pytest.fixture(autouse=True)
def _lock_order(checked_lock_order: None) -> None:
    """Every one of Gun's suites' tests checks tether's lock order (tests/conftest.py)."""
