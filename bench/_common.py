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


def warmup_count(params: Params) -> int:
    """Untimed iterations before a rate is measured (fewer for big messages)."""
    return 3 if params.size > 65536 else 20


class Meter:
    """Counts iterations for ``params.duration`` s (bounded by ``max_count`` too)."""

    def __init__(self, params: Params) -> None:
        self.params = params
        self.count = -1
        self.cpu0, self.start = cpu_seconds(), time.perf_counter()
        self.deadline = self.start + params.duration

    def more(self) -> bool:
        """True while another iteration is wanted (call once before each)."""
        self.count += 1
        if self.count >= self.params.max_count:
            return False
        return self.count % 8 != 0 or self.count == 0 or time.perf_counter() < self.deadline

    def result(self, ops: int = 1) -> Result:
        """Iterations of ``ops`` operations each: operations per second, CPU per operation."""
        elapsed = time.perf_counter() - self.start
        cpu = cpu_seconds() - self.cpu0
        count = max(self.count, 1) * ops
        return {"per_s": count / elapsed, "count": count, "cpu_us_per_op": cpu / count * 1e6}


def rate(params: Params, one: Callable[[], None]) -> Result:
    """Call ``one`` repeatedly for ``params.duration`` s; operations per second.

    ``one`` does one operation, or ``one.ops`` if it has that attribute (an
    owner actor's round trips, asked for in batches: see ``actor_echo``).
    """
    for _ in range(warmup_count(params)):
        one()
    meter = Meter(params)
    while meter.more():
        one()
    return meter.result(getattr(one, "ops", 1))


def timed(params: Params, run: Callable[[], int]) -> Result:
    """Time ``run`` (which returns its number of failures) once."""
    cpu0, start = cpu_seconds(), time.perf_counter()
    failures = run()
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "failures": failures, "cpu_s": cpu_seconds() - cpu0}
