"""``https://`` and ``wss://`` against the embedded server over TLS (``tls_server``).

Its certificate (for ``localhost`` and ``127.0.0.1``) is signed by the
tests' throwaway trustme CA, which the system store does not know: it is
trusted with ``--cacert`` (the CA written to a PEM file), skipped with
``--insecure``, and otherwise refused with exit code 60. A TLS handshake
that never ends needs no TLS server at all: a listening socket that never
answers (the kernel accepts the TCP connection from its backlog).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trustme

from tests.cli.conftest import one_line_error, run_cli
from tests.conftest import ServerContext
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The CA of ``tls_server``'s certificate, as the PEM file ``--cacert`` takes."""
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def test_wss_with_cacert_echoes_stdin_lines_and_eof_exits_0(
    tls_server: Server, ca_file: Path
) -> None:
    url = f"wss://localhost:{tls_server.port}/websocket"
    result = run_cli("ws", url, "--cacert", str(ca_file), stdin="hello\nover TLS\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nover TLS\n"
    events = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("* ")]
    assert events == ["Up", "Upgrade", "received", "Down"]
    assert tls_server.requests == [("GET", "/websocket")]


def test_https_get_with_cacert_prints_the_body(tls_server: Server, ca_file: Path) -> None:
    result = run_cli("get", f"https://localhost:{tls_server.port}/", "--cacert", str(ca_file))
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from tether\n", "")
    assert tls_server.requests == [("GET", "/")]


@pytest.mark.parametrize(
    ("command", "url"),
    [("ws", "wss://localhost:{port}/websocket"), ("get", "https://localhost:{port}/")],
)
def test_an_untrusted_certificate_exits_60_before_any_request(
    tls_server: Server, command: str, url: str
) -> None:
    result = run_cli(command, url.format(port=tls_server.port), stdin="never sent\n")
    assert result.returncode == 60
    error = one_line_error(result)
    assert error.startswith(f"tether: TLS: the certificate of localhost:{tls_server.port} ")
    assert "is not trusted" in error
    assert error.endswith("(--cacert FILE to trust a CA, --insecure to skip verification)")
    assert result.stdout == ""
    assert tls_server.requests == []


@pytest.mark.parametrize(
    ("command", "url", "stdin", "output"),
    [
        ("ws", "wss://127.0.0.1:{port}/websocket", "unverified\n", "unverified\n"),
        ("get", "https://127.0.0.1:{port}/", "", "hello from tether\n"),
    ],
)
def test_insecure_skips_verification(
    tls_server: Server, command: str, url: str, stdin: str, output: str
) -> None:
    result = run_cli(command, "--insecure", url.format(port=tls_server.port), stdin=stdin)
    assert (result.returncode, result.stdout) == (0, output), result.stderr


def test_a_certificate_for_another_name_exits_60_even_with_cacert(
    server_context: ServerContext, ca_file: Path
) -> None:
    with Server(tls_context=server_context("elsewhere.example")) as elsewhere:
        result = run_cli("get", "--cacert", str(ca_file), f"https://localhost:{elsewhere.port}/")
    assert result.returncode == 60
    assert "Hostname mismatch" in one_line_error(result)


def test_an_unreadable_cacert_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli("get", "--cacert", str(tmp_path / "missing.pem"), "https://127.0.0.1:1/")
    assert result.returncode == 2
    assert one_line_error(result).startswith("tether: cannot load --cacert")


@pytest.mark.parametrize(("command", "scheme"), [("get", "https"), ("ws", "wss")])
def test_connect_timeout_bounds_a_tls_handshake_that_never_ends(command: str, scheme: str) -> None:
    # Not the embedded server: it would answer the handshake at once.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = run_cli(command, "--connect-timeout", "0.5", f"{scheme}://127.0.0.1:{port}/")
    assert result.returncode == 28
    assert one_line_error(result).startswith(f"tether: timed out talking to 127.0.0.1:{port}")
