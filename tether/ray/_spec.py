"""What the fleet keeps of each connection, so that a restarted host can open it again.

Plain picklable values: they travel from the caller to the fleet's
registry actor, and from there to the host that (re-)opens them. The owner
is kept by *name* (and namespace), never as an actor handle: a host
restarted by Ray looks it up again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["ConnectionSpec", "UpgradeSpec"]


@dataclass(frozen=True, slots=True)
class UpgradeSpec:
    """The last Websocket upgrade asked for on a connection (replayed per ``reupgrade``)."""

    path: str
    headers: tuple[tuple[str, str], ...] | None
    opts: Mapping[str, Any] | None
    reupgrade: bool


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """One connection of a fleet: where to, with which options, owned by which Ray actor.

    Attributes:
        key: the connection's key in the fleet (what placed it).
        index: the host it is placed on.
        host: the server's host name.
        port: the server's port.
        open_opts: keyword arguments of ``tether.open`` (picklable ones).
        owner: the owner Ray actor's name.
        owner_namespace: the owner's Ray namespace.
        upgrade: the last Websocket upgrade asked for, if any.
    """

    key: str
    index: int
    host: str
    port: int
    open_opts: Mapping[str, Any] = field(default_factory=dict)
    owner: str = ""
    owner_namespace: str | None = None
    upgrade: UpgradeSpec | None = None

    def upgraded(self, upgrade: UpgradeSpec) -> ConnectionSpec:
        """This spec with ``upgrade`` as its last upgrade."""
        return replace(self, upgrade=upgrade)
