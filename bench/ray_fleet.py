"""A tether.ray fleet on a local Ray cluster: round-trip cost, RSS per connection, recovery.

Issue 23's measurements, all on this machine (a local cluster of
``--cpus`` CPUs, the hosts and owners as Ray actors, an aiohttp echo
server in this process on 127.0.0.1):

1. round trips: one Websocket, its owner echoing every message back
   (owner -> host -> server -> host -> sender thread -> owner), next to the
   same ping-pong with an in-process Inbox owner (``tether.open``);
2. a routed call alone: ``FleetConnection.ws_send`` from the driver;
3. ``--hosts`` hosts x ``--per-host`` Websockets: time until all are up
   and upgraded, RSS of each host process before and after (per connection);
4. one host SIGKILLed: time until every connection it held is upgraded
   again and has echoed (the owner waits for it).

Run: ``python bench/ray_fleet.py --per-host 2500`` (tether[ray] and aiohttp installed).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import ray

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tether  # noqa: E402
import tether.ray  # noqa: E402
from tests.interop.aiohttp_server import AiohttpServer  # noqa: E402


@ray.remote(concurrency_groups={"wait": 1})
class Owner:
    """Upgrades on the first Up (reupgrade after that), sends on each Upgrade, echoes N times."""

    def __init__(self, echoes: int) -> None:
        self.echoes = echoes  # round trips per connection before it stops sending
        self.cond = threading.Condition()
        self.upgraded: set[str] = set()
        self.counts: dict[str, int] = {}
        self.done = 0
        self.generation: dict[str, int] = {}

    def on_tether_events(self, events: list[Any]) -> None:
        for event in events:
            key = event.conn.key
            match event:
                case tether.Up(conn=conn) if key not in self.upgraded:
                    self.upgraded.add(key)
                    conn.ws_upgrade("/websocket-nocompress", opts={"reupgrade": True})
                case tether.Upgrade(conn=conn):
                    self.counts[key] = 0
                    conn.ws_send("0")
                case tether.Ws(conn=conn, frame=tether.Text(data=text)):
                    n = int(text) + 1
                    self.counts[key] = n
                    if n < self.echoes:
                        conn.ws_send(str(n))
                    else:
                        with self.cond:
                            self.done += 1
                            self.cond.notify_all()

    @ray.method(concurrency_group="wait")
    def wait_done(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.done < count and time.monotonic() < deadline:
                self.cond.wait(deadline - time.monotonic())
            return self.done


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def local_round_trips(host: str, port: int, count: int) -> float:
    conn = tether.open(host, port)
    conn.await_up()
    stream = conn.ws_upgrade("/websocket-nocompress")
    conn.await_(stream)
    began = time.perf_counter()
    for n in range(count):
        conn.ws_send(str(n))
        conn.await_(stream)
    elapsed = time.perf_counter() - began
    conn.close()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--per-host", type=int, default=500)
    parser.add_argument("--round-trips", type=int, default=2000)
    args = parser.parse_args()
    began = time.perf_counter()
    ray.init(
        num_cpus=args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    print(f"ray.init: {time.perf_counter() - began:.1f} s")
    with AiohttpServer() as server:
        local = local_round_trips(server.host, server.port, args.round_trips)
        print(f"in-process Inbox owner: {local:,.0f} round trips/s")
        fleet = tether.ray.Fleet.start("bench", hosts=args.hosts)
        try:
            # 1. one connection, echoing through its Ray owner
            solo = Owner.options(name="solo").remote(args.round_trips)
            handle = fleet.open("solo", server.host, server.port, owner=solo)
            ray.get(solo.wait_done.remote(0, 0))  # the actor is up
            began = time.perf_counter()
            assert ray.get(solo.wait_done.remote(1, 120)) == 1
            elapsed = time.perf_counter() - began
            print(
                f"Ray owner: {args.round_trips / elapsed:,.0f} round trips/s"
                f" ({elapsed / args.round_trips * 1e3:.2f} ms each, connect and upgrade included)"
            )
            # 2. a routed call alone
            began = time.perf_counter()
            for _ in range(500):
                handle.is_alive()
            each = (time.perf_counter() - began) / 500
            print(f"routed call (is_alive) from the driver: {each * 1e3:.2f} ms")
            handle.close()
            # 3. many connections
            total = args.hosts * args.per_host
            keys = [f"ws-{n}" for n in range(total)]
            held = Counter(fleet.host_of(k) for k in keys)
            first_key = {fleet.host_of(k): k for k in reversed(keys)}
            pids = {index: fleet.host_pid(key) for index, key in first_key.items()}
            before = {index: rss_kib(pid) for index, pid in pids.items()}
            owner = Owner.options(name="many").remote(1)
            ray.get(owner.wait_done.remote(0, 0))
            began = time.perf_counter()
            for key in keys:
                fleet.open(key, server.host, server.port, owner=owner, retry=20, retry_timeout=0.5)
            opened = time.perf_counter() - began
            assert ray.get(owner.wait_done.remote(total, 600)) == total
            up = time.perf_counter() - began
            print(
                f"{total} Websockets on {args.hosts} hosts: opened in {opened:.1f} s,"
                f" all upgraded and echoed in {up:.1f} s"
            )
            for index, pid in pids.items():
                after = rss_kib(pid)
                print(
                    f"  host {index}: {held[index]} connections, RSS {before[index] / 1024:.0f}"
                    f" -> {after / 1024:.0f} MiB,"
                    f" {(after - before[index]) / held[index]:.1f} KiB per connection"
                )
            # 4. kill a host
            victim = fleet.host_of(keys[0])
            killed = sum(1 for k in keys if fleet.host_of(k) == victim)
            began = time.perf_counter()
            os.kill(fleet.host_pid(keys[0]), signal.SIGKILL)
            assert ray.get(owner.wait_done.remote(total + killed, 600)) == total + killed
            print(
                f"host {victim} SIGKILLed: its {killed} connections up, upgraded and echoing"
                f" again in {time.perf_counter() - began:.1f} s"
            )
        finally:
            fleet.stop()
            ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
