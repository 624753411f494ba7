"""``Fleet``: connection specs placed by key over N host actors that Ray restarts.

The fleet is a handle held by the program that started it (the Ray
driver, or any actor): the registry actor keeps the specs, the host
actors hold the connections. See ``docs/fleets.md``.
"""

from __future__ import annotations

import threading
from typing import Any

import ray
from ray.exceptions import RayActorError

from tether.ray import _calls
from tether.ray._errors import FleetStopped
from tether.ray._handle import FleetConnection, host_name
from tether.ray._host import Host, HostInfo
from tether.ray._placement import host_index
from tether.ray._registry import Registry, registry_name
from tether.ray._sender import DEFAULT_MAX_IN_FLIGHT
from tether.ray._spec import ConnectionSpec

__all__ = ["Fleet"]

_STOP_TIMEOUT = 30.0
_CALL_TIMEOUT = 60.0  # a host's start may take a few seconds on a loaded machine


# An owner handle's actor id -> its name and namespace (asked once per actor).
_owner_names: dict[Any, tuple[str, str | None]] = {}
_owner_names_lock = threading.Lock()
_OWNER_NAMES_MAX = 10_000  # past that the cache starts afresh (it only saves a call)


def _owner_name(owner: Any) -> tuple[str, str | None]:
    """The name and namespace of an owner given as a name or a named actor's handle."""
    if isinstance(owner, str):
        if not owner:
            raise ValueError("owner must name a Ray actor, not ''")
        return owner, None
    if not isinstance(owner, ray.actor.ActorHandle):
        raise TypeError(f"owner must be a named Ray actor (its handle or name), not {owner!r}")

    def who(_: object) -> tuple[str | None, str]:
        context = ray.get_runtime_context()
        return context.get_actor_name(), context.namespace

    actor: Any = owner
    actor_id = actor._actor_id  # Ray's id of the actor, the same in every copy of the handle
    with _owner_names_lock:
        known = _owner_names.get(actor_id)
    if known is not None:
        return known
    named: tuple[str | None, str] = _calls.get(
        actor.__ray_call__.remote(who), timeout=_CALL_TIMEOUT
    )
    name, namespace = named
    if not name:
        raise ValueError(
            "owner must be a named Ray actor (Actor.options(name=...).remote()): a restarted"
            " host finds its owners again by name"
        )
    with _owner_names_lock:
        if len(_owner_names) >= _OWNER_NAMES_MAX:
            _owner_names.clear()
        _owner_names[actor_id] = (name, namespace)
    return name, namespace


