"""``tether ws URL`` as a subprocess: stdin lines out, frames in, reconnects on stderr."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.cli.conftest import CLI_TIMEOUT, Interactive, one_line_error, run_cli
from tests.interop.aiohttp_server import AiohttpServer
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

Start = Callable[..., Interactive]


def ws_url(server: Server, path: str = "/websocket") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def retry_line(what: str, attempt: int, of: int) -> re.Pattern[str]:
    """The line announcing the wait before reconnect ``attempt``: why (a regex), which, when."""
    return re.compile(rf"\* {what}; retry {attempt} of {of} (at once|in \d+\.\d\d s)")


def test_stdin_lines_are_echoed_in_order_and_eof_closes_cleanly(embedded: Server) -> None:
    # CRLF line ends are stripped too; the last line needs no newline.
    result = run_cli("ws", ws_url(embedded), stdin="hello\r\nsecond line\n\nlast")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nsecond line\n\nlast\n"
    events = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("* ")]
    assert events == ["Up", "Upgrade", "received", "Down"]
    assert "WsClosed(\"websocket closed by the client: 1000 ''\")" in result.stderr


def test_against_aiohttp_with_a_subprotocol_and_a_header(aiohttp_server: AiohttpServer) -> None:
    result = run_cli(
        "ws",
        "--subprotocol",
        "mychat",
        "-H",
        "x-token: t2",
        f"ws://127.0.0.1:{aiohttp_server.port}/websocket",
        stdin="one\ntwo\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "one\ntwo\n"
    assert "subprotocol=mychat" in result.stderr
    seen = aiohttp_server.next_request()
    assert seen.header("sec-websocket-protocol") == "mychat"
    assert seen.header("x-token") == "t2"
    assert aiohttp_server.next_ws_end().close_code == 1000


def test_unix_socket_upgrades_through_that_socket(unix_path: str) -> None:
    with AiohttpServer(unix_path=unix_path):
        result = run_cli(
            "ws",
            "--unix-socket",
            unix_path,
            "--subprotocol",
            "mychat",
            "ws://localhost/websocket",
            stdin="through the socket\n",
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "through the socket\n"


def test_frames_from_the_server_are_printed_as_they_come(
    embedded: Server, interactive: Start
) -> None:
    session = interactive("ws", ws_url(embedded))
    session.stderr_until(lambda line: line.startswith("* Upgrade"))
    session.send("!fragments 3")  # the server sends "abc" in three frames: one message
    assert session.stdout_line() == "abc"
    session.send("!big 10")
    assert session.stdout_line() == "x" * 10  # a binary message, written as its bytes
    session.end_input()
    assert session.wait() == 0


def test_reupgrade_reconnects_shows_it_and_goes_on(embedded: Server, interactive: Start) -> None:
    session = interactive("ws", "--reupgrade", ws_url(embedded))
    session.stderr_until(lambda line: line.startswith("* Upgrade"))
    session.send("before")
    assert session.stdout_line() == "before"
    assert embedded.drop_connections() == 1
    down = session.stderr_until(lambda line: line.startswith("* Down"))
    assert "ConnectionClosed" in down
    # While it waits, one line says what happened, that it retries, and when.
    lost = f"connection to 127.0.0.1:{embedded.port} lost: the server closed the connection"
    waiting = session.stderr_until(lambda line: not line.startswith("* Down"))
    assert retry_line(re.escape(f"{lost} without a close handshake"), 1, 5).fullmatch(waiting)
    assert session.stderr_until(lambda line: True).startswith("* Up")
    session.stderr_until(lambda line: line.startswith("* Upgrade") and "stream=2" in line)
    session.send("after")
    assert session.stdout_line() == "after"
    session.end_input()
    assert session.wait() == 0


def test_reupgrade_says_each_retry_and_that_they_ran_out(
    embedded: Server, interactive: Start
) -> None:
    session = interactive("ws", "--reupgrade", "--retry", "2", ws_url(embedded))
    session.stderr_until(lambda line: line.startswith("* Upgrade"))
    where = f"127.0.0.1:{embedded.port}"
    embedded.stop()  # the connection is lost, and every reconnect is refused
    session.stderr_until(lambda line: line.startswith("* Down"))
    lines = [session.stderr_until(lambda line: True) for _ in range(3)]
    assert retry_line(re.escape(f"connection to {where} lost: ") + ".+", 1, 2).fullmatch(lines[0])
    assert retry_line(re.escape(f"connecting to {where} failed"), 2, 2).fullmatch(lines[1])
    assert lines[2] == (
        f"tether: gave up after 2 retries (--retry 2); last error: cannot connect to {where}: "
        "refused"
    )
    assert session.wait() == 7


def test_without_reupgrade_a_lost_connection_ends_the_session(
    embedded: Server, interactive: Start
) -> None:
    session = interactive("ws", ws_url(embedded))
    session.stderr_until(lambda line: line.startswith("* Upgrade"))
    assert embedded.drop_connections() == 1
    line = session.stderr_until(lambda line: line.startswith("tether: "))
    assert line == f"tether: connection to 127.0.0.1:{embedded.port} lost: " + (
        "the server closed the connection without a close handshake"
    )
    assert session.wait() == 56


def test_empty_stdin_still_connects_upgrades_and_closes(embedded: Server) -> None:
    result = run_cli("ws", ws_url(embedded))
    assert (result.returncode, result.stdout) == (0, "")
    assert "* Upgrade" in result.stderr
    assert embedded.requests == [("GET", "/websocket")]


def test_a_close_from_the_server_ends_the_session_with_0(embedded: Server) -> None:
    # stdin stays open: the session ends because the server closed it.
    result = run_cli("ws", ws_url(embedded), stdin="!close 4001 go away\n")
    assert result.returncode == 0, result.stderr
    assert "* received Close(4001, 'go away')" in result.stderr.splitlines()


@pytest.mark.parametrize("path", ["/forbidden-ws", "/"])
def test_a_refused_upgrade_exits_22(embedded: Server, path: str) -> None:
    result = run_cli("ws", ws_url(embedded, path), stdin="hello\n")
    assert result.returncode == 22
    assert one_line_error(result).startswith(f"tether: {ws_url(embedded, path)}: upgrade refused")
    assert result.stdout == ""


def test_a_refused_port_exits_7_at_once_or_when_retries_run_out(refused_port: int) -> None:
    refused = f"cannot connect to 127.0.0.1:{refused_port}: refused"
    plain = run_cli("ws", f"ws://127.0.0.1:{refused_port}/", stdin="hello\n")
    assert plain.returncode == 7
    assert one_line_error(plain) == f"tether: {refused}"
    assert plain.stderr.splitlines() == [f"tether: {refused}"]  # no retry: nothing to announce

    retried = run_cli("ws", "--reupgrade", "--retry", "2", f"ws://127.0.0.1:{refused_port}/")
    assert retried.returncode == 7
    assert one_line_error(retried) == (
        f"tether: gave up after 2 retries (--retry 2); last error: {refused}"
    )
    waits = retried.stderr.splitlines()[:-1]
    failed = f"connecting to 127.0.0.1:{refused_port} failed"
    assert len(waits) == 2, retried.stderr
    for attempt, line in enumerate(waits, start=1):
        assert retry_line(re.escape(failed), attempt, 2).fullmatch(line), line


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "ws://", "ws://127.0.0.1:0x50/"])
def test_a_bad_url_exits_3(url: str) -> None:
    result = run_cli("ws", url)
    assert result.returncode == 3
    assert one_line_error(result).startswith(f"tether: bad URL {url!r}")


def test_ctrl_c_closes_and_exits_130(embedded: Server, interactive: Start) -> None:
    session = interactive("ws", ws_url(embedded))
    session.stderr_until(lambda line: line.startswith("* Upgrade"))
    session.proc.send_signal(signal.SIGINT)
    assert session.wait() == 130
    assert embedded.wait_for_connections(0, timeout=10.0)


def test_a_line_that_is_not_utf8_ends_the_session_with_1(embedded: Server) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "ws", ws_url(embedded)],
        input=b"fine\n\xc3\x28 broken\n",
        capture_output=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.decode().splitlines()[-1] == "tether: line 2 of stdin is not UTF-8"
