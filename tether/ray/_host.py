"""The host: a Ray actor holding a share of a fleet's connections in its worker process.

Its connections are ordinary tether connections under the process-wide
supervision tree of that worker (each connection restarted by its
supervisor as anywhere else); their owner is the host's one
[`Inbox`][tether.Inbox], from which the :class:`~tether.ray._sender.Sender`
thread carries their events to the owner Ray actors. Each connection
pickles as its [`FleetConnection`][tether.ray.FleetConnection]
(``Connection.set_wire``), so the events an owner receives name the
handle ``Fleet.open`` returned.

When the host's process dies, Ray starts the actor again (``max_restarts``)
with the same constructor arguments: it asks the fleet's registry for the
specs of the connections it held, tells each owner a ``Down`` whose reason
is [`HostRestarted`][tether.ray.HostRestarted] (nobody could tell it when
the process died), opens the connection again (its ``Up`` follows), and,
when the connection's last upgrade asked for ``reupgrade``, upgrades it
again once it is up (its ``Upgrade`` follows).

Ray runs the host's methods one at a time on one thread (the actor's
default), in the order each caller sent them; the sender thread touches
only the tables under ``_lock``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
import weakref
from typing import Any

import tether
from tether._errors import ConnectionStoppedError, TetherError
from tether._events import Down, Error, Up
from tether._options import WsOpts
from tether.actors import Connection, Inbox
from tether.ray import _calls
from tether.ray._errors import HostRestarted
from tether.ray._handle import FleetConnection
from tether.ray._registry import registry_name
from tether.ray._sender import OwnerName, Sender
from tether.ray._spec import ConnectionSpec, UpgradeSpec

__all__ = ["Host", "HostInfo"]

# The Connection calls a FleetConnection may route here.
_CALLS = frozenset(
    {
        "request",
        "headers",
        "data",
        "cancel",
        "update_flow",
        "ws_upgrade",
        "ws_send",
        "info",
        "is_alive",
        "close",
        "shutdown",
    }
)
_STOP_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class HostInfo:
    """A snapshot of one host of a fleet ([`Fleet.host_info`][tether.ray.Fleet.host_info]).

    Attributes:
        index: the host's index in the fleet.
        pid: its process id.
        connections: how many connections it holds.
        in_flight: batches of events sent to owners and not yet seen
            finished (at most the fleet's ``max_in_flight``).
        waiting: events in the host's Inbox, not yet taken by its sender
            (each connection's stop at its ``max_queue``).
    """

    index: int
    pid: int
    connections: int
    in_flight: int
    waiting: int


Answer = tuple[bool, Any]
"""A routed call's outcome: ``(True, result)`` or ``(False, the error to raise)``."""


def _reupgrades(conn: Connection, opts: Any) -> bool:
    """Whether an upgrade with ``opts`` on ``conn`` asks to be done again after a reconnect."""
    if isinstance(opts, WsOpts):
        return opts.reupgrade
    if isinstance(opts, dict) and "reupgrade" in opts:
        return bool(opts["reupgrade"])
    return conn.opts.ws_opts.reupgrade


class Host:
    """One host of a fleet (made a Ray actor by ``Fleet.start``). Its methods: Ray's one thread.

    Args:
        fleet: the fleet's name.
        namespace: the Ray namespace of the fleet's actors.
        index: this host's index.
        max_in_flight: the sender's bound (see ``tether.ray._sender``).
    """

    def __init__(self, fleet: str, namespace: str | None, index: int, max_in_flight: int) -> None:
        self._fleet = fleet
        self._namespace = namespace
        self._index = index
        self._registry: Any = _calls.actor(registry_name(fleet), namespace)
        # No busy polling: the sender thread waits for many connections, not one.
        self._inbox = Inbox(busy_poll=0)
        self._lock = threading.Lock()
        self._conns: dict[str, Connection] = {}
        self._specs: dict[str, ConnectionSpec] = {}
        # Connection -> its owner; weak: a closed connection's entry lasts as long
        # as its last events (which hold it) wait in the Inbox.
        self._owners: weakref.WeakKeyDictionary[Connection, OwnerName] = (
            weakref.WeakKeyDictionary()
        )
        self._key_of: weakref.WeakKeyDictionary[Connection, str] = weakref.WeakKeyDictionary()
        # The synthetic Downs of a restart, until the sender routes them.
        self._restart_downs: dict[FleetConnection, OwnerName] = {}
        self._replay: dict[Connection, UpgradeSpec] = {}
        self._sender = Sender(self._inbox, self._route, self._owner_gone, max_in_flight)
        started: tuple[int, list[ConnectionSpec]] = _calls.get(
            self._registry.host_started.remote(index, os.getpid())
        )
        generation, specs = started
        for spec in specs:
            if generation:
                self._restarted(spec, generation)
            self._open(spec)
        self._sender.start()

    # -- opening --------------------------------------------------------------------

    def _restarted(self, spec: ConnectionSpec, generation: int) -> None:
        """Before re-opening ``spec``: its owner hears that the old connection is gone."""
        handle = FleetConnection(self._fleet, self._namespace, spec.key, self._index)
        protocol = "ws" if spec.upgrade is not None else "http"
        reason = HostRestarted(self._fleet, self._index, generation)
        with self._lock:
            self._restart_downs[handle] = (spec.owner, spec.owner_namespace)
        self._inbox.tell(Down(handle, protocol, reason, (), ()))  # type: ignore[arg-type]

    def _open(self, spec: ConnectionSpec) -> None:
        conn = tether.open(spec.host, spec.port, owner=self._inbox, **spec.open_opts)
        conn.set_wire(FleetConnection(self._fleet, self._namespace, spec.key, self._index))
        with self._lock:
            self._conns[spec.key] = conn
            self._specs[spec.key] = spec
            self._owners[conn] = (spec.owner, spec.owner_namespace)
            self._key_of[conn] = spec.key
            if spec.upgrade is not None and spec.upgrade.reupgrade:
                self._replay[conn] = spec.upgrade

    def open(self, spec: ConnectionSpec) -> Answer:
        """Open the connection of ``spec`` (kept in the registry already).

        Idempotent: the registry holds one spec per key, so a key this host
        holds already is this spec, re-opened by a restart that read it.
        """
        if spec.key in self._conns:
            return True, None
        try:
            self._open(spec)
        except (ValueError, TypeError, TetherError) as exc:
            return False, exc
        return True, None

    # -- routed calls ---------------------------------------------------------------

    def call(self, key: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Answer:
        """Run ``Connection.<method>(*args, **kwargs)`` on the connection of ``key``."""
        conn = self._conns.get(key)
        if conn is None:
            return False, ConnectionStoppedError(f"fleet {self._fleet!r} holds no {key!r}")
        if method not in _CALLS:
            return False, ValueError(f"{method!r} is not a call a fleet connection routes")
        if method in ("close", "shutdown"):
            self._forget(key)  # first: a host that dies now must not open it again
        try:
            result = getattr(conn, method)(*args, **kwargs)
        except (ValueError, TypeError, TetherError) as exc:
            return False, exc
        if method == "ws_upgrade":
            self._note_upgrade(key, conn, *args)
        elif method == "info":
            result = dataclasses.replace(result, owner=self._specs[key].owner)
        return True, result

    def _note_upgrade(
        self, key: str, conn: Connection, path: str, headers: Any = None, opts: Any = None
    ) -> None:
        upgrade = UpgradeSpec(path, headers, opts, _reupgrades(conn, opts))
        with self._lock:
            spec = self._specs.get(key)
            if spec is not None:
                self._specs[key] = spec.upgraded(upgrade)
        self._registry.note_upgrade.remote(key, upgrade)

    def _forget(self, key: str) -> None:
        # Here first, then the registry: once the fleet's keys lack it, no call
        # reaches the connection any more (a call racing this finds no key).
        with self._lock:
            self._specs.pop(key, None)
            conn = self._conns.pop(key, None)
            if conn is not None:
                self._replay.pop(conn, None)
        _calls.get(self._registry.forget.remote(key))
        # Its owner entry stays until the connection's last events are sent.

    # -- the sender's hooks (its thread) ----------------------------------------------

    def _route(self, event: object) -> OwnerName | None:
        conn: object = getattr(event, "conn", None)
        replay = None
        with self._lock:
            if isinstance(conn, FleetConnection):
                return self._restart_downs.pop(conn, None)
            if not isinstance(conn, Connection):
                return None
            owner = self._owners.get(conn)
            key = self._key_of.get(conn)
            if isinstance(event, Up):
                replay = self._replay.pop(conn, None)
        if replay is not None:
            # Failing: the connection went down again or stopped; its events say so.
            with contextlib.suppress(TetherError):
                conn.ws_upgrade(replay.path, replay.headers, replay.opts)
        elif (
            isinstance(event, Error)
            and event.stream is None
            and key is not None
            and not conn.is_alive()
            and self._conns.get(key) is conn
        ):
            # Its last event (retries ran out, its supervisor gave up): the fleet
            # forgets it before its owner hears, so a restart does not open it again.
            self._forget(key)
        return owner

    def _owner_gone(self, owner: OwnerName) -> None:
        """Owner monitoring across processes: an owner that died for good ends its connections."""
        with self._lock:
            keys = [k for k, s in self._specs.items() if (s.owner, s.owner_namespace) == owner]
        for key in keys:
            conn = self._conns.get(key)
            self._forget(key)
            if conn is not None:
                conn.close()

    # -- the fleet's calls ------------------------------------------------------------

    def pid(self) -> int:
        """The host's process id."""
        return os.getpid()

    def keys(self) -> list[str]:
        """The keys of the connections this host holds."""
        return list(self._conns)

    def info(self) -> HostInfo:
        """A snapshot of this host (``Fleet.host_info``)."""
        return HostInfo(
            self._index, os.getpid(), len(self._conns), self._sender.in_flight, len(self._inbox)
        )

    def stop(self) -> None:
        """Close every connection and stop the sender (``Fleet.stop``)."""
        self._inbox.close()  # owner monitoring: each connection shuts down
        for conn in list(self._conns.values()):
            conn.close()
        for conn in list(self._conns.values()):
            conn.wait_stopped(_STOP_TIMEOUT)
        self._sender.stop(_STOP_TIMEOUT)
