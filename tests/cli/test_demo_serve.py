"""The ``tether`` command: ``demo`` walks the seed and exits 0; bad usage exits non-zero."""

from __future__ import annotations

import io
import signal
import subprocess
import sys

import pytest

from tether._cli import demo, main

pytestmark = pytest.mark.usefixtures("thread_baseline")


def test_demo_walks_the_seed_and_prints_one_line_per_event() -> None:
    out = io.StringIO()
    assert demo(out) == 0
    lines = [line.strip() for line in out.getvalue().splitlines()]
    events = [
        line.split()[0]
        for line in lines
        if line and not line.startswith((">>", "body", "demo", "reconnected"))
    ]
    # Up, GET (Response + Data), Upgrade, 1 + 3 echoes, the close echo, Down, Up.
    assert events == [
        "Up",
        "Response",
        "Data",
        "Upgrade",
        "Ws",
        "Ws",
        "Ws",
        "Ws",
        "Ws",
        "Down",
        "Up",
    ]
    assert any("subprotocol=mychat" in line for line in lines)
    assert any("Text('Hello!')" in line for line in lines)
    assert any(line.startswith("Down") and "protocol=ws" in line for line in lines)
    assert lines[-1] == "demo finished: every step saw its event"


def test_python_dash_m_tether_demo_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tether", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Upgrade" in result.stdout


def test_unknown_command_exits_non_zero() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code != 0


def test_serve_runs_the_embedded_server_until_interrupted(open_conn) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()  # printed (and flushed) once listening
        assert banner.startswith("tether server on http://127.0.0.1:"), banner
        port = int(banner.split("http://127.0.0.1:")[1].split()[0])
        conn = open_conn("127.0.0.1", port)
        assert conn.await_body(conn.get("/")) == b"hello from tether\n"
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
