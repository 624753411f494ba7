"""Memory under a slow consumer and a server that reads nothing (issue 18): RSS over time.

Receive: the echo server's ``/push`` path (Node's ``ws``,
``bench/echo_server.js``) pushes 1 KiB binary messages as fast as TCP lets
it, and an owner takes one message per 10 ms: (a) a thread looping on
``conn.inbox.receive()``, (b) a pykka ``ThreadingActor`` whose
``on_receive`` sleeps 10 ms per ``Ws`` event; each with the default options
(the receive bound, ``max_queue`` 128) and with ``max_queue=None`` (no
bound, Gun's behaviour). The client runs in a fresh process; this one
samples its RSS (``/proc/PID/statm``) every second for ``--seconds``, fits
the growth in MiB/min after ``--warmup`` s (least squares) and kills the
client once its RSS passes ``--cap`` MiB.

Send: 200 x ``ws_send(1 MiB)`` to ``/sink``, which reads nothing, with the
default ``send_buffer`` (1 MiB) and with ``send_buffer=None``: how many
calls returned before one blocked (took longer than 0.5 s), how long it
blocked and how it ended, and the client's peak RSS (``ru_maxrss``). With
the bound the blocked call waits up to ``send_timeout`` (15 s); the loop
stops there. Without it every call returns at once and the client waits
(at most 30 s) for the ``Down`` that ``send_timeout`` brings.

Not a test and never timed in CI; 127.0.0.1 only::

    python3 bench/slow_consumer.py                  # ~5.5 min: 4 x 60 s, then the send side
    python3 bench/slow_consumer.py --seconds 20 --only inbox actor
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
MIB = 1 << 20
HOST = "127.0.0.1"
# variant -> (side, owner, options given to tether.open)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "inbox": ("receive", "inbox", {}),
    "inbox-unbounded": ("receive", "inbox", {"max_queue": None}),
    "actor": ("receive", "actor", {}),
    "actor-unbounded": ("receive", "actor", {"max_queue": None}),
    "send": ("send", "inbox", {}),
    "send-unbounded": ("send", "inbox", {"send_buffer": None}),
}
PER_MESSAGE = 0.010  # seconds the owner spends on each message
SENDS = 200
BLOCKED = 0.5  # a ws_send call that took longer than this blocked
_WAIT = 10.0


# -- the client (a child process) ------------------------------------------------------


def _report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _upgraded(conn: Any, path: str) -> None:
    import tether  # noqa: PLC0415 - children only

    conn.await_up(timeout=_WAIT)
    stream = conn.ws_upgrade(path)
    if not isinstance(conn.await_(stream, timeout=_WAIT), tether.Upgrade):
        raise RuntimeError("upgrade refused")  # noqa: TRY004


def receive_child(port: int, owner: str, opts: dict[str, Any], seconds: float) -> None:
    """Take one message per 10 ms for ``seconds``; print ``taken`` every second."""
    import pykka  # noqa: PLC0415

    import tether  # noqa: PLC0415

    taken = [0]
    deadline = time.monotonic() + seconds
    if owner == "inbox":
        conn = tether.open(HOST, port, retry=0, **opts)
        _upgraded(conn, "/push?size=1024")
        inbox = conn.inbox
        assert inbox is not None

        def consume() -> None:
            while time.monotonic() < deadline:  # bounded by time
                if isinstance(inbox.receive(timeout=_WAIT), tether.Ws):
                    taken[0] += 1
                time.sleep(PER_MESSAGE)

        threading.Thread(target=consume, daemon=True, name="owner").start()
    else:

        class SlowOwner(pykka.ThreadingActor):
            def on_receive(self, message: Any) -> None:
                if isinstance(message, tether.Ws):
                    time.sleep(PER_MESSAGE)
                    taken[0] += 1

        ref = SlowOwner.start()
        conn = tether.open(HOST, port, owner=ref, retry=0, **opts)
        conn.ws_upgrade("/push?size=1024")  # sent once the connection is up
    while time.monotonic() < deadline:
        time.sleep(1.0)
        try:
            paused = conn.info(timeout=1.0).reading_paused
        except Exception:  # busy or gone: only a sample
            paused = None
        _report(taken=taken[0], paused=paused)
    _report(taken=taken[0], peak_mib=_peak_mib(), done=True)
    os._exit(0)  # an unbounded owner's backlog would take minutes to stop


def send_child(port: int, opts: dict[str, Any]) -> None:
    """200 x ws_send(1 MiB) to a server that reads nothing."""
    import tether  # noqa: PLC0415

    conn = tether.open(HOST, port, retry=0, **opts)
    _upgraded(conn, "/sink")
    payload = bytes(MIB)
    returned, blocked_s, ended = 0, None, "all returned"
    start = time.monotonic()
    for _ in range(SENDS):
        t0 = time.monotonic()
        try:
            conn.ws_send(payload)
        except tether.TetherError as exc:
            blocked_s, ended = time.monotonic() - t0, type(exc).__name__
            break
        took = time.monotonic() - t0
        if took > BLOCKED:
            blocked_s, ended = took, "returned after blocking"
            break
        returned += 1
    all_sent_s = time.monotonic() - start
    rss_sent = _peak_mib()
    inbox = conn.inbox
    assert inbox is not None
    down = inbox.receive(30.0, lambda m: isinstance(m, tether.Down))  # the write deadline
    _report(
        returned=returned,
        blocked_s=blocked_s,
        ended=ended,
        calls_s=all_sent_s,
        peak_mib_after_calls=rss_sent,
        down=type(down.reason).__name__,  # type: ignore[attr-defined]
        down_after_s=time.monotonic() - start,
        peak_mib=_peak_mib(),
        done=True,
    )
    os._exit(0)


# -- the parent: start, sample, cap ----------------------------------------------------


def _rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return None


def growth_per_minute(samples: list[tuple[float, float]], warmup: float) -> float | None:
    """Least-squares slope of RSS (MiB) over time, after ``warmup`` s, in MiB/min."""
    points = [(t, r) for t, r in samples if t >= warmup]
    if len(points) < 3:  # the cap came early: use what there is
        points = samples[1:]
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return None if var == 0 else cov / var * 60


def run_variant(name: str, port: int, seconds: float, cap: float) -> dict[str, Any]:
    side, owner, opts = VARIANTS[name]
    body = {"side": side, "owner": owner, "opts": opts, "port": port, "seconds": seconds}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)])}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(body)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert proc.stdout is not None
        # Ends when the child exits.
        lines.extend(json.loads(line) for line in proc.stdout if line.startswith("{"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start = time.monotonic()
    limit = seconds + 60  # the send side: up to 15 s blocked, then up to 30 s for the Down
    samples: list[tuple[float, float]] = []
    capped = None
    while proc.poll() is None and time.monotonic() - start < limit:
        rss = _rss_mib(proc.pid)
        if rss is not None:
            samples.append((time.monotonic() - start, rss))
            if rss > cap:
                capped = samples[-1][0]
                break
        time.sleep(1.0)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(timeout=5)
    last = lines[-1] if lines else {}
    return {
        "variant": name,
        "opts": opts,
        "samples": samples,
        "capped_at_s": capped,
        "last": last,
        "pauses": [line.get("paused") for line in lines if "paused" in line],
    }


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "-" if value is None else format(value, spec)


def receive_row(result: dict[str, Any], warmup: float) -> str:
    samples = result["samples"]
    growth = growth_per_minute(samples, warmup)
    final = samples[-1][1] if samples else None
    peak = max((r for _, r in samples), default=None)
    last = result["last"]
    paused = [p for p in result["pauses"] if p is not None]
    share = f"{sum(paused) / len(paused):.0%}" if paused else "-"
    end = samples[-1][0] if samples else 0.0
    note = (
        f"killed at {result['capped_at_s']:.0f} s (cap)"
        if result["capped_at_s"] is not None
        else f"{end:.0f} s"
    )
    return (
        f"| {result['variant']} | {_fmt(growth, ',.1f')} | {_fmt(final)} | {_fmt(peak)} | "
        f"{last.get('taken', '-'):,} | {share} | {note} |"
    )


def send_row(result: dict[str, Any]) -> str:
    last = result["last"]
    peak = max((r for _, r in result["samples"]), default=None)
    blocked = last.get("blocked_s")
    return (
        f"| {result['variant']} | {last.get('returned', '-')} | {_fmt(blocked, '.1f')} s, "
        f"{last.get('ended', '-')} | {_fmt(last.get('peak_mib'))} ({_fmt(peak)}) | "
        f"{last.get('down', '-')} after {_fmt(last.get('down_after_s'), '.1f')} s |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="per receive variant")
    parser.add_argument("--warmup", type=float, default=5.0, help="s left out of the fit")
    parser.add_argument("--cap", type=float, default=1536.0, help="kill a client past this RSS")
    parser.add_argument("--only", nargs="*", choices=list(VARIANTS), help="these variants only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        body = json.loads(args.child)
        if body["side"] == "send":
            send_child(body["port"], body["opts"])
        else:
            receive_child(body["port"], body["owner"], body["opts"], body["seconds"])
        return
    sys.path.insert(0, str(BENCH))
    from run import echo_server, ensure_node_modules, ensure_venv  # noqa: PLC0415

    ensure_venv(__file__)
    results = []
    with echo_server(ensure_node_modules()) as (ws_port, _):
        for name in args.only or list(VARIANTS):
            print(f"  {name} ...", flush=True)
            results.append(run_variant(name, ws_port, args.seconds, args.cap))
    received = [r for r in results if VARIANTS[r["variant"]][0] == "receive"]
    sent = [r for r in results if VARIANTS[r["variant"]][0] == "send"]
    if received:
        print(
            f"\n1 KiB messages pushed, one taken per {PER_MESSAGE * 1000:.0f} ms; RSS in MiB, "
            f"growth fitted after {args.warmup:.0f} s"
        )
        print(
            "| variant | growth MiB/min | final RSS | peak RSS | messages taken | "
            "samples paused | ran |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for result in received:
            print(receive_row(result, args.warmup))
    if sent:
        print(f"\n{SENDS} x ws_send(1 MiB) to a server that reads nothing")
        print(
            "| variant | calls returned before one blocked | the blocked call | "
            "peak RSS MiB (sampled) | then |"
        )
        print("| --- | --- | --- | --- | --- |")
        for result in sent:
            print(send_row(result))
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"slow-consumer-{stamp}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
