"""Run tether against the Autobahn|Testsuite fuzzingserver and summarise the result.

The standard client loop: ask the server how many cases it has
(``/getCaseCount``), open one Websocket per case (``/runCase?case=N``) and
echo every text and binary message back, then ask it to write its reports
(``/updateReports``). Everything goes through tether's public API
(``tether.open``, ``ws_upgrade``, ``ws_send``, the ``Inbox``), with
permessage-deflate offered and no message size limit (case 9.* sends 16 MiB).

Profiles: ``quick`` leaves out the performance (9.*) and compression
(12.*, 13.*) sections; ``full`` runs all 517 cases. The exit status is 1 if
any case is FAILED, NON-STRICT or UNIMPLEMENTED, or if a case did not end in
time. Reports go to ``conformance/reports/`` (``index.html`` to browse).

Usage: ``python3 conformance/autobahn.py [--profile quick|full] [--no-compress]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import NoReturn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing tether

import tether  # noqa: E402
from conformance.venv27 import ensure_wstest  # noqa: E402

AGENT = "tether"
REPORTS = HERE / "reports"
PROFILES: dict[str, list[str]] = {
    "quick": ["9.*", "12.*", "13.*"],  # excluded cases
    "full": [],
}
STATUSES = ("OK", "NON-STRICT", "FAILED", "UNIMPLEMENTED", "INFORMATIONAL")
BAD = ("NON-STRICT", "FAILED", "UNIMPLEMENTED")
CASE_TIMEOUT = 120.0  # seconds for one case; 9.* moves 16 MiB messages through deflate
START_TIMEOUT = 60.0  # seconds for wstest to start listening
STOP_TIMEOUT = 10.0

# wstest binds to every interface; this Python 2 prelude makes it bind to
# 127.0.0.1 only (its reactor's listenTCP defaults to interface "").
_LOOPBACK_WSTEST = """
import sys
from twisted.internet import reactor
_listen = reactor.listenTCP
def _loopback(port, factory, backlog=50, interface=''):
    return _listen(port, factory, backlog, interface or '127.0.0.1')
