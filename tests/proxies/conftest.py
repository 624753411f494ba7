"""Fixtures of the proxy interop suite: real proxies of ours, origins that see who called.

- ``shared_proxies`` (session): one running instance per (program, auth),
  started on first use, killed at the end of the session; the tests that
  only pass traffic through a proxy share them (squid, tinyproxy, dante and
  microsocks start in 20-50 ms here, and the suite runs three times in CI).
- ``own_proxy``: a proxy for one test alone (the tests that kill it,
  or start it late), killed at teardown.
- ``origin``: aiohttp on 127.0.0.1 (:class:`Origin`, also over TLS) recording
  the address each request came from; the proxies connect out from ``OUTGOING``
  (127.0.0.2), so a request that bypassed the proxy shows.
- ``stalling_proxy``: a port that accepts connections (the kernel does,
  from the listen backlog) and never answers a byte.

When a test fails, the logs of the proxies it used are printed.
"""

from __future__ import annotations

import queue
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trustme
from aiohttp import web

from tests.interop.aiohttp_server import AiohttpServer
from tests.proxies._daemons import Kind, ProxyDaemon

OwnProxy = Callable[..., ProxyDaemon]


class Origin(AiohttpServer):
    """aiohttp (tests/interop's routes) that also records each request's source address."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(ssl_context=ssl_context)
        #: The source address of every request, in order (the Websocket handshakes too).
        self.remotes: queue.Queue[str | None] = queue.Queue()

    def _seen(self, request: web.Request) -> None:
        self.remotes.put(request.remote)
        super()._seen(request)

    def next_remote(self, timeout: float = 5.0) -> str | None:
        """The source address of the next request the origin received."""
        return self.remotes.get(timeout=timeout)


class SharedProxies:
    """The session's running proxies, one per (program, auth), started on demand."""

    def __init__(self, ca: trustme.CA) -> None:
        self._ca = ca
        self._running: dict[tuple[Kind, bool, bool], ProxyDaemon] = {}
        self._owned: list[ProxyDaemon] = []
        #: Those the current test asked for (their logs are printed if it fails).
        self.used: list[ProxyDaemon] = []

    def get(self, kind: Kind, *, auth: bool = False, tls: bool = False) -> ProxyDaemon:
        """The running instance of ``kind`` (started now if this is the first ask).

        ``tls``: an ``https://`` proxy (squid), its certificate naming
        127.0.0.1 only, signed by the test CA.
        """
        daemon = self._running.get((kind, auth, tls))
        if daemon is None:
            pem = None
            if tls:
                leaf = self._ca.issue_cert("127.0.0.1")
                pem = (
                    b"".join(c.bytes() for c in leaf.cert_chain_pems),
                    leaf.private_key_pem.bytes(),
                )
            daemon = ProxyDaemon(kind, auth=auth, tls=pem)
            try:
                daemon.start()
            except BaseException:
                daemon.close()
                raise
            self._running[(kind, auth, tls)] = daemon
        assert daemon.running, f"{daemon!r} died:\n{daemon.logs()}"
        self.used.append(daemon)
        return daemon

    def own(self, kind: Kind, *, auth: bool, start: bool) -> ProxyDaemon:
        """A proxy for the current test alone (started unless ``start`` is False)."""
        daemon = ProxyDaemon(kind, auth=auth)
        self._owned.append(daemon)
        self.used.append(daemon)
        return daemon.start() if start else daemon

    def close_owned(self) -> None:
        """Kill the current test's own proxies."""
        owned, self._owned = self._owned, []
        for daemon in owned:
            daemon.close()

    def close(self) -> None:
        self.close_owned()
        for daemon in self._running.values():
            daemon.close()


@pytest.fixture(scope="session")
def shared_proxies(ca: trustme.CA) -> Iterator[SharedProxies]:
    """The session's shared proxies (see :class:`SharedProxies`); all killed at the end."""
    pool = SharedProxies(ca)
    try:
        yield pool
    finally:
        pool.close()


#: Whether the test's call phase failed (set by the hook below).
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep the call phase's report on the item: the fixtures print logs when it failed."""
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def _print_proxy_logs_on_failure(
    request: pytest.FixtureRequest, shared_proxies: SharedProxies
) -> Iterator[None]:
    """Print the logs of the proxies the test used if it failed; kill the test's own ones."""
    shared_proxies.used.clear()
    yield
    if request.node.stash.get(_FAILED, False):
        for daemon in shared_proxies.used:
            print(f"=== logs of {daemon!r}\n{daemon.logs()}")
    shared_proxies.used.clear()
    shared_proxies.close_owned()  # own_proxy's, after their logs were printed


@pytest.fixture
def proxies(shared_proxies: SharedProxies) -> SharedProxies:
    """The session's shared proxies: ``proxies.get(kind, auth=False)``."""
    return shared_proxies


@pytest.fixture
def own_proxy(shared_proxies: SharedProxies) -> OwnProxy:
    """Make proxies for this test alone: ``own_proxy(kind, auth=False, start=True)``.

    Killed at the end of the test (by ``_print_proxy_logs_on_failure``, which
    prints their logs first if the test failed).
    """

    def make(kind: Kind, *, auth: bool = False, start: bool = True) -> ProxyDaemon:
        return shared_proxies.own(kind, auth=auth, start=start)

    return make


@pytest.fixture
def origin(thread_baseline: int) -> Iterator[Origin]:
    """A plain HTTP/Websocket origin on 127.0.0.1 (aiohttp)."""
    with Origin() as server:
        yield server


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA only."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@pytest.fixture
def stalling_proxy() -> Iterator[int]:
    """The port of a "proxy" that accepts connections and never answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]
