"""``tether get --http2`` against hypercorn: HTTP/2 by ALPN over TLS, h2c over TCP.

``-i`` shows what the connection speaks in its status line (``HTTP/2``,
or ``HTTP/1.1`` when ALPN chose it or ``--http2`` was not given).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.cli.conftest import run_cli
from tests.interop.hypercorn_server import HypercornServer

pytestmark = pytest.mark.usefixtures("thread_baseline")


@pytest.fixture
def tls_hypercorn(ca: trustme.CA, tmp_path: Path) -> Iterator[HypercornServer]:
    with HypercornServer(ca, tmp_path) as server:
        yield server


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def test_https_http2_include_shows_http2(tls_hypercorn: HypercornServer, ca_file: Path) -> None:
    url = f"https://localhost:{tls_hypercorn.port}/"
    result = run_cli("get", "--http2", "-i", "--cacert", str(ca_file), url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/2 200 OK\n")
    assert result.stdout.endswith("\n\nhello")
    assert tls_hypercorn.next_request().version == (2, 0)


def test_https_without_http2_stays_http11(tls_hypercorn: HypercornServer, ca_file: Path) -> None:
    url = f"https://localhost:{tls_hypercorn.port}/"
    result = run_cli("get", "-i", "--cacert", str(ca_file), url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("HTTP/1.1 200 OK\n")
    assert tls_hypercorn.next_request().version == (1, 1)


def test_http_http2_is_prior_knowledge() -> None:
    with HypercornServer() as server:
        result = run_cli("get", "--http2", "-i", f"http://127.0.0.1:{server.port}/stream")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("HTTP/2 200 OK\n")
        assert result.stdout.endswith("onetwothree")
        assert server.next_request().version == (2, 0)
