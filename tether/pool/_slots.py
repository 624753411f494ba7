"""A pool's connections, which of them can take a stream now, and callers waiting for one.

One :class:`Slots` per pool, shared by the threads that call the pool (a
checkout), the pool's manager actor (``Up``, ``Down``, a connection that
stopped) and the connections' turns (a pool stream ended: the
``Connection._stream_ended`` hook). Everything is under one lock (rank
``POOL``), held only for bookkeeping: no tether call is made with it
held (a request may run its connection inline, and that connection may
end a stream, which takes this lock).

Capacity, as Gun's ``gun_pool`` counts it: a connection that is up can
take a new stream while the pool's streams on it are fewer than its
limit (:func:`max_streams`): 1 on HTTP/1.1 (idle: nothing in flight), 0
once it speaks Websocket, :data:`HTTP2_STREAMS` on HTTP/2 (the connection
queues past its peer's ``SETTINGS_MAX_CONCURRENT_STREAMS``).

A checkout *reserves* room before the request call and *records* the
stream after it (:meth:`Slots.checkout`, :meth:`Slots.issued`): a stream
that ends before it is recorded (refused at once, in the caller's own
thread) is remembered only while a reservation is open on that slot, so
nothing here grows without bound.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from weakref import WeakKeyDictionary

from tether._errors import NoConnectionAvailable, PoolStopped
from tether._events import ProtocolName, StreamRef
from tether._locks import Rank, new_lock
from tether.actors import Connection

__all__ = ["PoolConnectionInfo", "PoolConnectionState", "PoolInfo", "PoolState", "Slot", "Slots"]


class PoolConnectionState(enum.StrEnum):
    """Where one pooled connection is, as the pool sees it (``PoolConnectionInfo.state``).

    ``DOWN`` (not up yet, or lost and reconnecting: Gun's ``down``), ``UP``,
    ``STOPPED`` (stopped for good: the pool opens a new one in its place,
    unless the pool is stopping).
    """

    DOWN = "down"
    UP = "up"
    STOPPED = "stopped"


class PoolState(enum.StrEnum):
    """A pool's state (``PoolInfo.state``), Gun's ``degraded`` / ``operational``.

    ``DEGRADED``: some connection is not up; ``OPERATIONAL``: all are;
    ``STOPPED``: ``stop()`` was called, or its supervisor gave up.
    """

    DEGRADED = "degraded"
    OPERATIONAL = "operational"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class PoolConnectionInfo:
    """One pooled connection in [`PoolInfo`][tether.PoolInfo].

    Attributes:
        conn: the [`Connection`][tether.Connection] (its own ``info()`` says more).
        state: ``"down"``, ``"up"`` or ``"stopped"``
            ([`PoolConnectionState`][tether.PoolConnectionState]).
        protocol: ``"http"``, ``"http2"`` or ``"ws"`` while up, else None.
        streams: the pool's streams on it that have not ended.
        capacity: how many it can take at once now (1 on HTTP/1.1, 100 on
            HTTP/2; 0 while it speaks Websocket or is not up).
    """

    conn: Connection
    state: PoolConnectionState
    protocol: ProtocolName | None
    streams: int
    capacity: int


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """A snapshot of a pool (Gun's ``gun_pool:info``).

    Attributes:
        state: ``"degraded"``, ``"operational"`` or ``"stopped"``
            ([`PoolState`][tether.PoolState]).
        host: the pool's host.
        port: its port.
        connections: one entry per connection, in slot order.
        reason: why it stopped, if its supervisor gave up (else None).
    """

    state: PoolState
    host: str
    port: int
    connections: tuple[PoolConnectionInfo, ...]
    reason: BaseException | None = None


HTTP2_STREAMS = 100
"""Pool streams an HTTP/2 connection carries at once: RFC 9113's smallest recommended
``SETTINGS_MAX_CONCURRENT_STREAMS``; past the server's own limit the connection queues them."""


def max_streams(protocol: ProtocolName | None, conn: Connection) -> int:
    """How many pool streams a connection speaking ``protocol`` may carry at once.

    Gun's ``max_streams``: HTTP/1.1 one (tether sends a connection's
    requests one after the other: a second would wait behind the first);
    a Websocket none (no HTTP request is possible on it); HTTP/2
    :data:`HTTP2_STREAMS` (its Websockets are streams beside the requests).
    """
    if protocol == "http2":
        return HTTP2_STREAMS
    if protocol != "http" or conn.upgraded:
        return 0
    return 1


class Slot:
    """One connection of the pool and the pool's streams on it. Touched under the lock only."""

    __slots__ = (
        "conn",
        "early",
        "ended",
        "index",
        "protocol",
        "reserved",
        "state",
        "streams",
        "ws",
    )

    def __init__(self, index: int, conn: Connection, ended: Callable[[StreamRef], None]) -> None:
        self.index = index
        self.conn = conn
        self.state = PoolConnectionState.DOWN
        self.protocol: ProtocolName | None = None
        self.streams: set[StreamRef] = set()
        self.reserved = 0  # checkouts between their reservation and their stream
        self.early: set[StreamRef] = set()  # streams that ended before they were recorded
        # Set by a pool ws_upgrade with reupgrade: the connection upgrades
        # again after each reconnect, so it is the Websocket's for good (while
        # upgraded, max_streams says 0 anyway).
        self.ws = False
        self.ended = ended

    def capacity(self) -> int:
        if self.state is not PoolConnectionState.UP or self.ws:
            return 0
        return max_streams(self.protocol, self.conn)

    def free(self) -> bool:
        return len(self.streams) + self.reserved < self.capacity()


class Slots:
    """The shared state of one pool. Thread-safe: every method takes the lock."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._lock = new_lock(Rank.POOL, "pool")
        self._changed = threading.Condition(self._lock)
        self._slots: list[Slot] = []
        self._next = 0  # where the next checkout starts looking (round robin)
        self.stopped = False
        self.reason: BaseException | None = None

    # -- the manager's side ------------------------------------------------------

    def add(self, conn: Connection) -> Slot:
        """A new slot for ``conn`` (at start)."""
        with self._lock:
            slot = Slot(len(self._slots), conn, lambda stream: self._ended(slot, stream))
            self._slots.append(slot)
        conn._stream_ended = slot.ended
        return slot

    def replace(self, old: Connection, new: Connection) -> bool:
        """``new`` takes the place of ``old``, which stopped for good (False if none had it)."""
        with self._lock:
            slot = self._find(old)
            if slot is None or self.stopped:
                return False
            fresh = Slot(slot.index, new, lambda stream: self._ended(fresh, stream))
            self._slots[slot.index] = fresh
        new._stream_ended = fresh.ended
        return True

    def up(self, conn: Connection, protocol: ProtocolName) -> None:
        with self._lock:
            slot = self._find(conn)
            if slot is None:
                return
            slot.state, slot.protocol = PoolConnectionState.UP, protocol
            self._changed.notify_all()  # room for as many as it takes

    def down(self, conn: Connection) -> None:
        """Lost: its streams end with an ``Error`` each (the hook); none is taken until Up."""
        with self._lock:
            slot = self._find(conn)
            if slot is not None:
                slot.state, slot.protocol = PoolConnectionState.DOWN, None

    def stopped_for_good(self, conn: Connection) -> None:
        with self._lock:
            slot = self._find(conn)
            if slot is not None:
                slot.state, slot.protocol = PoolConnectionState.STOPPED, None
                slot.streams.clear()
                slot.early.clear()

    def stop(self, reason: BaseException | None = None) -> list[Connection]:
        """The pool stops: waiting checkouts fail; returns the connections to close."""
        with self._lock:
            if not self.stopped:
                self.stopped, self.reason = True, reason
            self._changed.notify_all()
            return [slot.conn for slot in self._slots]

    def _find(self, conn: Connection) -> Slot | None:
        for slot in self._slots:
            if slot.conn is conn:
                return slot
        return None

    # -- the connections' side (their turns) ---------------------------------------

    def _ended(self, slot: Slot, stream: StreamRef) -> None:
        with self._lock:
            if stream in slot.streams:
                slot.streams.discard(stream)
            elif slot.reserved:
                slot.early.add(stream)  # its checkout records it in a moment
            else:
                return  # not a pool stream (the connection used directly)
            if slot.free():
                self._changed.notify()

    # -- the callers' side ----------------------------------------------------------

    def checkout(self, deadline: float, timeout: float) -> Slot:
        """Reserve room on a connection that is up and has some, waiting until ``deadline``.

        ``deadline`` is a ``time.monotonic()`` value, ``timeout`` the wait it
        stands for (for the message).

        Raises:
            NoConnectionAvailable: none had room by ``deadline``.
            PoolStopped: the pool stopped (also while waiting).
        """
        with self._lock:
            while True:
                if self.stopped:
                    raise PoolStopped(self._stopped_message(), self.reason)
                slot = self._pick()
                if slot is not None:
                    slot.reserved += 1
                    return slot
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoConnectionAvailable(self._none_message(timeout), timeout=timeout)
                self._changed.wait(remaining)

    def _pick(self) -> Slot | None:
        slots = self._slots
        count = len(slots)
        start = self._next
        for offset in range(count):
            slot = slots[(start + offset) % count]
            if slot.free():
                self._next = (slot.index + 1) % count
                return slot
        return None

    def issued(
        self,
        slot: Slot,
        stream: StreamRef | None,
        streams: WeakKeyDictionary[StreamRef, Connection],
        *,
        ws_for_good: bool = False,
    ) -> None:
        """The checkout's request call returned ``stream`` (None: it raised).

        ``streams`` is the pool's table of its live streams' connections
        (written under this lock; read without it: one dict lookup).
        ``ws_for_good``: it was an upgrade that the connection repeats after
        each reconnect (``reupgrade``).
        """
        with self._lock:
            slot.reserved -= 1
            if stream is not None:
                streams[stream] = slot.conn
                if ws_for_good:
                    slot.ws = True
                if stream in slot.early:
                    slot.early.discard(stream)
                elif self._slots[slot.index] is slot:  # not replaced meanwhile
                    slot.streams.add(stream)
            if not slot.reserved:
                slot.early.clear()
            if slot.free():
                self._changed.notify()

    def release(self, slot: Slot, stream: StreamRef) -> None:
        """``stream`` no longer counts (cancelled: its response is read and dropped)."""
        self._ended(slot, stream)

    def slot_of(self, conn: Connection) -> Slot | None:
        with self._lock:
            return self._find(conn)

    # -- reading ----------------------------------------------------------------------

    def info(self) -> PoolInfo:
        with self._lock:
            conns = tuple(
                PoolConnectionInfo(
                    s.conn, s.state, s.protocol, len(s.streams) + s.reserved, s.capacity()
                )
                for s in self._slots
            )
            if self.stopped:
                state = PoolState.STOPPED
            elif all(s.state is PoolConnectionState.UP for s in self._slots):
                state = PoolState.OPERATIONAL
            else:
                state = PoolState.DEGRADED
            return PoolInfo(state, self.host, self.port, conns, self.reason)

    def wait_operational(self, timeout: float) -> bool:
        """Wait until every connection is up (Gun's ``await_up``); False on timeout or stop."""

        def ready() -> bool:
            return self.stopped or all(s.state is PoolConnectionState.UP for s in self._slots)

        with self._lock:
            return self._changed.wait_for(ready, timeout) and not self.stopped

    def _stopped_message(self) -> str:
        why = f": {self.reason!r}" if self.reason is not None else ""
        return f"the pool to {self.host}:{self.port} has stopped{why}"

    def _none_message(self, timeout: float) -> str:
        states = ", ".join(
            f"{s.state.value}" + (f" ({len(s.streams)} stream)" if s.streams else "")
            for s in self._slots
        )
        return (
            f"no connection of the pool to {self.host}:{self.port} could take a stream "
            f"within {timeout} s (connections: {states})"
        )
