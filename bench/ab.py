"""tether from two (or more) checkouts, side by side, against the same Node echo server.

``python bench/run.py`` measures the tree it lives in. This runs the same
workers (``bench/worker.py``) for tether imported from each ``--tree``
(``PYTHONPATH``), trees interleaved within every round, plus
websocket-client as a yardstick, and prints medians of rate and of client
CPU µs per operation::

    flock /tmp/tether-bench.lock bench/.venv/bin/python bench/ab.py \\
        --tree /work/main --tree . --only small mib --runs 5

Run it with ``bench/.venv``'s Python (``python bench/run.py`` creates it).
No byte code is written into the trees.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from run import SCENARIOS, echo_server, ensure_node_modules, raise_fd_limit, value

BENCH = Path(__file__).resolve().parent
YARDSTICK = "websocket-client"


def measure(
    ports: tuple[int, int], key: str, client: str, tree: Path, duration: float
) -> dict[str, Any]:
    scenario, params, _, _ = SCENARIOS[key]
    body = {
        "scenario": scenario,
        "client": client,
        "ws_port": ports[0],
        "http_port": ports[1],
        "duration": duration,
        **params,
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree / "bench"), str(tree)]),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(tree / "bench" / "worker.py"), json.dumps(body)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", type=Path, required=True)
    parser.add_argument("--only", nargs="*", default=["small", "mib"], choices=["small", "mib"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in args.tree]
    raise_fd_limit()
    node = ensure_node_modules()
    labels = [f"tether@{tree.name}" for tree in trees] + [YARDSTICK]
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with echo_server(node) as ports:
        for round_no in range(1, args.runs + 1):
            for key in args.only:
                runs = [(f"tether@{tree.name}", "tether", tree) for tree in trees]
                runs.append((YARDSTICK, YARDSTICK, trees[0]))
                for label, client, tree in runs:
                    result = measure(ports, key, client, tree, args.duration)
                    results.setdefault((key, label), []).append(result)
                    shown = value(key, result)
                    print(f"  round {round_no} {key:5} {label:24} {shown}", flush=True)
    print(f"\nmedians of {args.runs} rounds: rate (rt/s or MB/s), client CPU µs per operation")
    for key in args.only:
        for label in labels:
            got = [r for r in results[(key, label)] if "error" not in r]
            if not got:
                print(f"{key:5} {label:24} errors: {results[(key, label)][0]}")
                continue
            rate = statistics.median(value(key, r) or 0.0 for r in got)
            cpu = statistics.median(float(r["cpu_us_per_op"]) for r in got)
            print(f"{key:5} {label:24} {rate:12,.1f} {cpu:10,.1f} µs")


if __name__ == "__main__":
    main()
