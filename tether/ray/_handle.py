"""The picklable handle of a fleet connection: ``Connection``'s calls, routed to its host.

A [`FleetConnection`][tether.ray.FleetConnection] is a name (fleet,
namespace, key, host index) plus a cached Ray handle of the host actor,
looked up by name on first use in each process (never pickled: a host
restarted by Ray keeps its name). Each call is one Ray call to the host,
answered before it returns (about a millisecond on one machine: see
``docs/fleets.md``), so that it raises what ``Connection``'s would, at
the call. It is also what the host's connection pickles as
(``Connection.set_wire``): the ``conn`` of every event an owner receives
equals the handle ``Fleet.open`` returned.
"""

from __future__ import annotations

import threading
from typing import Any

import ray
from ray.exceptions import RayActorError

from tether._events import StreamRef
from tether.ray import _calls
from tether.ray._errors import HostDown

__all__ = ["FleetConnection", "host_name"]

#: How long a call on a fleet connection waits for its host's answer, in seconds.
CALL_TIMEOUT = 30.0


def host_name(fleet: str, index: int) -> str:
    """The Ray actor name of host ``index`` of ``fleet``."""
    return f"tether.fleet.{fleet}.host.{index}"


class FleetConnection:
    """A connection of a fleet, usable from any process of the Ray cluster.

    Has the calls of [`Connection`][tether.Connection] that need no
    waiting in the owner (no ``await_*``: events go to the owner Ray actor's
    ``on_tether_events``). ``reply_to`` is not offered: every event goes to
    the owner. Equal (and equal-hashing) to every copy of itself, and to an
    event's ``conn`` once pickled. Thread-safe.

    Raises (every call): [`HostDown`][tether.ray.HostDown] when the host is
    dead or restarting; the call's own errors (``UpgradedError``,
    ``NotUpgradedError``, ``ConnectionStoppedError``, ``ValueError``…) as
    ``Connection`` raises them.
    """

    __slots__ = ("_actor", "_lock", "fleet", "index", "key", "namespace")

    def __init__(self, fleet: str, namespace: str | None, key: str, index: int) -> None:
        self.fleet = fleet
        self.namespace = namespace
        self.key = key
        self.index = index
        self._actor: Any = None
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        return (FleetConnection, (self.fleet, self.namespace, self.key, self.index))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FleetConnection):
            return NotImplemented
        return (self.fleet, self.namespace, self.key) == (other.fleet, other.namespace, other.key)

    def __hash__(self) -> int:
        return hash((FleetConnection, self.fleet, self.namespace, self.key))

    def __repr__(self) -> str:
        return f"<tether.ray.FleetConnection {self.fleet}/{self.key} on host {self.index}>"

    # -- routing ----------------------------------------------------------------

    def _host(self) -> Any:
        with self._lock:
            if self._actor is None:
                try:
                    self._actor = _calls.actor(host_name(self.fleet, self.index), self.namespace)
                except ValueError as exc:
                    raise HostDown(self.fleet, self.index, "no such host actor") from exc
            return self._actor

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``Connection.<method>`` in the host; its result, or its error raised here."""
        try:
            done, value = _calls.get(
                self._host().call.remote(self.key, method, args, kwargs), timeout=CALL_TIMEOUT
            )
        except RayActorError as exc:
            raise HostDown(self.fleet, self.index, type(exc).__name__) from None
        except ray.exceptions.GetTimeoutError:
            raise HostDown(self.fleet, self.index, f"no answer in {CALL_TIMEOUT} s") from None
        if not done:
            raise value
        return value

    # -- Connection's calls -------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        headers: Any = None,
        body: bytes | None = None,
        *,
        flow: int | None = None,
    ) -> StreamRef:
        """``Connection.request`` in the host. Thread-safe."""
        stream: StreamRef = self._call("request", method, path, headers, body, flow=flow)
        return stream

    def get(self, path: str, headers: Any = None, *, flow: int | None = None) -> StreamRef:
        """``GET path`` (``Connection.get``). Thread-safe."""
        return self.request("GET", path, headers, flow=flow)

    def head(self, path: str, headers: Any = None, *, flow: int | None = None) -> StreamRef:
        """``HEAD path`` (``Connection.head``). Thread-safe."""
        return self.request("HEAD", path, headers, flow=flow)

    def options(self, path: str, headers: Any = None, *, flow: int | None = None) -> StreamRef:
        """``OPTIONS path`` (``Connection.options``). Thread-safe."""
        return self.request("OPTIONS", path, headers, flow=flow)

    def delete(self, path: str, headers: Any = None, *, flow: int | None = None) -> StreamRef:
        """``DELETE path`` (``Connection.delete``). Thread-safe."""
        return self.request("DELETE", path, headers, flow=flow)

    def post(
        self, path: str, headers: Any = None, body: bytes = b"", *, flow: int | None = None
    ) -> StreamRef:
        """``POST path`` with a body (``Connection.post``). Thread-safe."""
        return self.request("POST", path, headers, body, flow=flow)

    def put(
        self, path: str, headers: Any = None, body: bytes = b"", *, flow: int | None = None
    ) -> StreamRef:
        """``PUT path`` with a body (``Connection.put``). Thread-safe."""
        return self.request("PUT", path, headers, body, flow=flow)

    def patch(
        self, path: str, headers: Any = None, body: bytes = b"", *, flow: int | None = None
    ) -> StreamRef:
        """``PATCH path`` with a body (``Connection.patch``). Thread-safe."""
        return self.request("PATCH", path, headers, body, flow=flow)

    def headers(
        self, method: str, path: str, headers: Any = None, *, flow: int | None = None
    ) -> StreamRef:
        """Start a request whose body follows with ``data`` (``Connection.headers``).

        Thread-safe.
        """
        stream: StreamRef = self._call("headers", method, path, headers, flow=flow)
        return stream

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """Send body data on ``stream`` (``Connection.data``). Thread-safe."""
        self._call("data", stream, fin, data)

    def cancel(self, stream: StreamRef) -> None:
        """Cancel ``stream`` (``Connection.cancel``). Thread-safe."""
        self._call("cancel", stream)

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Give ``stream`` more flow (``Connection.update_flow``). Thread-safe."""
        self._call("update_flow", stream, increment)

    def ws_upgrade(self, path: str, headers: Any = None, opts: Any = None) -> StreamRef:
        """Ask to upgrade to Websocket (``Connection.ws_upgrade``). Thread-safe.

        The fleet keeps the upgrade with the connection: after its host
        restarts, the connection is upgraded again if ``reupgrade`` is set
        (in ``opts`` or the ``ws_opts`` of ``Fleet.open``).
        """
        stream: StreamRef = self._call("ws_upgrade", path, headers, opts)
        return stream

    def ws_send(self, frames: Any, stream: StreamRef | None = None) -> None:
        """Send frames on the Websocket (``Connection.ws_send``). Thread-safe."""
        self._call("ws_send", frames, stream)

    def info(self) -> Any:
        """``Connection.info()`` of the connection in its host. Thread-safe."""
        return self._call("info")

    def is_alive(self) -> bool:
        """``Connection.is_alive()`` in the host (False once it stopped for good). Thread-safe."""
        alive: bool = self._call("is_alive")
        return alive

    def close(self) -> None:
        """Close the connection for good and forget it in the fleet (``Connection.close``).

        Thread-safe.
        """
        self._call("close")

    def shutdown(self) -> None:
        """Shut the connection down gracefully and forget it in the fleet. Thread-safe."""
        self._call("shutdown")
