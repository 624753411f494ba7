"""What every benchmark client shares: parameters, results, clocks and RSS."""

from __future__ import annotations

import dataclasses
import os
import resource
import time
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class Params:
    """One measurement: what to run, against which ports, within which bounds."""

    scenario: str  # "echo", "fanout", "many" or "http"
    client: str
    ws_port: int
    http_port: int
    duration: float = 2.0  # seconds of measuring for the rate scenarios
    max_count: int = 1_000_000  # bound on the iterations of any loop
    size: int = 32  # message size for "echo"
    conns: int = 500  # connections for "fanout" and "many"
    messages: int = 10  # echoes per connection for "fanout"
    timeout: float = 120.0  # bound on any one measurement

    @property
    def ws_url(self) -> str:
        return f"ws://{HOST}:{self.ws_port}/"

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}/"


Result = dict[str, Any]


def rss_bytes() -> int:
    """The resident set size of this process now (Linux ``/proc``)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rate(params: Params, one: Callable[[], None], warmup: int = 20) -> Result:
    """Call ``one`` repeatedly for ``params.duration`` s; iterations per second.

    The loop is bounded by ``params.max_count`` as well as by the clock.
    """
    for _ in range(warmup):
        one()
    count = 0
    cpu0, start = cpu_seconds(), time.perf_counter()
    deadline = start + params.duration
    while count < params.max_count:
        one()
        count += 1
        if count % 8 == 0 and time.perf_counter() >= deadline:
            break
    elapsed = time.perf_counter() - start
    cpu = cpu_seconds() - cpu0
    return {"per_s": count / elapsed, "count": count, "cpu_us_per_op": cpu / count * 1e6}


def timed(params: Params, run: Callable[[], int]) -> Result:
    """Time ``run`` (which returns its number of failures) once."""
    cpu0, start = cpu_seconds(), time.perf_counter()
    failures = run()
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "failures": failures, "cpu_s": cpu_seconds() - cpu0}