reactor.listenTCP = _loopback
from autobahntestsuite.wstest import run
sys.argv[0] = 'wstest'
sys.exit(run())
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_listening(port: int, server: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once ``port`` accepts connections; fail if the server exits or is slow."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"wstest exited with status {server.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
            return
        time.sleep(0.1)  # polling a process we do not control: no event to wait for
    raise SystemExit(f"wstest did not listen on port {port} within {timeout} s")


@contextlib.contextmanager
def fuzzingserver(exclude: list[str], workdir: Path) -> Iterator[int]:
    """Start ``wstest -m fuzzingserver`` on a free port; stop it (and its children) on exit."""
    python = ensure_wstest().with_name("python")
    port = free_port()
    spec = {
        "url": f"ws://127.0.0.1:{port}",
        "outdir": str(workdir),
        "cases": ["*"],
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    workdir.mkdir(parents=True, exist_ok=True)
    spec_file = workdir / "fuzzingserver.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    with (workdir / "wstest.log").open("wb") as log:
        # --webport 0: no report web server (it would take port 8080)
        command = [str(python), "-c", _LOOPBACK_WSTEST, "-m", "fuzzingserver", "--webport", "0"]
        server = subprocess.Popen(
            [*command, "-s", str(spec_file)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        try:
            wait_listening(port, server, START_TIMEOUT)
            yield port
        finally:
            stop(server)


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, SIGKILL it if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
        return


def echo(conn: tether.Connection, frame: tether.Frame) -> None:
    """Send ``frame`` back, unless tether already closed the Websocket (a failed case)."""
    with contextlib.suppress(tether.NotUpgradedError):
        conn.ws_send(frame)


def session(port: int, path: str, compress: bool, timeout: float) -> list[str]:
    """Open a Websocket on ``path``, echo every message until the connection ends.

    Returns the text messages received (``/getCaseCount`` answers with one).
    Raises ``TimeoutError`` if the server did not end the session in time.
    """
    deadline = time.monotonic() + timeout
    conn = tether.open(
        "127.0.0.1",
        port,
        retry=0,
        # Section 9 sends messages of up to 16 MiB, in up to 65,536 frames:
        # an echo client lifts the limits a user of untrusted servers keeps.
        ws_opts={
            "compress": compress,
            "max_message_size": None,
            "max_fragments": None,
            "closing_timeout": 5.0,
        },
    )
    texts: list[str] = []
    inbox = conn.inbox
    assert inbox is not None  # opened without an owner: tether made one
    try:
        conn.await_up(timeout=timeout)
        conn.ws_upgrade(path)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{path} did not end within {timeout} s")
            match inbox.receive(timeout=remaining):
                case tether.Ws(frame=tether.Text(data=text) as frame):
                    texts.append(text)
                    echo(conn, frame)
                case tether.Ws(frame=tether.Binary() as frame):
                    echo(conn, frame)
                case tether.Down() | tether.Response():
                    return texts
                case _:  # Upgrade, Close, Error (tether closes by itself): keep going
                    pass
    finally:
        conn.close()


def run_cases(port: int, compress: bool) -> list[str]:
    """Run every case; return the ids of the cases that timed out."""
    count = int(session(port, "/getCaseCount", compress, CASE_TIMEOUT)[0])
    timed_out = []
    for case in range(1, count + 1):
        path = f"/runCase?case={case}&agent={AGENT}"
        try:
            session(port, path, compress, CASE_TIMEOUT)
        except (TimeoutError, tether.TetherError) as exc:
            print(f"case {case}: {type(exc).__name__}: {exc}", file=sys.stderr)
            timed_out.append(str(case))
        if case % 50 == 0:
            print(f"... {case}/{count} cases", file=sys.stderr)
    session(port, f"/updateReports?agent={AGENT}", compress, CASE_TIMEOUT)
    return timed_out


def section_key(section: str) -> tuple[int, ...]:
    """Sort "10" after "9"."""
    return tuple(int(p) for p in section.split("."))


def summarise(index_file: Path) -> tuple[dict[str, Counter[str]], list[str]]:
    """Per-section status counts from ``index.json`` and the ids of the bad cases."""
    results = json.loads(index_file.read_text())[AGENT]
    sections: dict[str, Counter[str]] = {}
    bad = []
    for case_id, result in results.items():
        status = result["behavior"]
        sections.setdefault(case_id.split(".")[0], Counter())[status] += 1
        if status in BAD:
            bad.append(f"{case_id} {status} (close: {result['behaviorClose']})")
    return dict(sorted(sections.items(), key=lambda kv: section_key(kv[0]))), bad


def table(sections: dict[str, Counter[str]]) -> str:
    """A Markdown table: one row per section, one column per status, and the total."""
    lines = [
        "| Section | Cases | " + " | ".join(STATUSES) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in STATUSES) + " |",
    ]
    total: Counter[str] = Counter()
    for section, counts in sections.items():
        total.update(counts)
        cells = " | ".join(str(counts[s]) for s in STATUSES)
        lines.append(f"| {section} | {sum(counts.values())} | {cells} |")
    cells = " | ".join(f"**{total[s]}**" for s in STATUSES)
    lines.append(f"| **all** | **{sum(total.values())}** | {cells} |")
    return "\n".join(lines)


def _terminated(signum: int, frame: FrameType | None) -> NoReturn:
    """SIGTERM (a CI timeout, kill) unwinds like Ctrl-C, so wstest is stopped too."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Run a profile; 0 if every case is OK or INFORMATIONAL."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument(
        "--no-compress", action="store_true", help="don't offer permessage-deflate"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    workdir = REPORTS / args.profile
    index_file = workdir / "index.json"
    index_file.unlink(missing_ok=True)
    started = time.monotonic()
    with fuzzingserver(PROFILES[args.profile], workdir) as port:
        timed_out = run_cases(port, compress=not args.no_compress)
    elapsed = time.monotonic() - started
    sections, bad = summarise(index_file)
    print(table(sections))
    print(f"\nprofile {args.profile}, {elapsed:.0f} s, reports in {workdir}/index.html")
    for line in bad:
        print(f"BAD {line}")
    for case in timed_out:
        print(f"TIMED OUT case number {case}")
    return 1 if bad or timed_out else 0


if __name__ == "__main__":
    sys.exit(main())
