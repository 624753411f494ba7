"""Where a 32 B round trip's time goes, in order, and which of it the rate depends on.

A round trip is: the client's work up to the send system call, the send,
its work after the send, the wait for the echo, and its work from the
echo's arrival to handing it to the caller. The server answers while the
client does its post-send work, so that work is hidden up to the
server's turnaround (``--spin`` checks it: a busy wait put before the
send costs its length on every round trip, the same put after it costs
less or nothing, and a client that would otherwise sleep gets faster);
what the rate depends on is the
**critical path**, the client's work from reading the echo to sending
the next message.

This measures those segments with timestamps (``time.perf_counter_ns``,
~0.1 µs each) taken at fixed points: for tether in a copy of ``--tree``
with probes inserted at named lines (the script stops if a line is
gone), for websocket-client around its socket's ``send`` and ``recv``,
and for ``tether-protocol`` (tether's sans-I/O layer on a blocking
socket, no actors) in the loop itself. Each client runs in a fresh
process against the Node echo server; rounds are interleaved and the
table gives medians. Run it with ``bench/.venv``'s Python::

    bench/.venv/bin/python bench/critical_path.py
    bench/.venv/bin/python bench/critical_path.py --tree /path/to/checkout --spin 15
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websocket  # type: ignore[import-not-found]
from client_tether import protocol_upgraded, upgraded
from run import echo_server, ensure_node_modules

import tether  # in a worker, the instrumented copy (PYTHONPATH)

BENCH = Path(__file__).resolve().parent

# (file, exact text that must occur once, probe before it, probe after it).
# A probe before goes at the indentation of the text's first line, after
# at its last line's. Only a probe's first hit in a round trip counts.
PROBES: list[tuple[str, str, str | None, str | None]] = [
    (
        "actors/_connection.py",
        "self._ws_send(proto, command)\n        self._flush()\n",
        "actor runs ws_send",
        None,
    ),
    (
        "actors/_connection.py",
        "chunks, events, close_reason, failing = proto.drain()\n",
        None,
        "frame built",
    ),
    (
        "actors/_transport.py",
        "sent = sock.sendmsg(pieces[:_MAX_IOV], (), socket.MSG_DONTWAIT)\n",
        "send",
        "sent",
    ),
    (
        "actors/_lending.py",
        "readable = waker.wait(watch.fd, timeout, self._busy_poll)\n",
        "wait",
        "woken",
    ),
    (
        "actors/_ioloop.py",
        "data = self.sock.recv(_READ_SIZE, socket.MSG_DONTWAIT)\n",
        None,
        "read",
    ),
    (
        "actors/_connection.py",
        "data: bytes | None = report.data\n",
        None,
        "actor has the bytes",
    ),
    ("actors/_connection.py", "self._batch_to.tell_all(events)\n", "event parsed", "in Inbox"),
]

PROBE_MODULE = '''\
"""Timestamps for bench/critical_path.py (inserted into a copy of the tree)."""
import time
import os

T = {}
_ns = time.perf_counter_ns
_SPIN = {"before": "send", "after": "sent"}.get(os.environ.get("SPIN_WHERE", ""))
_SPIN_NS = int(os.environ.get("SPIN_NS", "0"))


def p(name):
    if name not in T:
        T[name] = t = _ns()
        if name == _SPIN:
            end = t + _SPIN_NS
            while _ns() < end:
                pass
'''


# The probes around the socket calls, the same points in tether and websocket-client.
_AROUND_THE_SOCKET = ["send", "sent", "ws_send returned", "wait", "woken", "read"]

# Each client's probes in the order of a round trip, from the loop's start to its end.
ORDERS = {
    "tether": [
        "start",
        "actor runs ws_send",
        "frame built",
        *_AROUND_THE_SOCKET,
        "actor has the bytes",
        "event parsed",
        "in Inbox",
        "returned",
    ],
    "websocket-client": ["start", *_AROUND_THE_SOCKET, "returned"],
    "tether-protocol": ["start", "send", "sent", "wait", "woken", "returned"],
}


# -- the worker (in a fresh process, tether imported from the instrumented copy) ---

_WARMUP = 2000
_PAYLOAD = b"x" * 32
Loop = Callable[[], None]


def _tether_loop(port: int, probe: Any) -> Loop:
    p = probe.p
    conn = upgraded(port)
    inbox = conn.inbox
    assert inbox is not None
    frame = tether.Binary(_PAYLOAD)

    def one() -> None:
        p("start")
        conn.ws_send(frame)
        p("ws_send returned")
        inbox.receive(timeout=10)
        p("returned")

    return one


def _wsclient_loop(port: int, probe: Any) -> Loop:
    p, stamps = probe.p, probe.T
    ws = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=10)
    sock = ws.sock

    class Probed:
        """The connection's socket, with timestamps around its send and recv calls."""

        def __getattr__(self, name: str) -> Any:
            return getattr(sock, name)

        def send(self, data: bytes, *flags: int) -> int:
            p("send")
            sent: int = sock.send(data, *flags)
            p("sent")
            return sent

        def recv(self, size: int, *flags: int) -> bytes:
            p("wait")  # the first recv of a message blocks until the echo arrives
            data: bytes = sock.recv(size, *flags)
            p("woken")
            stamps["read"] = time.perf_counter_ns()  # the message's last recv
            return data

    ws.sock = Probed()

    def one() -> None:
        p("start")
        ws.send_binary(_PAYLOAD)
        p("ws_send returned")
        ws.recv()
        p("returned")

    return one


