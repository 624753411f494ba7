"""One thread per host that carries its connections' events to their owner Ray actors.

Why a thread of its own: a Ray call costs about a millisecond of CPU and
may block (serialising, a full queue, an owner being restarted), and
tether's connection actors run on its I/O thread, which must never wait
on Ray. So every connection of a host has the host's one
[`Inbox`][tether.Inbox] as its owner (events land there as for any
owner, counted against each connection's receive bound), and this thread
takes them out: one ``receive`` for the first, then everything else
waiting, grouped by owner, one ``on_tether_events(batch)`` call per owner.

Bounded: at most ``max_in_flight`` batches (default
[`DEFAULT_MAX_IN_FLIGHT`][tether.ray.DEFAULT_MAX_IN_FLIGHT]) are sent and not
yet finished by their owners; past that the thread waits for the oldest
to finish before it takes more. While it waits, events stay in the
Inbox, and each connection stops reading its socket once ``max_queue``
of its events are untaken (tether's receive bound, ``docs/connection.md``):
a slow owner slows its servers through TCP, it does not grow memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError

from tether._errors import InboxClosedError
from tether.actors import Inbox
from tether.ray import _calls

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "OwnerName", "Sender"]

DEFAULT_MAX_IN_FLIGHT = 16
"""Batches of events a host has sent and its owners have not finished yet, at most.

Change it per fleet with ``Fleet.start(max_in_flight=...)``.
"""
#: How often a waiting sender looks whether its host is stopping, in seconds.
_POLL = 0.5

log = logging.getLogger("tether.ray")

OwnerName = tuple[str, str | None]
"""An owner Ray actor: its name and namespace."""


class Sender:
    """The sender thread of one host. ``start``/``stop`` from the host; the rest is its thread's.

    Args:
        inbox: the owner of every connection of the host.
        route: the owner of an event (``None``: drop it, its connection is forgotten).
        owner_gone: called (in this thread) with an owner that cannot be found
            or has died for good (Ray will not restart it), after which its
            events are dropped.
        max_in_flight: batches sent and not yet finished, at most.
    """

    def __init__(
        self,
        inbox: Inbox,
        route: Callable[[object], OwnerName | None],
        owner_gone: Callable[[OwnerName], None],
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        if isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int):
            raise TypeError(f"max_in_flight must be an int, not {max_in_flight!r}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, not {max_in_flight!r}")
        self._inbox = inbox
        self._route = route
        self._owner_gone = owner_gone
        self._max_in_flight = max_in_flight
        self._actors: dict[OwnerName, Any] = {}
        self._in_flight: dict[Any, OwnerName] = {}  # ObjectRef -> its owner
        self._gone: set[OwnerName] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tether-ray-sender", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    @property
    def in_flight(self) -> int:
        """Batches sent and not yet seen finished (any thread: a snapshot)."""
        return len(self._in_flight)

    def stop(self, timeout: float) -> None:
        """Stop taking events (the Inbox must be closed first) and join the thread."""
        self._stopping.set()
        self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                first = self._inbox.receive(timeout=_POLL)
            except TimeoutError:
                self._reap_finished()  # an owner that died is noticed while idle too
                continue
            except InboxClosedError:
                return
            batches: dict[OwnerName, list[object]] = {}
            for event in [first, *self._inbox.flush()]:
                owner = self._route(event)
                if owner is not None and owner not in self._gone:
                    batches.setdefault(owner, []).append(event)
            for owner, batch in batches.items():
                self._send(owner, batch)
            self._reap_finished()

    def _send(self, owner: OwnerName, batch: list[object]) -> None:
        actor = self._actor(owner)
        if actor is None:
            return
        while len(self._in_flight) >= self._max_in_flight and not self._stopping.is_set():
            self._reap(ray.wait(list(self._in_flight), num_returns=1, timeout=_POLL)[0])
        try:
            ref = actor.on_tether_events.remote(batch)
        except ActorDiedError:
            self._lost(owner)
            return
        self._in_flight[ref] = owner

    def _reap_finished(self) -> None:
        """Reap the batches that have finished, without waiting."""
        if self._in_flight:
            refs = list(self._in_flight)
            self._reap(ray.wait(refs, num_returns=len(refs), timeout=0)[0])

    def _reap(self, done: list[Any]) -> None:
        """Batches that finished: an owner that died is gone; an owner's exception is logged."""
        for ref in done:
            owner = self._in_flight.pop(ref)
            try:
                _calls.get(ref)
            except ActorDiedError:
                self._lost(owner)
            except ActorUnavailableError:
                # Being restarted by Ray (an owner with max_restarts): this batch
                # is lost with the process, as messages in flight are on any restart.
                log.warning("owner %s restarting: a batch of events was lost", owner[0])
            except Exception:
                # The owner's own bug: its actor lives on, as a pykka owner's would.
                log.exception("on_tether_events of %s raised", owner[0])

    def _actor(self, owner: OwnerName) -> Any:
        actor = self._actors.get(owner)
        if actor is None:
            try:
                actor = _calls.actor(owner[0], owner[1])
            except ValueError:
                self._lost(owner)
                return None
            self._actors[owner] = actor
        return actor

    def _lost(self, owner: OwnerName) -> None:
        if owner not in self._gone:
            self._gone.add(owner)
            self._actors.pop(owner, None)
            log.warning("owner %s is gone: its connections close", owner[0])
            self._owner_gone(owner)
