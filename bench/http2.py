"""HTTP/2 side by side, in one run: 100 concurrent GETs on one connection, 32 B Websocket echoes.

    bench/.venv/bin/python bench/http2.py [--duration 2] [--rounds 3]

(bench/run.py makes bench/.venv, with what bench/requirements.txt lists.)

Starts its servers as child processes on 127.0.0.1 (hypercorn with
bench/_h2_app.py, h2c and HTTP/1.1 on one port; Node's http and http2,
bench/h2_server.js, and nghttpd, if installed) and
measures, each for ``--duration`` seconds, ``--rounds`` times (the best
is printed, with all the runs, and the targets' ratios round by round
with their median):

- ``get100``: rounds of 100 concurrent GETs on ONE connection, requests/s:
  tether over HTTP/2 (h2c), httpx ``http1=False, http2=True`` (one
  connection, ``asyncio.gather``), tether over HTTP/1.1 keep-alive (one
  connection: tether queues the 100 and sends each after the previous);
- ``ws32``: 32 B Websocket round trips, tether over HTTP/2 (RFC 8441) and
  over HTTP/1.1, round trips/s, against hypercorn and against Node
  (bench/h2_server.js: ``ws`` over HTTP/1.1, its own echo over http2),
  with the CPU time per round trip of the client (this process) and of
  the server (its processes, from /proc): a round trip waits for both, so
  a server whose HTTP/2 costs more per message than its HTTP/1.1 bounds
  the ratio whatever the client does.

Issue 22's targets: get100 h2 >= 1.5x httpx and >= tether HTTP/1.1; ws32
h2 >= 0.9x HTTP/1.1.

``--opcodes`` measures no rate: it counts the byte code instructions of a
32 B Websocket round trip over HTTP/2 and over HTTP/1.1 against Node (every
thread, ``sys.settrace`` with ``f_trace_opcodes``, ``--count`` round
trips after 300 uncounted), and lists the functions whose counts differ
most: where HTTP/2 costs tether more. The busy-poll spin counts too (a few
instructions a round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from calls import _Counting  # calls.py's byte code tracer (bench/ is the script's path)

import tether

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
BATCH = 100
START_TIMEOUT = 10.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError("server did not listen in time")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of process ``pid`` and its descendants, from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, parents = 0.0, {pid}
    for stat in sorted(Path("/proc").glob("[0-9]*/stat"), key=lambda p: int(p.parent.name)):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        this, parent = int(stat.parent.name), int(fields[1])
        if this in parents or parent in parents:
            parents.add(this)
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@contextmanager
def _server(args: list[str], port: int) -> Iterator[tuple[int, int]]:
    """The server ``args`` start, listening on ``port``: ``(port, its process id)``."""
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc)
        yield port, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def hypercorn() -> Iterator[tuple[int, int]]:
    port = _free_port()
    bind = f"{HOST}:{port}"
    return _server(
        [sys.executable, "-m", "hypercorn", "--config", "python:bench._h2_app", "--bind", bind,
         "--log-level", "error",
         "bench._h2_app:app"],
        port,
    )  # fmt: skip


def nghttpd(docs: Path) -> Iterator[tuple[int, int]]:
    port = _free_port()
    (docs / "index.html").write_bytes(b"hello")
    exe = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
    return _server([exe, "--no-tls", "-a", HOST, "-d", str(docs), str(port)], port)


@contextmanager
def node() -> Iterator[tuple[int, int, int]]:
    """bench/h2_server.js: Node's http (HTTP/1.1) and http2 (h2c); its two ports, its pid."""
    proc = subprocess.Popen(["node", str(ROOT / "bench" / "h2_server.js")], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        words = dict(w.split("=") for w in proc.stdout.readline().decode().split()[1:])
        yield int(words["http1"]), int(words["http2"]), proc.pid
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _rate(duration: float, one_round: Callable[[], int]) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        done += one_round()
    return done / (time.perf_counter() - start)


def tether_get100(port: int, protocols: tuple[str, ...], duration: float) -> float:
    conn = tether.open(HOST, port, protocols=protocols, retry=0)
    try:
        conn.await_up(timeout=5)

        def one_round() -> int:
            streams = [conn.get("/") for _ in range(BATCH)]
            for stream in streams:
                if conn.await_body(stream, timeout=30) != b"hello":
                    raise RuntimeError("bad body")
            return BATCH

        one_round()  # warm-up
        return _rate(duration, one_round)
    finally:
        conn.close()
        conn.wait_stopped(5)


def httpx_get100(port: int, duration: float) -> float:
    async def main() -> float:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(http1=False, http2=True, limits=limits) as client:
            url = f"http://{HOST}:{port}/"

            async def one_round() -> int:
                answers = await asyncio.gather(*(client.get(url) for _ in range(BATCH)))
                if any(a.content != b"hello" for a in answers):
                    raise RuntimeError("bad body")
                return BATCH

            await one_round()
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < duration:
                done += await one_round()
            return done / (time.perf_counter() - start)

    return asyncio.run(main())


def tether_ws32(
    port: int, protocols: tuple[str, ...], duration: float, server: int
) -> tuple[float, float, float]:
    """Round trips/s, and the CPU µs per round trip of this process and of ``server`` (a pid)."""
    conn = tether.open(HOST, port, protocols=protocols, retry=0)
    try:
        conn.await_up(timeout=5)
        ws = conn.ws_upgrade("/ws")
        upgrade = conn.await_(ws, timeout=5)
        if not isinstance(upgrade, tether.Upgrade):
            raise TypeError(f"no upgrade: {upgrade!r}")
        payload = b"x" * 32

        def one_round() -> int:
            conn.ws_send(payload, stream=ws)
            conn.await_(ws, timeout=10)
            return 1

        for _ in range(100):
            one_round()
        client, served = time.process_time(), cpu_seconds(server)
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration:
            done += one_round()
        elapsed = time.perf_counter() - start
        return (
            done / elapsed,
            (time.process_time() - client) / done * 1e6,  # tether's threads
            (cpu_seconds(server) - served) / done * 1e6,
        )
    finally:
        conn.close()
        conn.wait_stopped(5)


def ws32_opcodes(port: int, protocols: tuple[str, ...], count: int) -> collections.Counter[str]:
    """Byte code instructions per function for ``count`` 32 B round trips (Inbox owner).

    Counted as ``calls.py --opcodes`` counts them (its tracer: only in the
    frames entered while counting, so a loop that was running before, the
    I/O thread's, counts by what it calls).
    """
    counter = _Counting(count)
    sys.settrace(counter.trace)
    threading.settrace(counter.trace)
    try:
        conn = tether.open(HOST, port, protocols=protocols, retry=0)
        conn.await_up(timeout=5)
        ws = conn.ws_upgrade("/ws")
        conn.await_(ws, timeout=5)
        inbox = conn.inbox
        assert inbox is not None
        payload = b"x" * 32
        for n in range(300 + count):
            counter.counting = n >= 300
            conn.ws_send(payload, stream=ws)
            inbox.receive(10)
        counter.counting = False
        conn.close()
        conn.wait_stopped(5)
    finally:
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
    return counter.functions


def print_opcodes(count: int, functions: int) -> None:
    """``--opcodes``: instructions per 32 B round trip, HTTP/2 against HTTP/1.1 (Node)."""
    with node() as (h1_port, h2_port, _):
        over_h2 = ws32_opcodes(h2_port, ("http2",), count)
        over_h1 = ws32_opcodes(h1_port, ("http",), count)
    print(
        f"byte code instructions per 32 B round trip: HTTP/2 {sum(over_h2.values()) / count:,.0f},"
        f" HTTP/1.1 {sum(over_h1.values()) / count:,.0f}"
    )
    names = sorted(set(over_h2) | set(over_h1), key=lambda k: over_h1[k] - over_h2[k])
    print("  HTTP/2 - HTTP/1.1   HTTP/2  HTTP/1.1  function")
    for name in names[:functions]:
        h2_ops, h1_ops = over_h2[name] / count, over_h1[name] / count
        print(f"  {h2_ops - h1_ops:15.1f} {h2_ops:8.1f} {h1_ops:9.1f}  {name}")


# Issue 22's ratios, round by round (each round measures both side by side).
_RATIOS = {
    "get100 h2c / httpx": ("get100 tether h2c", "get100 httpx h2c"),
    "get100 h2c / http/1.1": ("get100 tether h2c", "get100 tether http/1.1"),
    "ws32 h2c / http/1.1": ("ws32 tether h2c", "ws32 tether http/1.1"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--opcodes", action="store_true", help="byte code per 32 B round trip, h2 vs HTTP/1.1"
    )
    parser.add_argument("--count", type=int, default=1000, help="with --opcodes: round trips")
    parser.add_argument("--functions", type=int, default=25, help="with --opcodes: rows")
    args = parser.parse_args()
    if args.opcodes:
        print_opcodes(args.count, args.functions)
        return
    rows: dict[str, list[float]] = {}

    cpu: dict[str, list[tuple[float, float]]] = {}

    def measure(name: str, run: Callable[[], float]) -> None:
        rows.setdefault(name, []).append(run())

    def measure_ws32(name: str, run: Callable[[], tuple[float, float, float]]) -> None:
        rate, client, server = run()
        rows.setdefault(name, []).append(rate)
        cpu.setdefault(name, []).append((client, server))

    d = args.duration
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            with hypercorn() as (port, pid):
                measure("hypercorn get100 tether h2c", lambda: tether_get100(port, ("http2",), d))
                measure("hypercorn get100 httpx h2c", lambda: httpx_get100(port, d))
                measure(
                    "hypercorn get100 tether http/1.1", lambda: tether_get100(port, ("http",), d)
                )
                measure_ws32(
                    "hypercorn ws32 tether h2c", lambda: tether_ws32(port, ("http2",), d, pid)
                )
                measure_ws32(
                    "hypercorn ws32 tether http/1.1", lambda: tether_ws32(port, ("http",), d, pid)
                )
            if shutil.which("node"):
                with node() as (h1_port, h2_port, pid):
                    measure(
                        "node get100 tether h2c", lambda: tether_get100(h2_port, ("http2",), d)
                    )
                    measure("node get100 httpx h2c", lambda: httpx_get100(h2_port, d))
                    measure(
                        "node get100 tether http/1.1", lambda: tether_get100(h1_port, ("http",), d)
                    )
                    measure_ws32(
                        "node ws32 tether h2c", lambda: tether_ws32(h2_port, ("http2",), d, pid)
                    )
                    measure_ws32(
                        "node ws32 tether http/1.1",
                        lambda: tether_ws32(h1_port, ("http",), d, pid),
                    )
            if shutil.which("nghttpd") or os.path.exists("/usr/sbin/nghttpd"):
                with nghttpd(Path(tmp)) as (port, _):
                    measure(
                        "nghttpd get100 tether h2c", lambda: tether_get100(port, ("http2",), d)
                    )
                    measure("nghttpd get100 httpx h2c", lambda: httpx_get100(port, d))
    report(rows, cpu)


def report(rows: dict[str, list[float]], cpu: dict[str, list[tuple[float, float]]]) -> None:
    """Print each row's runs, the targets' ratios round by round, ws32's CPU per round trip."""
    for name, values in rows.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name:38} best {max(values):>9,.0f}/s   runs: {runs}")
    for server in ("hypercorn", "node", "nghttpd"):
        for label, (top, bottom) in _RATIOS.items():
            ups, downs = rows.get(f"{server} {top}"), rows.get(f"{server} {bottom}")
            if ups and downs:
                each = [u / d for u, d in zip(ups, downs, strict=True)]
                runs = ", ".join(f"{r:.2f}" for r in each)
                name = f"{server} {label}"
                print(f"{name:38} median {statistics.median(each):.2f}x   runs: {runs}")
    for name, pairs in cpu.items():
        each = ", ".join(f"{c:.0f}/{s:.0f}" for c, s in pairs)
        print(f"{name:38} CPU µs per round trip, client/server: {each}")


if __name__ == "__main__":
    main()
