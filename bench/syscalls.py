"""System calls and context switches per 32 B round trip, counted by the kernel.

``perf stat`` counts the syscall tracepoints of one worker process (the
same worker and loop ``run.py`` times, bounded by ``--count`` round trips)
for tether, tether's protocol layer alone on a blocking socket
(``tether-protocol``: the floor under the actor path) and
websocket-client against the Node echo server. Unlike
strace, which slows every call down and so changes which thread reads
what, the counting happens in the kernel and leaves the timing alone.
Needs ``perf`` (Debian's linux-perf) with tracepoints readable, i.e. as
root. Run it with ``bench/.venv``'s Python::

    bench/.venv/bin/python bench/syscalls.py
    bench/.venv/bin/python bench/syscalls.py --tree /path/to/other/checkout --tree .

Counts are per round trip, setup included (negligible over 20,000).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
CALLS = ["epoll_wait", "epoll_ctl", "poll", "ppoll", "select", "recvfrom", "sendmsg", "sendto"]
CALLS += ["read", "write", "futex", "getrandom"]
EVENTS = [f"syscalls:sys_enter_{name}" for name in CALLS]
EVENTS += ["raw_syscalls:sys_enter", "context-switches"]


def count(client: str, tree: Path, ports: tuple[int, int], round_trips: int) -> str:
    """One worker under ``perf stat``: its rate and kernel counts, as a table row."""
    params = {
        "scenario": "echo",
        "client": client,
        "ws_port": ports[0],
        "http_port": ports[1],
        "duration": 120.0,  # the count ends the loop, this only bounds it
        "max_count": round_trips,
    }
    command = ["perf", "stat", "-x,", "-e", ",".join(EVENTS), sys.executable, "worker.py"]
    out = subprocess.run(
        [*command, json.dumps(params)],
        cwd=BENCH,
        env={**os.environ, "PYTHONPATH": str(tree)},
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        sys.exit(f"{client} from {tree} failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.splitlines()[-1])
    counts: dict[str, float] = {}
    for line in out.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 3 and fields[0].isdigit():
            name = fields[2].removeprefix("syscalls:sys_enter_").removeprefix("raw_syscalls:")
            counts[name] = int(fields[0]) / round_trips
    total = counts.pop("sys_enter", 0.0)
    switches = counts.pop("context-switches", 0.0)
    each = ", ".join(f"{name} {n:.2f}" for name, n in counts.items() if n >= 0.01)
    return (
        f"| {client} | {tree.name} | {result['per_s']:,.0f} | {result['cpu_us_per_op']:.0f} | "
        f"{total:.2f} | {switches:.2f} | {each} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree", type=Path, action="append", help="tether from this checkout (repeatable)"
    )
    parser.add_argument("--count", type=int, default=20_000, help="round trips per worker")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        sys.exit("needs perf (Debian: apt install linux-perf)")
    trees = [tree.resolve() for tree in args.tree or [BENCH.parent]]
    for tree in trees:
        if not (tree / "tether" / "__init__.py").is_file():
            sys.exit(f"{tree} is not a tether checkout (no tether/__init__.py)")
    sys.path.insert(0, str(BENCH))
    from run import echo_server, ensure_node_modules  # noqa: PLC0415

    print("| client | tree | rt/s | CPU µs/rt | syscalls/rt | context switches/rt | by call |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with echo_server(ensure_node_modules()) as ports:
        for tree in trees:
            print(count("tether", tree, ports, args.count), flush=True)
        print(count("tether-protocol", trees[0], ports, args.count), flush=True)
        print(count("websocket-client", trees[0], ports, args.count), flush=True)


if __name__ == "__main__":
    main()