def _protocol_loop(port: int, probe: Any) -> Loop:
    p = probe.p
    sock, proto = protocol_upgraded(port)
    frames = (tether.Binary(_PAYLOAD),)

    def one() -> None:
        p("start")
        proto.ws_send(frames)
        chunks = proto.chunks_to_send()
        p("send")
        sock.sendmsg(chunks)
        p("sent")
        p("wait")
        data = sock.recv(65536)
        p("woken")
        proto.receive_data(data)
        if not any(isinstance(e, tether.Ws) for e in proto.events()):
            raise RuntimeError("the echo did not come in one read")
        p("returned")

    return one


def worker(client: str, port: int, count: int) -> None:
    """Time ``count`` round trips segment by segment, then their rate; print JSON."""
    # Only in the instrumented copy, which is on this process's path.
    probe = importlib.import_module("tether._probe")
    stamps: dict[str, int] = probe.T
    loops = {"tether": _tether_loop, "websocket-client": _wsclient_loop}
    one = loops.get(client, _protocol_loop)(port, probe)
    order = ORDERS[client]
    sums = dict.fromkeys(order[1:], 0)
    complete = 0
    for i in range(_WARMUP + count):
        stamps.clear()
        one()
        if i < _WARMUP:
            continue
        try:
            times = [stamps[name] for name in order]
        except KeyError:
            continue  # e.g. the I/O thread read this echo: another path
        if times != sorted(times):
            continue
        complete += 1
        for name, a, b in zip(order[1:], times, times[1:], strict=False):
            sums[name] += b - a
    start = time.perf_counter()
    for _ in range(count):  # the rate, probes included
        stamps.clear()
        one()
    rate = count / (time.perf_counter() - start)
    segments = {name: total / max(complete, 1) / 1000 for name, total in sums.items()}
    print(json.dumps({"segments": segments, "complete": complete, "rate": rate}))