class Fleet:
    """Connections spread over ``hosts`` Ray actors by key; a host that dies is restarted.

    Made by [`Fleet.start`][tether.ray.Fleet.start]. Thread-safe: calls
    from several threads are answered one at a time by each actor.
    """

    def __init__(self, name: str, namespace: str | None, registry: Any, hosts: list[Any]) -> None:
        self.name = name
        self.namespace = namespace
        self._registry = registry
        self._hosts = hosts
        self._lock = threading.Lock()
        self._stopped = False

    @classmethod
    def start(
        cls,
        name: str,
        hosts: int,
        *,
        namespace: str | None = None,
        max_restarts: int = -1,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        detached: bool = False,
        host_options: dict[str, Any] | None = None,
    ) -> Fleet:
        """Start a fleet of ``hosts`` host actors on the Ray cluster (after ``ray.init``).

        Args:
            name: the fleet's name; its actors are named after it.
            hosts: how many host actors (each in a worker process of its own).
            namespace: the Ray namespace of its actors (None: the caller's).
            max_restarts: how many times Ray restarts a host whose process
                died (-1: without limit, Ray's own meaning).
            max_in_flight: per host, batches of events sent to owners and
                not yet finished, past which the host waits (and its
                connections stop reading once ``max_queue`` events wait).
            detached: whether the actors outlive the program that started
                them (Ray's ``lifetime="detached"``); then only
                ``Fleet.stop`` ends them.
            host_options: more Ray actor options for the hosts (e.g.
                ``num_cpus``, ``resources``, a ``scheduling_strategy``).

        Raises:
            ValueError: a bad ``hosts``, or a fleet of that name is running.
        """
        host_index("", hosts)  # validates hosts
        if namespace is None:
            namespace = ray.get_runtime_context().namespace
        lifetime = "detached" if detached else None
        registry = (
            ray.remote(Registry)
            .options(name=registry_name(name), namespace=namespace, lifetime=lifetime, num_cpus=0)
            .remote(hosts)
        )
        host_actor: Any = ray.remote(Host)
        actors = [
            host_actor.options(
                name=host_name(name, index),
                namespace=namespace,
                lifetime=lifetime,
                max_restarts=max_restarts,
                # A call that was running when the process died is not run again:
                # the caller gets HostDown (a send is not idempotent).
                max_task_retries=0,
                num_cpus=0,
                **(host_options or {}),
            ).remote(name, namespace, index, max_in_flight)
            for index in range(hosts)
        ]
        _calls.get([actor.pid.remote() for actor in actors], timeout=_CALL_TIMEOUT)
        return cls(name, namespace, registry, actors)

    @property
    def hosts(self) -> int:
        """How many host actors the fleet has."""
        return len(self._hosts)

    def _check(self) -> None:
        if self._stopped:
            raise FleetStopped(f"fleet {self.name!r} was stopped")

    def open(
        self, key: str, host: str, port: int, *, owner: Any, **open_opts: Any
    ) -> FleetConnection:
        """Open a connection on the host that ``key`` places it on; its events go to ``owner``.

        ``owner`` is a named Ray actor (its handle or its name) with a
        method ``on_tether_events(events: list)``. ``open_opts`` are
        [`tether.open`][tether.open]'s options; they must pickle (an
        ``ssl.SSLContext`` does not: hosts make their own connections).

        Raises:
            ValueError: ``key`` is taken, an option is wrong, or ``owner`` has no name.
            TypeError: a wrong type, or options that cannot be pickled.
            FleetStopped: the fleet was stopped.
        """
        self._check()
        index = host_index(key, len(self._hosts))
        owner_name, owner_namespace = _owner_name(owner)
        spec = ConnectionSpec(
            key,
            index,
            host,
            port,
            dict(open_opts),
            owner_name,
            owner_namespace if owner_namespace is not None else self.namespace,
        )
        try:
            added = _calls.get(self._registry.add.remote(spec), timeout=_CALL_TIMEOUT)
        except TypeError as exc:  # Ray could not serialise the spec
            raise TypeError(f"the options of {key!r} cannot be pickled: {exc}") from None
        if not added:
            raise ValueError(f"the key {key!r} is taken in fleet {self.name!r}")
        host_actor = self._hosts[index]
        try:
            ok, error = _calls.get(host_actor.open.remote(spec), timeout=_CALL_TIMEOUT)
        except RayActorError:
            # The host is being restarted: once it is back (it may have opened the
            # spec from the registry already: open is idempotent), ask again.
            _calls.get(host_actor.pid.remote(), timeout=_CALL_TIMEOUT)
            ok, error = _calls.get(host_actor.open.remote(spec), timeout=_CALL_TIMEOUT)
        if not ok:
            _calls.get(self._registry.forget.remote(key), timeout=_CALL_TIMEOUT)
            raise error
        return FleetConnection(self.name, self.namespace, key, index)

    def host_of(self, key: str) -> int:
        """The index of the host that holds (or would hold) ``key``. Thread-safe: pure."""
        return host_index(key, len(self._hosts))

    def host_pid(self, key: str) -> int:
        """The process id of the host holding ``key`` (waits while Ray restarts it)."""
        self._check()
        pid: int = _calls.get(self._hosts[self.host_of(key)].pid.remote(), timeout=_CALL_TIMEOUT)
        return pid

    def host_info(self, index: int) -> HostInfo:
        """A snapshot of host ``index``: pid, connections, batches in flight, events waiting."""
        self._check()
        info: HostInfo = _calls.get(self._hosts[index].info.remote(), timeout=_CALL_TIMEOUT)
        return info

    def keys(self) -> list[str]:
        """Every key the fleet holds (the registry's view)."""
        self._check()
        keys: list[str] = _calls.get(self._registry.keys.remote(), timeout=_CALL_TIMEOUT)
        return keys

    def starts(self) -> list[int]:
        """How many times each host has started (1 each until one is restarted)."""
        self._check()
        starts: list[int] = _calls.get(self._registry.starts.remote(), timeout=_CALL_TIMEOUT)
        return starts

    def stop(self) -> None:
        """Close every connection and end the fleet's actors (for good). Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        try:
            _calls.get([h.stop.remote() for h in self._hosts], timeout=_STOP_TIMEOUT)
        except (RayActorError, ray.exceptions.GetTimeoutError):
            pass  # a host that is dead or stuck: killing its process ends its connections
        finally:
            for actor in [*self._hosts, self._registry]:
                ray.kill(actor, no_restart=True)
