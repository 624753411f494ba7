"""Client contexts and a TLS aiohttp server, beside the shared TLS fixtures of tests/conftest.py.

tests/conftest.py gives each test the embedded server over TLS
(``tls_server``), its certificate naming ``localhost`` and ``127.0.0.1``,
signed by a session CA (``ca``); its SNI callback records the name every
client sent (``server_names``). Here: client contexts that trust that CA,
trust another CA only, or trust the system store (which has never heard
of it), and aiohttp with the same kind of certificate.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest
import trustme

from tests.conftest import ServerContext
from tests.interop.aiohttp_server import AiohttpServer


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    """A CA that signed nothing the servers present."""
    return trustme.CA()


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
def tls_aiohttp(thread_baseline: int, server_context: ServerContext) -> Iterator[AiohttpServer]:
    """aiohttp serving HTTPS and WSS with the same kind of certificate."""
    with AiohttpServer(ssl_context=server_context()) as srv:
        yield srv
