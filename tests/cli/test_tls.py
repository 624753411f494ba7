"""``https://`` and ``wss://``: verified with the system CAs, ``--cacert``'s, or not (``-k``).

The TLS server speaks HTTP only, so past a trusted handshake ``tether get``
gets its body and ``tether ws`` a refused upgrade (its 200 is not a 101).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.cli.conftest import one_line_error, run_cli
from tests.cli.tls_server import TlsServer

pytestmark = pytest.mark.usefixtures("thread_baseline")


@pytest.mark.parametrize(
    ("command", "url", "trusted_code", "trusted_says"),
    [
        ("get", "https://127.0.0.1:{port}/", 0, "secure"),
        ("ws", "wss://127.0.0.1:{port}/websocket", 22, "upgrade refused, the server answered 200"),
    ],
)
def test_the_certificate_is_verified_unless_told_otherwise(
    tmp_path: Path, command: str, url: str, trusted_code: int, trusted_says: str
) -> None:
    with TlsServer(tmp_path) as tls:
        target = url.format(port=tls.port)
        untrusted = run_cli(command, target)
        with_ca = run_cli(command, "--cacert", str(tls.ca_file), target)
        insecure = run_cli(command, "--insecure", target)
    assert untrusted.returncode == 60
    assert "is not trusted" in one_line_error(untrusted)
    for result in (with_ca, insecure):
        assert result.returncode == trusted_code, result.stderr
        assert trusted_says in (result.stdout if trusted_code == 0 else one_line_error(result))


def test_an_unreadable_cacert_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("get", "--cacert", str(tmp_path / "missing.pem"), "https://127.0.0.1:1/")
    assert result.returncode == 2
    assert one_line_error(result).startswith("tether: cannot load --cacert")


@pytest.mark.parametrize(("command", "scheme"), [("get", "https"), ("ws", "wss")])
def test_connect_timeout_bounds_a_tls_handshake_that_never_ends(command: str, scheme: str) -> None:
    # The kernel completes the TCP handshake from the backlog; nothing ever answers TLS.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = run_cli(command, "--connect-timeout", "0.5", f"{scheme}://127.0.0.1:{port}/")
    assert result.returncode == 28
    assert one_line_error(result).startswith(f"tether: timed out talking to 127.0.0.1:{port}")
