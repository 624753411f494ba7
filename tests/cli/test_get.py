"""``tether get URL`` as a subprocess: against tether's server, aiohttp and a TLS server.

Every failure must be one ``tether: ...`` line on stderr and curl's exit code.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tests.cli.conftest import one_line_error, run_cli
from tests.interop.aiohttp_server import AiohttpServer
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")


def test_the_body_goes_to_stdout_and_nothing_to_stderr(embedded: Server) -> None:
    result = run_cli("get", f"{embedded.url}/")
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello from tether\n", "")


def test_include_prints_the_status_line_and_headers_and_h_adds_headers(
    embedded: Server,
) -> None:
    result = run_cli(
        "get", "-i", "-H", "x-one: 1", "--header", "X-Two: two words", f"{embedded.url}/headers"
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition("\n\n")
    assert head.splitlines()[0] == "HTTP/1.1 200 OK"
    assert "content-type: text/plain" in head.splitlines()
    assert "x-one: 1" in body.splitlines()
    assert "x-two: two words" in body.splitlines()


def test_x_picks_the_method_and_http10_the_version(embedded: Server) -> None:
    result = run_cli("get", "-i", "-X", "DELETE", "--http1.0", f"{embedded.url}/echo")
    assert result.returncode == 0, result.stderr
    head = result.stdout.split("\n\n")[0].splitlines()
    assert head[0] == "HTTP/1.0 200 OK"
    assert "x-method: DELETE" in head


def test_informational_responses_are_included_too(embedded: Server) -> None:
    result = run_cli("get", "-i", f"{embedded.url}/inform")
    status_lines = [line for line in result.stdout.splitlines() if line.startswith("HTTP/")]
    assert status_lines == ["HTTP/1.1 103 Early Hints", "HTTP/1.1 200 OK"]
    assert result.stdout.endswith("\n\ninformed")


def test_output_file_gets_a_large_body_with_a_progress_bar(
    embedded: Server, tmp_path: Path
) -> None:
    target = tmp_path / "big.bin"
    result = run_cli("get", "-o", str(target), f"{embedded.url}/big/3145728")
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == b"x" * 3145728
    assert result.stdout == ""
    assert result.stderr.endswith("100% [##############################] 3.0 MiB / 3.0 MiB\n")


def test_silent_output_file_and_small_bodies_show_no_progress(
    embedded: Server, tmp_path: Path
) -> None:
    big = run_cli("get", "-s", "-o", str(tmp_path / "big"), f"{embedded.url}/big/3145728")
    small = run_cli("get", "-o", str(tmp_path / "small"), f"{embedded.url}/")
    assert (big.returncode, big.stderr, small.returncode, small.stderr) == (0, "", 0, "")
    assert (tmp_path / "small").read_bytes() == b"hello from tether\n"


def test_an_output_file_that_cannot_be_written_exits_23(embedded: Server, tmp_path: Path) -> None:
    target = tmp_path / "no-such-dir" / "out"
    result = run_cli("get", "-o", str(target), f"{embedded.url}/")
    assert result.returncode == 23
    assert one_line_error(result) == f"tether: cannot write {target}: No such file or directory"
    assert embedded.requests == []  # checked before connecting


def test_an_http_error_is_success_unless_fail_is_given(embedded: Server) -> None:
    plain = run_cli("get", f"{embedded.url}/status/404")
    failed = run_cli("get", "-f", f"{embedded.url}/status/404")
    assert (plain.returncode, plain.stdout) == (0, "status 404")
    assert (failed.returncode, failed.stdout) == (22, "")
    assert one_line_error(failed) == f"tether: {embedded.url}/status/404: the server answered 404"


def test_against_aiohttp_get_and_post(aiohttp_server: AiohttpServer) -> None:
    base = f"http://127.0.0.1:{aiohttp_server.port}"
    got = run_cli("get", f"{base}/")
    posted = run_cli("get", "-d", "ping pong", "-H", "x-token: t1", f"{base}/echo")
    assert (got.returncode, got.stdout) == (0, "hello")
    assert (posted.returncode, posted.stdout) == (0, "ping pong")
    seen = [aiohttp_server.next_request(), aiohttp_server.next_request()]
    assert [(r.method, r.path) for r in seen] == [("GET", "/"), ("POST", "/echo")]
    assert seen[1].header("x-token") == "t1"


def test_max_time_bounds_a_slow_response_with_28(embedded: Server) -> None:
    result = run_cli("get", "-m", "0.3", f"{embedded.url}/delay/5000")
    assert (result.returncode, result.stdout) == (28, "")
    assert one_line_error(result) == (
        f"tether: no complete answer from 127.0.0.1:{embedded.port} within --max-time 0.3 s"
    )


def test_a_server_that_hangs_up_at_once_exits_56() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.close()

        closer = threading.Thread(target=hang_up)
        closer.start()
        result = run_cli("get", f"http://127.0.0.1:{listener.getsockname()[1]}/")
        closer.join(10.0)
    assert result.returncode == 56
    assert "lost" in one_line_error(result)


def test_a_refused_port_exits_7(refused_port: int) -> None:
    result = run_cli("get", f"http://127.0.0.1:{refused_port}/")
    assert result.returncode == 7
    assert one_line_error(result) == f"tether: cannot connect to 127.0.0.1:{refused_port}: refused"


@pytest.mark.parametrize(
    "url",
    ["htp://127.0.0.1/", "http://127.0.0.1:99999/", "http:///path", "ws://127.0.0.1/", "nonsense"],
)
def test_a_bad_url_exits_3(url: str) -> None:
    result = run_cli("get", url)
    assert result.returncode == 3
    assert one_line_error(result).startswith(f"tether: bad URL {url!r}")


def test_a_bad_header_option_is_a_usage_error(embedded: Server) -> None:
    result = run_cli("get", "-H", "no colon here", f"{embedded.url}/")
    assert result.returncode == 2
    assert "expected 'name: value'" in one_line_error(result)


def test_tls_to_a_plain_http_server_fails_the_handshake_with_35(embedded: Server) -> None:
    result = run_cli("get", f"https://127.0.0.1:{embedded.port}/")
    assert result.returncode == 35
    assert one_line_error(result).startswith(
        f"tether: TLS handshake with 127.0.0.1:{embedded.port}"
    )


def test_help_documents_the_exit_codes() -> None:
    result = run_cli("get", "--help")
    assert result.returncode == 0
    for line in ("exit codes:", "  7  cannot connect", " 60  the server's certificate"):
        assert line in result.stdout


# -- --unix-socket (curl's) -------------------------------------------------------------------


def test_unix_socket_sends_the_request_through_that_socket(unix_path: str) -> None:
    with AiohttpServer(unix_path=unix_path) as server:
        result = run_cli("get", "--unix-socket", unix_path, "http://anything.test/")
        assert (result.returncode, result.stdout, result.stderr) == (0, "hello", "")
        assert server.next_request().header("host") == "localhost"  # as Gun's open_unix


def test_a_missing_unix_socket_exits_7_naming_it(unix_path: str) -> None:
    result = run_cli("get", "--unix-socket", unix_path, "http://localhost/")
    assert result.returncode == 7
    assert one_line_error(result) == (
        f"tether: cannot connect to unix:{unix_path}: No such file or directory"
    )


def test_a_unix_socket_path_too_long_is_a_usage_error() -> None:
    result = run_cli("get", "--unix-socket", "/tmp/" + "x" * 200, "http://localhost/")
    assert result.returncode == 2
    assert one_line_error(result).startswith("tether: --unix-socket: path '/tmp/xxx")
