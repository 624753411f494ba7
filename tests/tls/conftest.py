"""Certificates from a throwaway CA (trustme) and TLS servers on 127.0.0.1.

Each test gets a server whose certificate names ``localhost`` and
``127.0.0.1``, signed by a session CA, plus client contexts that trust that
CA, trust another CA only, or trust the system store (which has never heard
of it). The server's SNI callback records the name every client sent.
"""

from __future__ import annotations

import queue
import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme

from tests.interop.aiohttp_server import AiohttpServer
from tether.server import Server

ServerContext = Callable[..., ssl.SSLContext]


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The CA that signs the test servers' certificates."""
    return trustme.CA()


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    """A CA that signed nothing the servers present."""
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


def client_context(trusted: trustme.CA) -> ssl.SSLContext:
    """A verifying client context (hostname checks on) that trusts ``trusted`` only."""
    context = ssl.create_default_context()
    trusted.configure_trust(context)
    return context


@pytest.fixture
def trusting(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the servers' CA."""
    return client_context(ca)


@pytest.fixture
def tls_server(thread_baseline: int, server_context: ServerContext) -> Iterator[Server]:
    """The embedded server speaking TLS (certificate for localhost and 127.0.0.1)."""
    with Server(tls_context=server_context()) as srv:
        yield srv


@pytest.fixture
def tls_aiohttp(thread_baseline: int, server_context: ServerContext) -> Iterator[AiohttpServer]:
    """aiohttp serving HTTPS and WSS with the same kind of certificate."""
    with AiohttpServer(ssl_context=server_context()) as srv:
        yield srv