def instrumented_copy(tree: Path, into: Path) -> Path:
    """A copy of ``tree``'s ``tether`` package with the probes inserted."""
    package = into / "tether"
    shutil.copytree(tree / "tether", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (package / "_probe.py").write_text(PROBE_MODULE)
    for name, text, before, after in PROBES:
        path = package / name
        source = path.read_text()
        if source.count(text) != 1:
            sys.exit(f"critical_path.py: {name} no longer has exactly one {text!r}: update PROBES")
        index = source.index(text)
        lead = source[source.rindex("\n", 0, index) + 1 : index]  # the text starts a line
        last = text.splitlines()[-1]
        last_lead = (
            lead if "\n" not in text.rstrip("\n") else last[: len(last) - len(last.lstrip())]
        )
        probed = text
        if before:
            probed = f"p({before!r})\n{lead}" + probed
        if after:
            probed += f"{last_lead}p({after!r})\n"
        source = source[:index] + probed + source[index + len(text) :]
        if "from tether._probe import p" not in source:
            source = source.replace(
                "from __future__ import annotations\n",
                "from __future__ import annotations\n\nfrom tether._probe import p\n",
                1,
            )
        path.write_text(source)
    return into


def run_one(
    client: str, root: Path, port: int, count: int, spin: tuple[str, int]
) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(root),
        "PYTHONDONTWRITEBYTECODE": "1",
        "SPIN_WHERE": spin[0],
        "SPIN_NS": str(spin[1]),
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", client, str(port), str(count)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"{client} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


# The segments (named by where they end) off the critical path: the send
# itself, what follows it, and the wait; all others are on it.
OFF_PATH = {
    "tether": {"sent", "ws_send returned", "wait", "woken"},
    "websocket-client": {"sent", "ws_send returned", "wait", "woken"},
    "tether-protocol": {"sent", "wait", "woken"},
}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=BENCH.parent, help="tether checkout to probe")
    parser.add_argument("--count", type=int, default=10_000, help="round trips per worker")
    parser.add_argument("--runs", type=int, default=3, help="rounds (medians)")
    parser.add_argument(
        "--spin",
        type=float,
        default=0.0,
        metavar="US",
        help="also measure the rate with a busy wait of US µs before, and after, the send",
    )
    args = parser.parse_args()
    node = shutil.which("node")
    if node is None:
        sys.exit("critical_path.py needs Node.js (for bench/echo_server.js)")
    ensure_node_modules()
    clients = ["tether", "tether-protocol", "websocket-client"]
    spins = [("", 0)]
    if args.spin:
        spins += [("before", int(args.spin * 1000)), ("after", int(args.spin * 1000))]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp, echo_server(node) as (ws_port, _):
        root = instrumented_copy(args.tree.resolve(), Path(tmp))
        for _ in range(args.runs):
            for client in clients:
                for spin in spins:
                    result = run_one(client, root, ws_port, args.count, spin)
                    results.setdefault((client, spin[0]), []).append(result)
    for client in clients:
        _print_segments(client, results[(client, "")], args.count)
    if args.spin:
        _print_spins(clients, spins, results, args.spin, args.runs)


def _print_segments(client: str, runs: list[dict[str, Any]], count: int) -> None:
    """One client's segments, medians of ``runs``, and its critical path."""
    print(
        f"\n{client}: µs per round trip, medians of {len(runs)} "
        f"(complete round trips: {min(r['complete'] for r in runs)}+ of {count})"
    )
    print("| from | to | µs | on the critical path |")
    print("| --- | --- | --- | --- |")
    critical = 0.0
    for a, b in itertools.pairwise(ORDERS[client]):
        us = statistics.median(r["segments"][b] for r in runs)
        on_path = b not in OFF_PATH[client]
        critical += us if on_path else 0.0
        print(f"| {a} | {b} | {us:.1f} | {'yes' if on_path else ''} |")
    print(
        f"critical path: {critical:.1f} µs; rate with the probes: "
        f"{statistics.median(r['rate'] for r in runs):,.0f} round trips/s"
    )


def _print_spins(
    clients: list[str],
    spins: list[tuple[str, int]],
    results: dict[tuple[str, str], list[dict[str, Any]]],
    spin: float,
    rounds: int,
) -> None:
    """The rates with a busy wait before, and after, the send."""
    print(f"\nrate with a {spin:g} µs busy wait (medians of {rounds}):")
    print("| client | none | before the send | after the send |")
    print("| --- | --- | --- | --- |")
    for client in clients:
        cells = [
            f"{statistics.median(r['rate'] for r in results[(client, w)]):,.0f}" for w, _ in spins
        ]
        print(f"| {client} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
