"""Owner Ray actors for the fleet tests (imported by the workers: PYTHONPATH is the repo).

:class:`EchoOwner` upgrades each connection on its first ``Up`` (with
``reupgrade``, the fleet upgrades it again after a host restart), sends
one text per ``Upgrade`` and counts what comes back. Waits run in a
concurrency group of their own, so that ``on_tether_events`` (the default
group, one thread) keeps running while a test waits.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from typing import Any

import ray

import tether
from tether.ray import HostRestarted


@ray.remote(concurrency_groups={"wait": 2})
class EchoOwner:
    def __init__(self, upgrade: bool = True) -> None:
        self._cond = threading.Condition()
        # Without upgrade it only records (the keys count as upgraded already).
        self._upgrade = upgrade
        self._upgraded: set[str] = set()
        self.seen: defaultdict[str, list[str]] = defaultdict(list)  # key -> event names
        self.echoes: Counter[str] = Counter()
        self.downs: defaultdict[str, list[BaseException]] = defaultdict(list)
        self.handles: dict[str, Any] = {}
        self.responses: defaultdict[str, list[tuple[Any, int]]] = defaultdict(list)
        self.errors: list[str] = []

    def on_tether_events(self, events: list[Any]) -> None:
        for event in events:
            key = event.conn.key
            self.handles.setdefault(key, event.conn)
            try:
                self._on_event(key, event)
            except tether.TetherError as exc:  # e.g. HostDown: the host died under the call
                self.errors.append(f"{key}: {exc!r}")
            with self._cond:
                self.seen[key].append(type(event).__name__)
                self._cond.notify_all()

    def _on_event(self, key: str, event: Any) -> None:
        match event:
            case tether.Up(conn=conn) if self._upgrade and key not in self._upgraded:
                self._upgraded.add(key)
                conn.ws_upgrade("/websocket", opts={"reupgrade": True})
            case tether.Upgrade(conn=conn):
                conn.ws_send(tether.Text(f"echo {key}"))
            case tether.Ws(frame=tether.Text(data=text)) if text == f"echo {key}":
                with self._cond:
                    self.echoes[key] += 1
            case tether.Response(stream=stream, status=status):
                with self._cond:
                    self.responses[key].append((stream, status))
            case tether.Down(reason=reason):
                with self._cond:
                    self.downs[key].append(reason)

    @ray.method(concurrency_group="wait")
    def wait_echoes(self, keys: list[str], at_least: int, timeout: float) -> dict[str, int]:
        """Wait until each key has ``at_least`` echoes; return the counts of those short of it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                short = {k: self.echoes[k] for k in keys if self.echoes[k] < at_least}
                left = deadline - time.monotonic()
                if not short or left <= 0:
                    return short
                self._cond.wait(left)

    @ray.method(concurrency_group="wait")
    def wait_seen(self, key: str, name: str, timeout: float) -> list[str]:
        """Wait until ``key`` had an event of class ``name``; return its events' names."""
        with self._cond:
            self._cond.wait_for(lambda: name in self.seen[key], timeout)
            return list(self.seen[key])

    @ray.method(concurrency_group="wait")
    def report(self) -> dict[str, Any]:
        with self._cond:
            return {
                "seen": dict(self.seen),
                "echoes": dict(self.echoes),
                "downs": {k: list(v) for k, v in self.downs.items()},
                "restarted": {
                    k: [isinstance(r, HostRestarted) for r in v] for k, v in self.downs.items()
                },
                "handles": dict(self.handles),
                "responses": {k: list(v) for k, v in self.responses.items()},
                "errors": list(self.errors),
            }


@ray.remote(concurrency_groups={"control": 2})
class SlowOwner:
    """Holds every batch until released (a slow owner), then records the messages' numbers."""

    def __init__(self) -> None:
        self._gate = threading.Event()
        self._cond = threading.Condition()
        self.seqs: list[int] = []

    def on_tether_events(self, events: list[Any]) -> None:
        self._gate.wait(60.0)  # bounded: a failed test ends
        for event in events:
            match event:
                case tether.Ws(frame=tether.Text(data=text)):
                    with self._cond:
                        self.seqs.append(int(text.partition(":")[0]))
                        self._cond.notify_all()

    @ray.method(concurrency_group="control")
    def release(self) -> None:
        self._gate.set()

    @ray.method(concurrency_group="control")
    def wait_seqs(self, count: int, timeout: float) -> list[int]:
        with self._cond:
            self._cond.wait_for(lambda: len(self.seqs) >= count, timeout)
            return self.seqs[:count]
