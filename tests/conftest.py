"""Shared fixtures: thread accounting, connection and actor cleanup, the aiohttp server, TLS.

Teardown order matters and is fixed by fixture dependencies: connections
and actors are stopped first, then the server, and ``thread_baseline``
(which they all depend on, so it is set up first and torn down last)
checks that every thread the test started has ended. Test modules that
want the thread check on every test use
``pytestmark = pytest.mark.usefixtures("thread_baseline")``.

The TLS fixtures (a session trustme CA, server contexts, the embedded
server over TLS) are here because tests/tls and tests/cli both use them.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
import trustme

import tether
from tests._ports import free_port
from tests.interop.aiohttp_server import AiohttpServer
from tether._locks import check_lock_order, violations
from tether.server import Server
from tether.testing import use_fake_clock
from tether.testing._clock import FakeTime

THREAD_GRACE = 5.0
STOP_TIMEOUT = 5.0

ServerContext = Callable[..., ssl.SSLContext]


def _wait_for_threads(baseline: set[threading.Thread], deadline: float) -> list[threading.Thread]:
    """Join every thread that is not in ``baseline`` until ``deadline``; return the leftovers."""
    while True:
        extra = [t for t in threading.enumerate() if t not in baseline]
        remaining = deadline - time.monotonic()
        if not extra or remaining <= 0:
            return extra
        try:
            extra[0].join(min(remaining, 0.5))
        except RuntimeError:
            # threading.enumerate() also lists a thread whose start() has not
            # returned yet, and join() refuses it: wait until it runs (no
            # public way to wait for that), then join it on the next turn.
            extra[0]._started.wait(min(remaining, 0.5))  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def tether_started() -> None:
    """Start tether's process-wide threads (e.g. a default supervisor) once per session.

    They live as long as the process, by design; opening and closing one
    connection through the public API starts them, so that
    ``thread_baseline`` counts them in instead of reporting them as leaks.
    (The kernel completes the TCP handshake from the listen backlog; nothing
    needs to accept it.)
    """
    # PooledOwnerActors' threads (the default pool's) linger 10 s once idle;
    # here they exit soon after each test, for thread_baseline.
    tether.PooledOwnerActor.actor_pool = tether.ActorPool(idle=0.1)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = tether.open("127.0.0.1", listener.getsockname()[1], retry=0)
        assert conn.await_up(timeout=STOP_TIMEOUT) == "http"
        conn.close()
        assert conn.wait_stopped(STOP_TIMEOUT)


@pytest.fixture
def thread_baseline(tether_started: None) -> Iterator[int]:
    """Record the threads; at teardown wait (bounded) until the count is back, and assert it.

    Every thread started during the test must have ended (each is joined
    until a shared deadline). A thread of the baseline may end too (the
    last moments of the session warm-up's connection), hence ``<=``.
    """
    baseline = set(threading.enumerate())
    count = threading.active_count()
    yield count
    leftovers = _wait_for_threads(baseline, time.monotonic() + THREAD_GRACE)
    assert not leftovers, f"threads still running after the test: {[t.name for t in leftovers]}"
    assert threading.active_count() <= count


def inbox_of(conn: tether.Connection) -> tether.Inbox:
    """The Inbox owner of ``conn`` (connections opened without ``owner=``)."""
    inbox = conn.inbox
    assert inbox is not None, f"{conn!r} is not owned by an Inbox"
    return inbox


class ConnectionTracker:
    """Opens connections through ``tether.open`` and remembers them for cleanup."""

    def __init__(self) -> None:
        self._conns: list[tether.Connection] = []

    def __call__(self, host: str, port: int, **options: Any) -> tether.Connection:
        """``tether.open(host, port, **options)``, closed at teardown."""
        conn = tether.open(host, port, **options)
        self._conns.append(conn)
        return conn

    def track(self, conn: tether.Connection) -> tether.Connection:
        """Close ``conn`` at teardown too (one opened elsewhere, e.g. by an actor)."""
        self._conns.append(conn)
        return conn

    def close_all(self) -> None:
        stuck = []
        for conn in self._conns:
            with contextlib.suppress(tether.ConnectionStoppedError):
                conn.close()
            if not conn.wait_stopped(STOP_TIMEOUT):
                stuck.append(conn)
        assert not stuck, f"connections did not stop: {stuck}"


@pytest.fixture
def open_conn(thread_baseline: int) -> Iterator[ConnectionTracker]:
    """Open tether connections; every one is closed and awaited at teardown."""
    tracker = ConnectionTracker()
    yield tracker
    tracker.close_all()


@pytest.fixture
def start_actor(open_conn: ConnectionTracker) -> Iterator[Callable[..., pykka.ActorRef[Any]]]:
    """Start pykka actors; those still alive at teardown are stopped (only those)."""
    refs: list[pykka.ActorRef[Any]] = []

    def start(cls: type[pykka.Actor], *args: Any, **kwargs: Any) -> pykka.ActorRef[Any]:
        ref = cls.start(*args, **kwargs)
        refs.append(ref)
        return ref

    yield start
    for ref in reversed(refs):
        with contextlib.suppress(pykka.ActorDeadError):
            ref.stop(block=True, timeout=STOP_TIMEOUT)


@pytest.fixture
def aiohttp_server(thread_baseline: int) -> Iterator[AiohttpServer]:
    """A fresh aiohttp server on 127.0.0.1 (ephemeral port), stopped and joined at teardown."""
    with AiohttpServer() as server:
        yield server


@pytest.fixture
def connect(
    aiohttp_server: AiohttpServer, open_conn: ConnectionTracker
) -> Callable[..., tether.Connection]:
    """Open a connection to the aiohttp server (closed before the server stops)."""

    def _connect(**options: Any) -> tether.Connection:
        return open_conn(aiohttp_server.host, aiohttp_server.port, **options)

    return _connect


@pytest.fixture
def unix_path(tmp_path: Path) -> Iterator[str]:
    """A path for a Unix domain socket (nothing there yet), short enough for ``sun_path``.

    pytest's ``tmp_path`` can be longer than the 107 bytes a socket path
    may have (it holds the test's name); then a short directory in /tmp is
    used, removed at teardown.
    """
    path = tmp_path / "s.sock"
    if len(os.fsencode(path)) <= 100:
        yield str(path)
        return
    short = tempfile.mkdtemp(prefix="tether-", dir="/tmp")
    try:
        yield os.path.join(short, "s.sock")
    finally:
        shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def fake(thread_baseline: int) -> Iterator[FakeTime]:
    """tether's timers on virtual time for the whole test (retry delays, the owner check)."""
    with use_fake_clock() as fake_time:
        yield fake_time


@pytest.fixture
def refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    return free_port()


# -- TLS: certificates from a throwaway CA (trustme), the embedded server over TLS ------------


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The CA that signs the test servers' certificates."""
    return trustme.CA()


@pytest.fixture
def server_names() -> queue.Queue[str | None]:
    """The server names (SNI) clients sent to the TLS servers, in order (None: no SNI)."""
    return queue.Queue()


@pytest.fixture
def server_context(ca: trustme.CA, server_names: queue.Queue[str | None]) -> ServerContext:
    """Build a server context presenting a certificate for ``names`` (signed by ``ca``)."""

    def build(*names: str) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*(names or ("localhost", "127.0.0.1"))).configure_cert(context)
        context.set_alpn_protocols(["http/1.1"])

        def record(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            server_names.put(name)

        context.sni_callback = record
        return context

    return build


@pytest.fixture
def tls_server(thread_baseline: int, server_context: ServerContext) -> Iterator[Server]:
    """The embedded server speaking TLS (certificate for localhost and 127.0.0.1)."""
    with Server(tls_context=server_context()) as srv:
        yield srv


def events_until_gave_up(conn: tether.Connection, timeout: float = 5.0) -> list[object]:
    """Every event up to the final ``Error(conn, None, RetriesExhausted)``, then nothing more."""
    inbox = inbox_of(conn)
    seen: list[object] = []
    deadline = time.monotonic() + timeout
    while not (
        seen
        and isinstance(seen[-1], tether.Error)
        and isinstance(seen[-1].reason, tether.RetriesExhausted)
    ):
        seen.append(inbox.receive(timeout=max(deadline - time.monotonic(), 0.0)))
    assert conn.wait_stopped(timeout)
    with pytest.raises(TimeoutError):
        inbox.receive(timeout=0)
    return seen


@pytest.fixture
def checked_lock_order() -> Iterator[None]:
    """tether's locks made during the test check the order they are taken in.

    See ``tether/_locks.py`` and "Lock order" in ``docs/design.md``. A
    violation raises where it happens, and fails the test at teardown
    even if it happened on a thread whose exception nobody saw (the I/O
    thread's, the scheduler's). tests/actors and tests/gun use it on every
    test; ``TETHER_DEBUG_LOCKS=1`` turns it on for a whole run.
    """
    previous = check_lock_order(True)
    violations()  # forget those of earlier tests: they failed there
    try:
        yield
    finally:
        check_lock_order(previous)
    seen = violations()
    assert not seen, "lock order violated:\n" + "\n".join(seen)
