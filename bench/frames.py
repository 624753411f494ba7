"""CPU time per Websocket frame in tether's protocol layer, in memory (no sockets, no threads).

Each case drives an upgraded :class:`tether.protocol.ClientProtocol` (through
``tether.testing.ProtocolPair``) with bytes a wsproto server serialized
beforehand, and reports the median CPU µs per operation over several
rounds. With ``--tree DIR`` (repeatable), every case runs in a fresh
process per tree with ``PYTHONPATH=DIR``, trees interleaved round by
round, so that two checkouts (main and a branch) are compared side by
side::

    flock /tmp/tether-bench.lock python bench/frames.py --tree /work/main --tree .

Cases:

- ``echo32``: ``ws_send`` of a 32 B Binary, ``chunks_to_send``, then the
  32 B echo fed back and ``events()`` taken: one round trip;
- ``send32`` / ``recv32``: each half alone; ``text32``: a 32 B Text received;
- ``batch32``: 100 frames of 32 B in one read, per frame;
- ``mib``: a 1 MiB Binary message fed in 64 KiB reads (as the I/O thread
  reads), per MiB; ``peak`` also reports the tracemalloc peak while
  receiving it, in MiB (the fed reads themselves excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import wsproto.events as wse

from tether import Binary, Ws
from tether.testing import ProtocolPair

CASES = ("echo32", "send32", "recv32", "text32", "batch32", "mib")
_READ = 64 * 1024
_MIB = 1 << 20


def _pair() -> ProtocolPair:
    pair = ProtocolPair()
    pair.upgrade()
    pair.events()
    return pair


def _case(name: str) -> tuple[Callable[[], None], int]:
    """The operation to time and how many units (frames, MiB) one call is."""
    pair = _pair()
    client = pair.client
    server_bytes = pair.ws_server_bytes
    frames = (Binary(b"x" * 32),)
    echo = server_bytes(wse.BytesMessage(b"x" * 32))

    def send() -> None:
        client.ws_send(frames)
        client.chunks_to_send()

    def receive(data: bytes) -> Callable[[], None]:
        def run() -> None:
            client.receive_data(data)
            client.events()

        return run

    receive_echo = receive(echo)

    def round_trip() -> None:
        send()
        receive_echo()

    cases: dict[str, Callable[[], tuple[Callable[[], None], int]]] = {
        "echo32": lambda: (round_trip, 1),
        "send32": lambda: (send, 1),
        "recv32": lambda: (receive(echo), 1),
        "text32": lambda: (receive(server_bytes(wse.TextMessage("x" * 32))), 1),
        "batch32": lambda: (receive(echo * 100), 100),
        "mib": lambda: (_mib(client, server_bytes), 1),
    }
    if name not in cases:
        raise SystemExit(f"unknown case {name!r}")
    return cases[name]()


def _mib(client: Any, server_bytes: Callable[[Any], bytes]) -> Callable[[], None]:
    """Receiving a 1 MiB message, read by read."""
    raw = server_bytes(wse.BytesMessage(os.urandom(_MIB)))
    reads = [raw[i : i + _READ] for i in range(0, len(raw), _READ)]

    def mib() -> None:
        for read in reads:
            client.receive_data(read)
        [event] = client.events()
        assert isinstance(event, Ws)
        assert isinstance(event.frame, Binary)
        assert len(event.frame.data) == _MIB

    return mib


def measure(name: str, seconds: float) -> dict[str, float]:
    """CPU µs per unit of ``name``, timed for about ``seconds`` (this process)."""
    run, units = _case(name)
    for _ in range(20):
        run()
    calls = 0
    start = time.process_time()
    wall = time.perf_counter()
    while time.perf_counter() - wall < seconds and calls < 1_000_000:
        run()
        calls += 1
    cpu = time.process_time() - start
    result = {"us": cpu / (calls * units) * 1e6}
    if name == "mib":
        tracemalloc.start()
        run()
        result["peak"] = tracemalloc.get_traced_memory()[1] / _MIB
        tracemalloc.stop()
    return result


def compare(trees: list[str], cases: list[str], rounds: int, seconds: float) -> None:
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for case in cases:
            for tree in trees:
                env = {**os.environ, "PYTHONPATH": os.path.abspath(tree)}
                out = subprocess.run(
                    [sys.executable, __file__, "--one", case, "--seconds", str(seconds)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=120,
                )
                results.setdefault((case, tree), []).append(json.loads(out.stdout))
    print(f"CPU µs per unit, median (and min) of {rounds} rounds (mib: per MiB; peak: MiB)")
    print("case      " + "".join(f"{tree[-30:]:>32}" for tree in trees))
    for case in cases:
        cells = []
        for tree in trees:
            runs = results[(case, tree)]
            times = [r["us"] for r in runs]
            cell = f"{statistics.median(times):.2f} (min {min(times):.2f})"
            if "peak" in runs[0]:
                cell += f" (peak {statistics.median(r['peak'] for r in runs):.2f})"
            cells.append(f"{cell:>32}")
        print(f"{case:<10}" + "".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", help="a checkout to import tether from")
    parser.add_argument("--case", action="append", choices=CASES, help="cases (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="per case and round")
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.seconds)))
        return
    compare(args.tree or ["."], args.case or list(CASES), args.rounds, args.seconds)


if __name__ == "__main__":
    main()
