"""tether's benchmarks: ``python bench/run.py [--quick]`` (see docs/performance.md).

Installs what it needs into ``bench/.venv`` (and the Node echo server's
``ws`` package with ``npm ci``), starts ``bench/echo_server.js`` on
127.0.0.1, runs every scenario for tether and the comparison clients in
rounds (each measurement in a fresh process, the clients interleaved so
that load from elsewhere hits them alike), prints one table of medians and
ratios against the targets of issue 6, and writes everything as JSON under
``bench/results/``. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from profiling import profile_all

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENV = Path(os.environ.get("TETHER_BENCH_VENV", BENCH / ".venv"))
RESULTS = BENCH / "results"
MIB = 1 << 20

# tether, and tether with its former I/O model (a reader thread per connection).
WS = ["tether", "tether-threads"]
# tether with a pykka owner actor: plain (pykka.ThreadingActor), tether.OwnerActor
# (its own thread reads its socket), tether.PooledOwnerActor (run by a shared ActorPool).
ACTORS = ["tether-actor", "tether-owner", "tether-pooled"]
# tether with an asyncio owner (tether.AsyncInbox), one event loop.
ASYNCIO = "tether-asyncio"
# scenario key -> (worker scenario, parameters, clients, the number reported)
SCENARIOS: dict[str, tuple[str, dict[str, Any], list[str], str]] = {
    "small": (
        "echo",
        {"size": 32},
        [*WS, *ACTORS, ASYNCIO, "websocket-client", "websockets", "aiohttp"],
        "rt/s",
    ),
    "mib": (
        "echo",
        {"size": MIB},
        [*WS, *ACTORS, "websocket-client", "websockets", "aiohttp"],
        "MB/s",
    ),
    "fanout": (
        "fanout",
        {"conns": 500, "messages": 10},
        [*WS, *ACTORS, ASYNCIO, "websocket-client", "websockets", "aiohttp"],
        "s",
    ),
    # A thread per connection, each waiting in its own connection's Inbox.
    "fanout-threads": (
        "fanout-threads",
        {"conns": 500, "messages": 10},
        ["tether", "websocket-client", "websockets"],
        "s",
    ),
    # tether-threads is left out at 10,000 (20,000 threads); --sweep compares
    # it up to 3,000 connections.
    "many": ("many", {"conns": 10_000}, ["tether", "websockets", "aiohttp"], "KiB/conn"),
    "http": ("http", {}, [*WS, "urllib3", "httpx"], "GET/s"),
}
LABELS = {
    "small": "32 B round trips/s, 1 conn",
    "mib": "1 MiB echo MB/s, 1 conn",
    "fanout": "500 conns x 10 echoes, s",
    "fanout-threads": "500 threads, each its own conn + Inbox, x 10 echoes, s",
    "http": "HTTP/1.1 keep-alive GETs/s",
}
# scenario -> [(comparison client, "higher"/"lower" is better)]: tether must
# be at least as good as each (ratio >= 1.0 for "higher", <= 1.0 for "lower").
TARGETS: dict[str, list[tuple[str, str]]] = {
    "small": [("websocket-client", "higher")],
    "mib": [("websockets", "higher")],
    "fanout": [("websockets", "lower")],
    "fanout-threads": [("websocket-client", "lower")],
    "http": [("urllib3", "higher"), ("httpx", "higher")],
}
# Rows of tether's other owners, each against its own targets: client ->
# scenario -> [(comparison client, "higher"/"lower", the ratio to reach)].
_ACTOR_TARGETS = {
    "small": [("websocket-client", "higher", 1.1)],
    "mib": [("websockets", "higher", 1.0)],
    "fanout": [("websockets", "lower", 1.0)],
}
OWNER_ROWS: dict[str, dict[str, list[tuple[str, str, float]]]] = {
    **dict.fromkeys(ACTORS, _ACTOR_TARGETS),
    # A coroutine owning its connections through a tether.AsyncInbox.
    ASYNCIO: {"small": [("websockets", "higher", 1.0)], "fanout": [("websockets", "lower", 1.0)]},
}
# scenario -> clients tether is compared with, no target (a ratio, "met" left blank).
REPORTED: dict[str, list[tuple[str, str]]] = {"fanout-threads": [("websockets", "lower")]}
# Scenarios run once, uncounted, before the rounds (seconds): see run_rounds.
WARM_UP = {"small": 2.0, "mib": 1.0, "http": 2.0}
SWEEP_SIZES = [32, 1024, 16 * 1024, 256 * 1024, MIB]
SWEEP_CONNS = [100, 1000, 3000, 10_000]


# -- environment -------------------------------------------------------------------


def ensure_venv(script: str = __file__) -> None:
    """Re-run ``script`` (run.py by default) in bench/.venv, creating and filling it first."""
    python = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    requirements = (BENCH / "requirements.txt").read_bytes() + (
        REPO / "pyproject.toml"
    ).read_bytes()
    stamp = VENV / ".bench-stamp"
    digest = hashlib.sha256(requirements).hexdigest()
    if not python.exists():
        print(f"creating {VENV}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != digest:
        print("installing the benchmark clients and tether (editable)", flush=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(BENCH / "requirements.txt"), "-e", str(REPO)], check=True)
        stamp.write_text(digest)
    os.execv(str(python), [str(python), script, *sys.argv[1:]])


def ensure_node_modules() -> str:
    node = shutil.which("node")
    if node is None:
        sys.exit("bench needs Node.js (node and npm) for the echo server")
    if not (BENCH / "node_modules" / "ws").is_dir():
        print("installing the echo server's ws package (npm ci)", flush=True)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)
    return node


def raise_fd_limit() -> int:
    """10,000 connections need more than the usual 1024 descriptors (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@contextmanager
def echo_server(node: str) -> Iterator[tuple[int, int]]:
    """Start the Node echo server; yield its (ws, http) ports; stop it."""
    proc = subprocess.Popen(
        [node, str(BENCH / "echo_server.js")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # bounded: the server prints READY or exits
        if not line.startswith("READY"):
            raise RuntimeError(f"echo server did not start: {line!r}")
        ports = dict(part.split("=") for part in line.split()[1:])
        yield int(ports["ws"]), int(ports["http"])
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def machine() -> dict[str, Any]:
    def lscpu(field: str) -> str:
        try:
            out = subprocess.run(
                ["lscpu"], check=False, capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith(field + ":")),
            "?",
        )

    return {
        "cpu": lscpu("Model name"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg(),
    }


# -- measuring ---------------------------------------------------------------------


def measure(
    ports: tuple[int, int], scenario: str, client: str, timeout: float, **params: Any
) -> dict[str, Any]:
    """Run one measurement in a fresh worker process; its JSON result or an error."""
    body = {
        "scenario": scenario,
        "client": client,
        "ws_port": ports[0],
        "http_port": ports[1],
        **params,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)])}
    try:
        proc = subprocess.run(
            [sys.executable, str(BENCH / "worker.py"), json.dumps(body)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1]
            if proc.stderr.strip()
            else f"exit {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def value(key: str, result: dict[str, Any]) -> float | None:
    """The number a scenario reports: rt/s, MB/s, seconds, KiB per connection, GET/s."""
    if "error" in result:
        return None
    if key == "mib":
        return float(result["per_s"]) * MIB / 1e6
    if SCENARIOS[key][3] == "s":  # a fan-out: seconds, if nothing failed
        return float(result["seconds"]) if result["failures"] == 0 else None
    if key == "many":
        return float(result["rss_per_conn"]) / 1024
    return float(result["per_s"])


def run_rounds(
    ports: tuple[int, int], keys: list[str], runs: int, quick: bool
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``runs`` rounds; in each, every scenario and client once (interleaved).

    A warm-up pass comes first and is not counted: Node compiles the echo
    and HTTP handlers as they run, and the first client of round 1 used to
    meet a server still warming up (it was always tether, 0.84-0.88x in
    round 1 of runs that gave 1.1-1.2x in rounds 2 and 3). The clients'
    order turns by one each round, so that no client always goes first.
    """
    duration = 0.5 if quick else 2.0
    raw: dict[str, dict[str, list[dict[str, Any]]]] = {
        k: {c: [] for c in SCENARIOS[k][2]} for k in keys
    }
    for key in keys:
        scenario, params, clients, _ = SCENARIOS[key]
        if key in WARM_UP:
            measure(ports, scenario, clients[-1], timeout=300, duration=WARM_UP[key], **params)
    for round_no in range(1, runs + 1):
        for key in keys:
            scenario, params, clients, _ = SCENARIOS[key]
            params = dict(params)
            if key == "many" and quick:
                params["conns"] = 2000
            turn = (round_no - 1) % len(clients)
            for client in clients[turn:] + clients[:turn]:
                result = measure(ports, scenario, client, timeout=300, duration=duration, **params)
                raw[key][client].append(result)
                shown = value(key, result)
                note = result.get("error") or (
                    f"failures={result['failures']}" if result.get("failures") else ""
                )
                shown_text = "-" if shown is None else f"{shown:.1f}"
                print(
                    f"  round {round_no}  {key:7} {client:17} {shown_text} {note}",
                    flush=True,
                )
    return raw


def sweep(ports: tuple[int, int], quick: bool) -> dict[str, Any]:
    """One pass over message sizes and connection counts, for the plot."""
    duration = 0.5 if quick else 1.0
    sizes: dict[str, list[float | None]] = {}
    for client in [c for c in SCENARIOS["small"][2] if c not in OWNER_ROWS]:
        sizes[client] = []
        for size in SWEEP_SIZES:
            result = measure(ports, "echo", client, timeout=120, duration=duration, size=size)
            sizes[client].append(None if "error" in result else float(result["cpu_us_per_op"]))
            print(f"  sweep size {size:8} {client:17} {sizes[client][-1]}", flush=True)
    conns: dict[str, list[dict[str, Any]]] = {}
    counts = [n for n in SWEEP_CONNS if not quick or n <= 2000] or [100]
    for client in ["tether", "tether-threads", "websockets"]:
        conns[client] = []
        # The former model needs two threads per connection: stop it at 3,000.
        for n in [c for c in counts if client != "tether-threads" or c <= 3000]:
            result = measure(ports, "many", client, timeout=300, conns=n)
            conns[client].append(result)
            print(f"  sweep conns {n:6} {client:17} {result}", flush=True)
    return {"sizes": SWEEP_SIZES, "cpu_us_per_message": sizes, "conns": counts, "many": conns}


# -- reporting ---------------------------------------------------------------------


def medians(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, dict[str, float | None]]:
    out: dict[str, dict[str, float | None]] = {}
    for key, by_client in raw.items():
        out[key] = {}
        for client, results in by_client.items():
            values = [v for v in (value(key, r) for r in results) if v is not None]
            # A failed run makes the median meaningless: report none.
            out[key][client] = (
                statistics.median(values) if len(values) == len(results) and values else None
            )
    return out


def fmt(number: float | None) -> str:
    if number is None:
        return "FAILED"
    return f"{number:,.3f}" if number < 10 else f"{number:,.0f}"


def table(
    med: dict[str, dict[str, float | None]], raw: dict[str, dict[str, list[dict[str, Any]]]]
) -> str:
    lines = [
        "| scenario | tether | tether-threads (before) | others (median) | target | ratio | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, by_client in med.items():
        tether = by_client.get("tether")
        before = fmt(by_client["tether-threads"]) if "tether-threads" in by_client else "-"
        others = ", ".join(
            f"{c} {fmt(v)}" for c, v in by_client.items() if c not in WS and c not in OWNER_ROWS
        )
        if key == "many":
            runs = raw[key]["tether"]
            failures = sum(r.get("failures", 1) if "error" not in r else 1 for r in runs)
            conns = runs[0].get("conns", 0) if runs else 0
            verdict = "yes" if failures == 0 else "NO"
            lines.append(
                f"| {conns:,} conns open + echo, RSS/conn | {fmt(tether)} KiB | {before} | "
                f"{others} KiB | "
                f"no failures | - | {verdict} (failures {failures}, all open in {_opened(raw)}) |"
            )
            continue
        for client, other, better, factor, wanted in _targets(key):
            mine, theirs = by_client.get(client), by_client.get(other)
            if mine is None or theirs is None:
                ratio, met = None, False
            else:
                ratio = mine / theirs
                met = ratio >= factor if better == "higher" else ratio <= factor
            sign = ">=" if better == "higher" else "<="
            label, was = (
                (LABELS[key], before) if client == "tether" else (f"{LABELS[key]}, {client}", "-")
            )
            target, verdict = (
                (f"{sign} {factor}x {other}", "yes" if met else "NO")
                if wanted
                else (f"(vs {other})", "-")
            )
            lines.append(
                f"| {label} | {fmt(mine)} | {was} | {others} | {target} | "
                f"{'-' if ratio is None else f'{ratio:.2f}x'} | {verdict} |"
            )
    for key in med:
        for client, other, *_ in _targets(key):
            rounds = _round_ratios(key, client, other, raw)
            if rounds:
                lines.append(f"\n{LABELS[key]}, {client} / {other} round by round: {rounds}")
    for client in [*WS, *OWNER_ROWS]:
        runs = [r for r in raw.get("fanout", {}).get(client, []) if "phases" in r]
        if runs:
            names = list(runs[0]["phases"])
            phases = ", ".join(
                f"{name} {statistics.median(r['phases'][name] for r in runs):.3f}"
                for name in names
            )
            lines.append(
                f"\n{client} fan-out phases, median s after the first open()/start(): {phases}"
            )
    return "\n".join(lines)


def _targets(key: str) -> list[tuple[str, str, str, float, bool]]:
    """``key``'s rows: (tether's client, comparison client, "higher"/"lower", ratio to reach,
    whether it is a target or only reported)."""
    rows = [("tether", other, better, 1.0, True) for other, better in TARGETS.get(key, [])]
    rows += [("tether", other, better, 1.0, False) for other, better in REPORTED.get(key, [])]
    for client, targets in OWNER_ROWS.items():
        rows += [(client, *target, True) for target in targets.get(key, [])]
    return rows


def _opened(raw: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """Each client's median time to open (and upgrade) all of the "many" connections."""
    medians = []
    for client, runs in raw["many"].items():
        opened = [r["open_s"] for r in runs if "open_s" in r and not r.get("failures")]
        medians.append(f"{client} {fmt(statistics.median(opened)) if opened else '?'} s")
    return ", ".join(medians)


def _round_ratios(
    key: str, client: str, other: str, raw: dict[str, dict[str, list[dict[str, Any]]]]
) -> str:
    """Each round's ratio (the spread behind the ratio of medians, which decides "met")."""
    ratios = []
    for mine, theirs in zip(raw[key].get(client, []), raw[key].get(other, []), strict=False):
        a, b = value(key, mine), value(key, theirs)
        ratios.append("-" if a is None or b is None else f"{a / b:.2f}x")
    return ", ".join(ratios)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - only in bench/.venv, after ensure_venv()

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: a small, diffable SVG
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.4))
    for client, values in data["cpu_us_per_message"].items():
        points = [(s, v) for s, v in zip(data["sizes"], values, strict=True) if v is not None]
        if points:
            left.plot(*zip(*points, strict=True), marker="o", label=client)
    left.set(
        xscale="log",
        yscale="log",
        xlabel="message size, bytes",
        ylabel="client CPU µs per echo",
        title="Cost per message vs size (1 connection)",
    )
    left.legend()
    for client, results in data["many"].items():
        ok = [r for r in results if "rss_per_conn" in r]
        if ok:
            counts = [r["conns"] for r in ok]
            middle.plot(counts, [r["rss_per_conn"] / 1024 for r in ok], marker="o", label=client)
            right.plot(
                counts, [r["open_s"] * 1e6 / r["conns"] for r in ok], marker="s", label=client
            )
    middle.set(
        xscale="log",
        xlabel="connections open at once",
        ylabel="RSS KiB per connection",
        title="Memory per connection",
        ylim=(0, None),
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="connections open at once",
        ylabel="µs per connection to open and upgrade",
        title="Opening cost per connection",
    )
    middle.legend()
    right.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    print(f"plot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs, 2,000 instead of 10,000 connections"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="rounds (medians are over these; >= 3)"
    )
    parser.add_argument(
        "--only", nargs="*", choices=list(SCENARIOS), help="run only these scenarios"
    )
    parser.add_argument(
        "--sweep", action="store_true", help="also sweep sizes and connection counts"
    )
    parser.add_argument("--plot", type=Path, help="with --sweep: write the plot here (SVG or PNG)")
    parser.add_argument(
        "--profile", action="store_true", help="only profile tether (py-spy), no table"
    )
    args = parser.parse_args()
    ensure_venv()
    node = ensure_node_modules()
    fds = raise_fd_limit()
    keys = args.only or list(SCENARIOS)
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cpus']} CPUs, Python {info['python']}, "
        f"load {info['load_before']}, fd limit {fds}"
    )
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if args.profile:
        with echo_server(node) as ports:
            profile_all(ports, BENCH, RESULTS)
        return
    with echo_server(node) as ports:
        raw = run_rounds(ports, keys, max(args.runs, 1), args.quick)
        sweep_data = sweep(ports, args.quick) if args.sweep else None
    info["load_after"] = os.getloadavg()
    med = medians(raw)
    text = table(med, raw)
    print()
    print(text)
    print(f"\nload average before {info['load_before']}, after {info['load_after']}")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": info,
        "quick": args.quick,
        "runs": args.runs,
        "medians": med,
        "raw": raw,
        "table": text,
        "sweep": sweep_data,
    }
    path = RESULTS / f"bench-{started}.json"
    path.write_text(json.dumps(out, indent=1))
    (RESULTS / "latest.json").write_text(json.dumps(out, indent=1))
    print(f"results written to {path}")
    if sweep_data is not None:
        plot(sweep_data, args.plot or RESULTS / "scaling.svg")


if __name__ == "__main__":
    main()
