"""The fleet's memory: every connection spec, by key, in a Ray actor of its own.

A host that Ray restarts has lost everything but its constructor's
arguments; it asks the registry which connections it held
(:meth:`Registry.host_started`) and opens them again. The registry is a
plain (not restarted) Ray actor named after the fleet, so that it outlives
any host; ``Fleet.stop()`` ends it. Its methods run one at a time (a Ray
actor's default), so it needs no lock.
"""

from __future__ import annotations

from tether.ray._spec import ConnectionSpec, UpgradeSpec

__all__ = ["Registry", "registry_name"]


def registry_name(fleet: str) -> str:
    """The Ray actor name of ``fleet``'s registry."""
    return f"tether.fleet.{fleet}.registry"


class Registry:
    """Connection specs by key, and how many times each host has started. One Ray actor per fleet.

    Its size is what the fleet holds: one spec per open connection.
    """

    def __init__(self, hosts: int) -> None:
        self._specs: dict[str, ConnectionSpec] = {}
        self._starts = [0] * hosts
        self._pids = [0] * hosts

    def host_started(self, index: int, pid: int) -> tuple[int, list[ConnectionSpec]]:
        """Host ``index`` started in process ``pid``: its starts before this one, and its specs."""
        generation = self._starts[index]
        self._starts[index] += 1
        self._pids[index] = pid
        return generation, [s for s in self._specs.values() if s.index == index]

    def add(self, spec: ConnectionSpec) -> bool:
        """Keep ``spec``; False if its key is taken already."""
        if spec.key in self._specs:
            return False
        self._specs[spec.key] = spec
        return True

    def forget(self, key: str) -> None:
        """The connection of ``key`` is closed for good: a restarted host will not re-open it."""
        self._specs.pop(key, None)

    def note_upgrade(self, key: str, upgrade: UpgradeSpec) -> None:
        """Keep ``upgrade`` as the connection's last one (for a re-open's ``reupgrade``)."""
        spec = self._specs.get(key)
        if spec is not None:
            self._specs[key] = spec.upgraded(upgrade)

    def keys(self) -> list[str]:
        """Every key the fleet holds."""
        return list(self._specs)

    def starts(self) -> list[int]:
        """How many times each host has started (1 each until one restarts)."""
        return list(self._starts)
