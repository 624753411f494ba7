"""One busy connection next to a quiet one (issue 18): 32 B round trips, alone and beside noise.

A connection does 32 B Websocket echo round trips against the Node echo
server (``bench/echo_server.js``), first alone, then while a second
connection in the same process receives noise from a raw server (this
script's ``--serve``, its own process):

- ``fragments``: a first non-final Text frame, then empty non-final
  continuation frames (``\\x00\\x00``) as fast as the socket takes them, for
  ever; ``ws_opts max_fragments`` (4096) fails the message with 1009. With
  ``retry=0`` the noise ends there (``fragments-retry0``); with the default
  retry and ``reupgrade`` the connection comes back and the noise goes on
  (``fragments-reupgrade``);
- ``messages``: 2-byte text messages as fast as the socket takes them, the
  owner taking them as fast as it can (``messages``) or one per 10 ms
  (``messages-slow``: the receive bound pauses the reads);
- ``messages-other``: the same noise, received by another process (a
  control: what the machine's two cores cost, not tether).

Each condition runs in a fresh client process, alone then with the noise
(after it started), and reports p50 and p99 of the round-trip time and
their ratios. ``--count-reads`` also counts the noisy connection's reads
and the events per read; ``--switch-interval`` sets
``sys.setswitchinterval`` in the client. Not a test; 127.0.0.1 only::

    python3 bench/fairness.py                       # ~3 min: 5 conditions x 3 runs
    python3 bench/fairness.py --only messages --count 1000 --count-reads
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOST = "127.0.0.1"
_WAIT = 10.0
# condition -> (noise path, where the noise is received, seconds the noise owner takes
# per event, options of the noisy connection)
CONDITIONS: dict[str, tuple[str, str, float, dict[str, Any]]] = {
    "fragments-retry0": ("/fragments", "same", 0.0, {"retry": 0}),
    "fragments-reupgrade": ("/fragments", "same", 0.0, {"ws_opts": {"reupgrade": True}}),
    "messages": ("/messages", "same", 0.0, {"retry": 0}),
    "messages-slow": ("/messages", "same", 0.010, {"retry": 0}),
    "messages-other": ("/messages", "other", 0.0, {"retry": 0}),
}

# -- the noise server (--serve) ----------------------------------------------------------

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHUNK = 64 * 1024
_NOISE = {
    # FIN=0 Text, empty; then FIN=0 continuation frames, empty, for ever.
    "/fragments": (b"\x01\x00", b"\x00\x00" * (_CHUNK // 2)),
    # 2-byte Text messages ("ok"), for ever.
    "/messages": (b"", b"\x81\x02ok" * (_CHUNK // 4)),
}


def _serve_one(client: socket.socket) -> None:
    with client, contextlib.suppress(OSError):
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        lines = head.split(b"\r\n")
        path = lines[0].split(b" ")[1].decode()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in lines
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        first, forever = _NOISE[path]
        client.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
            b"connection: upgrade\r\nsec-websocket-accept: " + accept + b"\r\n\r\n" + first
        )
        while True:  # until the client closes (EPIPE, ECONNRESET)
            client.sendall(forever)


def serve() -> None:
    """Accept for ever (until stdin closes); each connection in a thread."""
    listener = socket.create_server((HOST, 0), backlog=64)
    print(f"READY port={listener.getsockname()[1]}", flush=True)

    def accept() -> None:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_serve_one, args=(client,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # the parent closes it


@contextlib.contextmanager
def noise_server() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"noise server did not start: {line!r}")
        yield int(line.split("=")[1])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# -- the client (a child process) --------------------------------------------------------


class Noise:
    """A connection receiving noise, and a thread taking its events."""

    def __init__(self, port: int, path: str, per_event: float, opts: dict[str, Any]) -> None:
        import tether  # noqa: PLC0415 - children only

        self.counts: collections.Counter[str] = collections.Counter()
        self.first = threading.Event()
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.ended: float | None = None
        self.conn = tether.open(HOST, port, **opts)
        inbox = self.conn.inbox
        assert inbox is not None
        reupgrade = opts.get("ws_opts", {}).get("reupgrade", False)

        def take() -> None:
            while not self.stop.is_set():
                try:
                    event = inbox.receive(timeout=0.2)
                except tether.ReceiveTimeout:
                    continue
                except tether.TetherError:
                    return
                name = type(event).__name__
                self.counts[name] += 1
                if name == "Up" and (not reupgrade or self.counts["Up"] == 1):
                    self.conn.ws_upgrade(path)  # later ones: reupgrade
                elif name == "Upgrade":
                    self.first.set()  # the noise begins
                elif name == "Down" and opts.get("retry") == 0:
                    self.ended = time.monotonic()
                if per_event:
                    time.sleep(per_event)

        self.thread = threading.Thread(target=take, daemon=True, name="noise-owner")
        self.thread.start()

    def close(self) -> dict[str, Any]:
        self.stop.set()
        self.conn.close()
        self.conn.wait_stopped(_WAIT)
        self.thread.join(_WAIT)
        lasted = None if self.ended is None else self.ended - self.started
        return {"counts": dict(self.counts), "lasted_s": lasted}


def _round_trips(conn: Any, count: int, seconds: float) -> list[float]:
    import tether  # noqa: PLC0415

    inbox = conn.inbox
    frame = tether.Binary(b"x" * 32)
    times = []
    deadline = time.monotonic() + seconds
    for _ in range(count):  # bounded by count and time
        t0 = time.perf_counter()
        conn.ws_send(frame)
        event = inbox.receive(timeout=_WAIT)
        times.append(time.perf_counter() - t0)
        if not isinstance(event, tether.Ws):
            raise RuntimeError(f"unexpected {event!r}")  # noqa: TRY004
        if time.monotonic() > deadline:
            break
    return times


def _summary(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
        "mean_us": statistics.fmean(ordered) * 1e6,
    }


def _count_reads() -> dict[int, list[int]]:
    """Wrap the transport's read callback: bytes per read, by transport."""
    from tether.actors import _transport  # noqa: PLC0415

    reads: dict[int, list[int]] = collections.defaultdict(list)
    original = _transport.TcpTransport._on_read

    def on_read(self: Any, data: bytes | None, end: BaseException | None) -> None:
        if data is not None:
            reads[id(self)].append(len(data))
        original(self, data, end)

    _transport.TcpTransport._on_read = on_read  # type: ignore[method-assign]
    return reads


