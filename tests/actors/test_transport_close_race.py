"""A close() racing the reader thread's connect must not blow up in that thread.

Found by the interop suite (a connection closed at teardown while it was
reconnecting): close() from the test thread closed the socket the reader
thread had just published and was still configuring, and ``settimeout``
raised EBADF in the reader thread.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tether.actors import _transport
from tether.actors._messages import IoReport, Resolved
from tether.actors._transport import TcpTransport

JOIN = 5.0


class _CloseDuringSetup(socket.socket):
    """A real connected socket whose setup lets a concurrent close() land first."""

    transport: TcpTransport | None = None

    def settimeout(self, value: float | None) -> None:
        if self.transport is not None:
            self.transport.close()  # what the other thread's close() would do right now
        super().settimeout(value)


@pytest.fixture
def listener(thread_baseline: int) -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


def test_close_while_the_reader_sets_the_socket_up(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports: list[IoReport] = []
    failures: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    # A host name: connected by the connect thread (an IP address is
    # connected by the I/O thread, which also does every close of a socket
    # it watches, so there is no such race there).
    transport = TcpTransport(reports.append, 1, "localhost", listener.getsockname()[1], 5.0)
    real_connect = socket.create_connection

    def connect(address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        plain = real_connect(("127.0.0.1", address[1]), timeout=timeout)
        racy = _CloseDuringSetup(fileno=plain.detach())
        racy.transport = transport
        return racy

    monkeypatch.setattr(_transport.socket, "create_connection", connect)
    transport.start()
    assert transport._thread is not None
    transport._thread.join(JOIN)
    assert not transport._thread.is_alive()
    assert failures == []  # nothing escaped the reader thread
    # The lookup's end was told; closed before it was connected: nothing more.
    assert [type(report) for report in reports] == [Resolved]
    assert transport.addresses() is None