def client(body: dict[str, Any]) -> None:
    import tether  # noqa: PLC0415

    if body.get("switch_interval"):
        sys.setswitchinterval(body["switch_interval"])
    path, where, per_event, opts = CONDITIONS[body["condition"]]
    conn = tether.open(HOST, body["echo_port"], retry=0)
    conn.await_up(timeout=_WAIT)
    stream = conn.ws_upgrade("/")
    if not isinstance(conn.await_(stream, timeout=_WAIT), tether.Upgrade):
        raise RuntimeError("upgrade refused")  # noqa: TRY004
    # Sockets watched from now on only: the noisy connection's, not this one's.
    reads = _count_reads() if body.get("count_reads") else None
    _round_trips(conn, 200, 5.0)  # warm-up
    alone = _round_trips(conn, body["count"], body["seconds"])
    other = None
    noise = None
    if where == "same":
        noise = Noise(body["noise_port"], path, per_event, opts)
        noise.first.wait(_WAIT)
    else:
        other = subprocess.Popen(
            [sys.executable, __file__, "--noise-only", json.dumps(body)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert other.stdout is not None
        other.stdout.readline()  # "noise" once its first message came
    started = time.monotonic()
    noisy = _round_trips(conn, body["count"], body["seconds"])
    measured_s = time.monotonic() - started
    noise_report: dict[str, Any] = {}
    if noise is not None:
        noise_report = noise.close()
    if other is not None:
        assert other.stdin is not None
        other.stdin.close()
        assert other.stdout is not None
        noise_report = json.loads(other.stdout.readline() or "{}")
        other.wait(timeout=_WAIT)
    result: dict[str, Any] = {
        "alone": _summary(alone),
        "noisy": _summary(noisy),
        "measured_s": measured_s,
        "noise": noise_report,
    }
    if reads is not None and noise is not None:
        sizes = [n for per_transport in reads.values() for n in per_transport]
        result["reads"] = {
            "connections": len(reads),
            "reads": len(sizes),
            "mean_bytes": statistics.fmean(sizes) if sizes else 0,
            "max_bytes": max(sizes, default=0),
        }
    conn.close()
    conn.wait_stopped(_WAIT)
    print(json.dumps(result), flush=True)


def noise_only(body: dict[str, Any]) -> None:
    """The control: the same noise, received in this (another) process until stdin closes."""
    path, _, per_event, opts = CONDITIONS[body["condition"]]
    noise = Noise(body["noise_port"], path, per_event, opts)
    noise.first.wait(_WAIT)
    print("noise", flush=True)
    sys.stdin.read()
    print(json.dumps(noise.close()), flush=True)


# -- the parent ------------------------------------------------------------------------


def measure(body: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)])}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(body)],
        capture_output=True,
        text=True,
        timeout=4 * body["seconds"] + 60,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def row(name: str, runs: list[dict[str, Any]]) -> str:
    """Medians over the runs; each run's p50 and p99 ratios after them."""
    failed = [r["error"] for r in runs if "error" in r]
    if failed:
        return f"| {name} | FAILED: {failed[0]} |"

    def med(phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in runs)

    ratios = ", ".join(
        f"{r['noisy']['p50_us'] / r['alone']['p50_us']:.1f}/"
        f"{r['noisy']['p99_us'] / r['alone']['p99_us']:.1f}"
        for r in runs
    )
    last = runs[-1]
    counts = last["noise"].get("counts", {})
    taken = ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
    lasted = last["noise"].get("lasted_s")
    if lasted is not None:
        taken += f"; noise lasted {lasted * 1000:.0f} ms"
    return (
        f"| {name} | {med('alone', 'p50_us'):.0f} / {med('alone', 'p99_us'):.0f} | "
        f"{med('noisy', 'p50_us'):.0f} / {med('noisy', 'p99_us'):.0f} | "
        f"{med('noisy', 'p50_us') / med('alone', 'p50_us'):.1f}x | "
        f"{med('noisy', 'p99_us') / med('alone', 'p99_us'):.1f}x | "
        f"{med('noisy', 'mean_us') / med('alone', 'mean_us'):.1f}x | {ratios} | "
        f"{last['noisy']['n']:,} in {last['measured_s']:.1f} s; {taken} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(CONDITIONS), help="these only")
    parser.add_argument("--count", type=int, default=5000, help="round trips per phase")
    parser.add_argument("--runs", type=int, default=3, help="client processes per condition")
    parser.add_argument("--seconds", type=float, default=30.0, help="at most, per phase")
    parser.add_argument("--count-reads", action="store_true", help="reads of the noisy conn")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval, s")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--noise-only", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.child:
        client(json.loads(args.child))
        return
    if args.noise_only:
        noise_only(json.loads(args.noise_only))
        return
    sys.path.insert(0, str(BENCH))
    from run import echo_server, ensure_node_modules, ensure_venv  # noqa: PLC0415

    ensure_venv(__file__)
    results: dict[str, Any] = {}
    print(
        "| noise | alone p50 / p99 µs | with noise p50 / p99 µs | p50 ratio | p99 ratio "
        "| mean ratio | p50/p99 ratio by run | last run: round trips, noise events taken |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with echo_server(ensure_node_modules()) as (ws_port, _), noise_server() as noise_port:
        for name in args.only or list(CONDITIONS):
            body = {
                "condition": name,
                "echo_port": ws_port,
                "noise_port": noise_port,
                "count": args.count,
                "seconds": args.seconds,
                "count_reads": args.count_reads,
                "switch_interval": args.switch_interval,
            }
            results[name] = [measure(body) for _ in range(max(args.runs, 1))]
            print(row(name, results[name]), flush=True)
            for result in results[name]:
                if "reads" in result:
                    print(f"  reads of the noisy connection: {result['reads']}", flush=True)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"fairness-{stamp}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
