"""A chaos soak: N tether connections through fault proxies, every message and event accounted.

What :func:`run` does (``bench/chaos.py`` is its command line, ``tests/test_chaos.py``
its tests):

1. Opens and closes one connection (tether's process-wide threads), then
   records the threads (``threading.enumerate``) and file descriptors
   (``/proc/self/fd``) of the process.
2. Starts a third-party server from ``tests/interop`` (aiohttp, uvicorn or
   websockets) on 127.0.0.1, and one :class:`~tests.faults.FaultProxy` in
   front of it per ``group`` connections.
3. Opens the connections through the proxies: half Websocket echo clients
   (``ws_opts`` reupgrade; some with permessage-deflate, some with keepalive
   pings and a pong timeout), half HTTP clients (``GET /`` and ``POST /echo``
   with a random body; some with a response timeout). Their owners are
   Inbox threads (one or two connections each: one lends its socket to the
   thread), coroutines on event loops of their own through AsyncInboxes
   (one or two each: the loop reads their sockets) and pykka actors (two
   connections each). Against ``hypercorn-h2`` they speak HTTP/2 (h2c), and
   against ``hypercorn-tls`` HTTP/2 over TLS (chosen by ALPN): several
   requests on one connection, Websockets over RFC 8441 streams; every
   ``Up`` must name the protocol asked for first.
4. For ``seconds``, every client sends numbered messages (a bounded number
   in flight, at a bounded rate) and checks every echo and response, while a
   seeded schedule injects faults on the proxies: drop, stall then resume,
   delay, cut_after(n), rechunk(n), refuse (with a drop: a server restarting)
   then accept. Clients also close or shut down their connection now and
   then and open a new one ("churn").
5. Lifts every fault, waits until every connection is up and has nothing
   in flight, closes every connection, stops the owners, the proxies and
   the server, and waits (bounded) for the threads and descriptors to come
   back to what they were.

What is checked (a :class:`Violation` for each breach):

- every message a client sent is echoed back exactly, in order on its
  Websocket, or reported lost by an event that names it: a ``Down`` whose
  ``killed_streams``/``unprocessed_streams`` has its stream, an ``Error``
  for its stream (for frames, a ``NotUpgradedError`` listing them), the
  server's close frame on its Websocket (nothing is sent after one), or the
  call that raised; nothing is echoed after it was reported lost;
- a ``Down`` only while up, then an ``Up`` (or nothing more, once the client
  closed); no ``Up`` while up; no connection-wide ``Error`` (the retries
  never run out: ``retry`` is large); a ``Down`` names the open Websocket
  in ``killed_streams`` (one whose server's close frame came first has
  ended: over HTTP/2 its stream is not killed);
- an ``Error`` names only a stream its client knows, or the re-upgrade
  tether repeats (``reupgrade``) when ``shutdown()`` refused it;
- once a connection has stopped (``is_alive()`` False and its actor gone),
  no event of it reaches its owner (a marker the owner posts to itself then
  must be the last thing of that connection it sees); no event of one
  connection reaches another connection's owner;
- no thread or descriptor is left once everything is closed; nothing is
  logged at ERROR by tether or pykka; no thread dies of an exception.

Every wait is bounded; only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import math
import os
import queue
import random
import resource
import socket
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pykka
import trustme

import tether
from tests.faults import FaultProxy
from tests.interop.hypercorn_server import HypercornServer
from tests.interop.servers import SERVERS, LoopServer
from tests.proxies._daemons import Kind, ProxyDaemon
from tether.actors._tls import default_context

__all__ = ["FAULTS", "SOAK_SERVERS", "Report", "SoakConfig", "Violation", "run"]

HOST = "127.0.0.1"
TICK = 0.05  # seconds between an owner's send turns
FAULTS = ("drop", "stall", "delay", "cut_after", "rechunk", "refuse")
RETRY = 1000  # reconnect attempts: the soak's faults never use them up
STOP_WAIT = 10.0  # bound on each wait for something to stop
LEAK_WAIT = 10.0  # bound on the wait for threads and descriptors to come back
# How long connections may outlive their owner: tether checks an idle one's
# owner every 2 s (OWNER_CHECK_INTERVAL), a busy one notices at its next tell.
OWNER_GONE_WAIT = 5.0
MAX_DETAILS = 20  # violations kept in full per kind (all are counted)


@dataclass(frozen=True)
class _SoakServer:
    """A server a soak can run against, and how its clients speak to it."""

    server: type[LoopServer]
    protocols: tuple[str, ...]
    tls: bool = False  # TLS (its own CA, the protocol chosen by ALPN)

    def start(self, tmp: Path) -> tuple[LoopServer, dict[str, Any]]:
        """The server, started, and the options its clients need (TLS: ``tmp`` keeps its cert)."""
        if not self.tls:
            return self.server().start(), {"protocols": self.protocols}
        ca = trustme.CA()
        context = default_context(self.protocols)  # tether's, offering them by ALPN
        ca.configure_trust(context)
        options = {"protocols": self.protocols, "transport": "tls", "tls_context": context}
        return self.server(ca, tmp).start(), options  # type: ignore[call-arg]


# The interop suite's servers over HTTP/1.1, and hypercorn over HTTP/2: with
# prior knowledge (h2c), and over TLS (h2 chosen by ALPN); and over TLS with
# HTTP/1.1 (wss://). Over HTTP/2 its Websockets are RFC 8441 streams and
# several requests share a connection.
SOAK_SERVERS: dict[str, _SoakServer] = {
    **{name: _SoakServer(server, ("http",)) for name, server in SERVERS.items()},
    "hypercorn-h2": _SoakServer(HypercornServer, ("http2",)),
    "hypercorn-tls": _SoakServer(HypercornServer, ("http2", "http"), tls=True),
    "hypercorn-tls-http1": _SoakServer(HypercornServer, ("http",), tls=True),
}


@dataclass(frozen=True)
class SoakConfig:
    """What to run. The defaults finish in about a minute."""

    conns: int = 40
    seconds: float = 45.0
    server: str = "aiohttp"
    seed: int | None = None
    group: int = 10  # connections per fault proxy
    actor_share: float = 0.25  # part of the connections owned by pykka actors
    async_share: float = 0.25  # part owned by coroutines through AsyncInboxes
    via: str | None = None  # a tests/proxies Kind ("tinyproxy"...): every connection through it
    rate: float = 10.0  # messages (requests) per second per connection, at most
    window: int = 4  # messages in flight per Websocket (HTTP: 2 requests)
    fault_interval: float = 3.0  # mean seconds between two faults on one proxy
    churn: float = 30.0  # mean seconds between a client's close/reopen (0: never)
    owner_churn: float = 0.0  # mean s between an Inbox or AsyncInbox owner's deaths (0: never)
    drain: float = 30.0  # bound on the wait for every connection to settle
    progress: Callable[[str], None] | None = None  # called with a line every ~10 s


@dataclass(frozen=True)
class Violation:
    """One breach of what tether promises."""

    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


@dataclass
class Report:
    """What a soak did and saw."""

    config: SoakConfig
    seed: int
    duration: float = 0.0
    clients: collections.Counter[str] = field(default_factory=collections.Counter)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    down_reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: collections.Counter[str] = field(default_factory=collections.Counter)
    details: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_rss: int = 0
    threads: tuple[int, int] = (0, 0)
    fds: tuple[int, int] = (0, 0)
    reconnect: tuple[float, float] = (0.0, 0.0)  # mean and max seconds from Down to Up

    @property
    def ok(self) -> bool:
        return not self.violations

    def format(self) -> str:
        c, cfg = self.counts, self.config
        lost_ws = c["ws_lost_down"] + c["ws_lost_close"] + c["ws_lost_error"]
        lost_ws += c["ws_lost_raised"]
        lost_http = c["http_lost_down"] + c["http_lost_error"] + c["http_lost_raised"]
        lines = [
            f"chaos soak: server {cfg.server}, seed {self.seed}, {cfg.conns} connections "
            f"({self.clients['ws']} ws, {self.clients['http']} http; owners: "
            f"{self.clients['inbox']} on Inbox threads, {self.clients['actor']} on actors, "
            f"{self.clients['asyncio']} on event loops), "
            f"{math.ceil(cfg.conns / cfg.group)} proxies, faults for {cfg.seconds:.0f} s, "
            f"{self.duration:.1f} s in all",
            f"  ws messages:   {c['ws_sent']} sent, {c['ws_echoed']} echoed, {lost_ws} reported "
            f"lost (Down {c['ws_lost_down']}, the server's close {c['ws_lost_close']}, "
            f"Error {c['ws_lost_error']}, raised at the call "
            f"{c['ws_lost_raised']}); {c['ws_reported_twice']} reported twice"
            + (f"; {c['ws_abandoned']} abandoned with their owner" if c["owner_deaths"] else ""),
            f"  http requests: {c['http_sent']} sent, {c['http_answered']} answered, "
            f"{lost_http} reported lost (Down {c['http_lost_down']}, Error "
            f"{c['http_lost_error']}, raised at the call {c['http_lost_raised']})"
            + (f"; {c['http_abandoned']} abandoned with their owner" if c["owner_deaths"] else ""),
            f"  faults: {_counter(self.faults)}; connections cut by drops "
            f"{self.faults['links cut']}",
            f"  Ups {c['ups']}, Downs {c['downs']} ({_counter(self.down_reasons)}), upgrades "
            f"{c['upgrades']}, closes/reopens {c['churn']} (shutdown {c['churn_shutdown']}), "
            f"Down to Up mean {self.reconnect[0] * 1000:.0f} ms, max "
            f"{self.reconnect[1] * 1000:.0f} ms"
            + (f"; owners gone {c['owner_deaths']}" if c["owner_deaths"] else "")
            + (
                f"; re-upgrades refused by a shutdown {c['reupgrades_refused']}"
                if c["reupgrades_refused"]
                else ""
            ),
            f"  max RSS {self.max_rss / 2**20:.0f} MiB; threads {self.threads[0]} before, "
            f"{self.threads[1]} after; fds {self.fds[0]} before, {self.fds[1]} after",
        ]
        if c["after_final_down"]:
            lines.append(
                f"  note: {c['after_final_down']} event(s) came after a close()'s "
                "Down(ClosedByUser) (Errors for the sends it overtook)"
            )
        lines += [f"  note: {note}" for note in self.notes]
        if self.ok:
            lines.append("  violations: none")
        else:
            lines.append(f"  VIOLATIONS: {_counter(self.violations)}")
            lines += [f"    {v}" for v in self.details]
        return "\n".join(lines)


def _counter(counter: collections.Counter[str]) -> str:
    items = [(k, v) for k, v in sorted(counter.items()) if v and k != "links cut"]
    return ", ".join(f"{k} {v}" for k, v in items) or "none"


class _Phase:
    RUN = "run"
    DRAIN = "drain"
    CLOSE = "close"


@dataclass(frozen=True)
class _Stopped:
    """Posted by an owner to itself once ``conn`` has stopped: nothing of it may follow."""

    conn: tether.Connection


_TICK_MSG = object()
_QUIT = object()


class _Soak:
    """The shared state of one run: configuration, phase, violations."""

    def __init__(self, config: SoakConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.phase = _Phase.RUN
        self.post = "POST /echo" if config.server != "websockets" else None
        self.client_options: dict[str, Any] = {}  # the server's (protocols, TLS)
        self.server_port = 0  # where the connections go through a real proxy (``via``)
        self.via_scheme = ""  # that proxy's URL scheme (http, socks5)
        self._lock = threading.Lock()
        self.violations: collections.Counter[str] = collections.Counter()
        self.details: list[Violation] = []
        self.hard_deadline = time.monotonic() + config.seconds + config.drain + 4 * STOP_WAIT + 30

    def violation(self, kind: str, detail: str) -> None:
        with self._lock:
            self.violations[kind] += 1
            if self.violations[kind] <= MAX_DETAILS:
                self.details.append(Violation(kind, detail))


# -- clients -----------------------------------------------------------------------------


def fully_stopped(conn: tether.Connection) -> bool:
    """Stopped for good and its actor gone: every event it will tell has been told.

    The handle is marked stopped just before a final ``Error`` is told (see
    ``Connection._take``), so ``is_alive()`` alone is not enough.
    """
    if conn.is_alive():
        return False
    ref = conn._ref
    return ref is None or ref.actor_stopped.is_set()


class _Client:
    """One connection slot: opens a connection, drives it, accounts for everything."""

    kind = "?"

    def __init__(self, soak: _Soak, index: int, port: int, rng: random.Random) -> None:
        self.soak = soak
        self.index = index
        self.port = port
        self.rng = rng
        self.n: collections.Counter[str] = collections.Counter()
        self.down_reasons: collections.Counter[str] = collections.Counter()
        self.reconnects: list[float] = []
        self.owner: _Owner | None = None
        self.conn: tether.Connection | None = None
        self.done = False
        self.in_flight = 0  # read by the controller's settle check
        self.tokens = 0.0
        self.last_tick = time.monotonic()
        self.variant = rng.random()  # which options (see options())
        self.pressure = rng.random()  # which backpressure options (see base_options())
        self.window = soak.config.window * (4 if self.pressure > 0.9 else 1)
        self._reset()

    def _reset(self) -> None:
        """State of one connection (handle); a reopen starts afresh."""
        self.phase = "connecting"  # connecting, up, down, closed
        self.closing: str | None = None  # "close" or "shutdown" once asked
        self.final = False
        self.stop_posted = False
        self.down_at: float | None = None
        churn = self.soak.config.churn
        self.churn_at = time.monotonic() + (self.rng.expovariate(1 / churn) if churn else math.inf)

    def where(self) -> str:
        owner = self.owner.kind if self.owner is not None else "?"
        return f"conn {self.index} ({self.kind}, {owner} owner)"

    def violation(self, kind: str, detail: str) -> None:
        self.soak.violation(kind, f"{self.where()}: {detail}")

    def base_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {
            **self.soak.client_options,
            "retry": RETRY,
            "retry_backoff": tether.ExponentialBackoff(base=0.05, cap=1.0),
            "connect_timeout": 5.0,
        }
        if self.pressure < 0.2:  # a small receive bound: reading pauses often
            options.update(max_queue=4, max_queue_bytes=32 * 1024)
        elif self.pressure < 0.35:  # a small send buffer: senders wait, a stall times out
            options.update(send_buffer=16 * 1024, send_timeout=2.0)
        return options

    def options(self) -> dict[str, Any]:
        raise NotImplementedError

    def open(self, owner: _Owner) -> None:
        self.owner = owner
        via = self.soak.config.via
        if via is None:  # straight to its fault proxy, which forwards to the server
            self.conn = tether.open(HOST, self.port, owner=owner.ref, **self.options())
        else:  # to the server, through the real proxy behind its fault proxy
            proxy = f"{self.soak.via_scheme}://{HOST}:{self.port}"
            options = {**self.options(), "proxy": proxy}
            self.conn = tether.open(HOST, self.soak.server_port, owner=owner.ref, **options)
        owner.by_conn[self.conn] = self
        self.n["opened"] += 1

    # -- events ----------------------------------------------------------------------

    def on_event(self, event: object) -> None:
        self.n["events"] += 1
        if self.phase == "closed":
            # After Down(ClosedByUser), which docs/connection.md calls the last event.
            self.n["after_final_down"] += 1
        match event:
            case tether.Up(protocol=protocol):
                self._on_up(protocol)
            case tether.Down():
                self._on_down(event)
            case tether.Error(stream=None, reason=reason):
                self.violation("connection error", f"Error(conn, None, {reason!r})")
            case _:
                self.on_stream_event(event)

    def _on_up(self, protocol: str) -> None:
        wanted = self.soak.client_options["protocols"][0]  # every server speaks the first
        if protocol != wanted:
            self.violation("wrong protocol", f"Up says {protocol!r}, not {wanted!r}")
        if self.phase == "up":
            self.violation("Up while up", "a second Up without a Down between")
        elif self.phase == "closed":
            self.violation("Up after the final Down", "an Up after Down(ClosedByUser)")
        if self.down_at is not None:
            self.reconnects.append(time.monotonic() - self.down_at)
            self.down_at = None
        self.phase = "up"
        self.n["ups"] += 1
        self.on_up()

    def _on_down(self, down: tether.Down) -> None:
        if self.phase != "up":
            self.violation("Down while not up", f"Down({down.reason!r}) in phase {self.phase}")
        self.n["downs"] += 1
        self.down_reasons[type(down.reason).__name__] += 1
        # After shutdown() any Down may be the last (a loss while closing ends it too).
        final = isinstance(down.reason, tether.ClosedByUser)
        if final and self.closing is None:
            self.violation("unasked close", f"Down({down.reason!r}) without close()")
        self.phase = "closed" if final else "down"
        self.down_at = None if final else time.monotonic()
        self.on_down(down)

    def on_up(self) -> None:
        pass

    def on_down(self, down: tether.Down) -> None:
        raise NotImplementedError

    def on_stream_event(self, event: object) -> None:
        raise NotImplementedError

    # -- turns (the owner's thread) -----------------------------------------------

    def tick(self, now: float) -> None:
        conn = self.conn
        if self.done or conn is None:
            return
        if self.closing is None and not conn.is_alive():
            self.violation("stopped by itself", "the connection stopped without close()")
            self.closing = "close"
            self.final = self.soak.phase != _Phase.RUN
        if self.closing is not None:
            if not self.stop_posted and fully_stopped(conn):
                self.stop_posted = True
                assert self.owner is not None
                self.owner.post(_Stopped(conn))
            return
        phase = self.soak.phase
        if phase == _Phase.CLOSE:
            self._close(final=True)
            return
        if phase == _Phase.RUN and now >= self.churn_at and self.phase == "up":
            self._close(final=False)
            return
        self.tokens = min(
            self.tokens + (now - self.last_tick) * self.soak.config.rate, float(self.window)
        )
        self.last_tick = now
        if phase == _Phase.RUN:
            self.send()

    def _close(self, final: bool) -> None:
        assert self.conn is not None
        how = "close" if final or self.rng.random() < 0.5 else "shutdown"
        self.closing, self.final = how, final
        if not final:
            self.n["churn"] += 1
            self.n["churn_shutdown"] += how == "shutdown"
        with contextlib.suppress(tether.ConnectionStoppedError):
            getattr(self.conn, how)()

    def on_stopped(self, conn: tether.Connection) -> None:
        """The owner's marker for ``conn``: everything of it was seen; account, then reopen."""
        self.account_stopped()
        assert self.owner is not None
        # Forgotten (so that the soak keeps no stopped connection alive), but
        # remembered weakly: an event that still holds it names it.
        del self.owner.by_conn[conn]
        self.owner.sealed.add(conn)
        if self.phase == "up":
            self.violation("no final Down", "stopped while up without a Down")
        if self.final or self.soak.phase != _Phase.RUN:
            self.done = True
            return
        self._reset()
        self.open(self.owner)

    def account_stopped(self) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """The owner went away: what was in flight will never be accounted for; start afresh."""
        self.n[f"{self.kind}_abandoned"] += self.in_flight
        self._reset()

    def send(self) -> None:
        raise NotImplementedError

    def settled(self) -> bool:
        raise NotImplementedError


@dataclass
class _Sent:
    seq: int
    data: str | bytes


class _WsClient(_Client):
    """A Websocket echo client: numbered messages, each echo checked in order."""

    kind = "ws"

    def _reset(self) -> None:
        super()._reset()
        self.ws_stream: tether.StreamRef | None = None
        self.upgrade_req: tether.StreamRef | None = None
        self.ever_upgraded = False
        self.out: dict[tether.StreamRef, collections.deque[_Sent]] = {}
        self.streams: set[tether.StreamRef] = set()  # every Websocket stream seen
        self.dead: set[tether.StreamRef] = set()  # streams a Down or an Error ended
        self.lost: set[int] = set()  # seqs reported lost
        self.seq = 0
        self.in_flight = 0

    def options(self) -> dict[str, Any]:
        ws: dict[str, Any] = {"reupgrade": True, "closing_timeout": 3.0}
        if self.variant < 0.5:
            ws["compress"] = True
        if self.variant < 0.25 or self.variant > 0.75:
            ws["keepalive"] = 1.5
            ws["pong_timeout"] = 2.0
        if 0.4 < self.variant < 0.6:
            ws["upgrade_timeout"] = 5.0
        # An upgrade in flight at a shutdown is a request: http_opts' bound.
        http = {"closing_timeout": 3.0}
        return {**self.base_options(), "ws_opts": ws, "http_opts": http}

    def on_up(self) -> None:
        if self.closing is None and not self.ever_upgraded and self.upgrade_req is None:
            assert self.conn is not None
            with contextlib.suppress(tether.ConnectionStoppedError):
                self.upgrade_req = self.conn.ws_upgrade("/websocket")

    def _payload(self, seq: int) -> str | bytes:
        head = f"{self.index}.{seq}|"
        roll = self.rng.random()
        if roll < 0.01:
            return head.encode() + self.rng.randbytes(self.rng.randint(65536, 200_000))
        if roll < 0.1:
            return head.encode() + self.rng.randbytes(self.rng.randint(0, 16384))
        size = self.rng.randint(0, 300)
        return head + "".join(self.rng.choices("abcxyz 0123456789é✓𝄞", k=size))

    def _seq_of(self, data: str | bytes) -> tuple[int, int] | None:
        head = data.split("|" if isinstance(data, str) else b"|", 1)[0]
        text = head if isinstance(head, str) else head.decode("latin-1")
        index, _, seq = text.partition(".")
        if not (index.isdigit() and seq.isdigit()):
            return None
        return int(index), int(seq)

    def send(self) -> None:
        stream = self.ws_stream
        if stream is None or self.conn is None:
            return
        queue = self.out[stream]
        while self.tokens >= 1 and len(queue) < self.window:
            count = 1 if self.rng.random() < 0.8 else self.rng.randint(2, 3)
            count = min(count, self.window - len(queue))
            batch = []
            for _ in range(count):
                self.seq += 1
                batch.append(_Sent(self.seq, self._payload(self.seq)))
            queue.extend(batch)
            self.in_flight += len(batch)
            self.tokens -= len(batch)
            self.n["ws_sent"] += len(batch)
            frames = [
                tether.Text(s.data) if isinstance(s.data, str) else tether.Binary(s.data)
                for s in batch
            ]
            try:
                self.conn.ws_send(frames if len(frames) > 1 else frames[0], stream=stream)
            except (tether.NotUpgradedError, tether.SendTimeout, tether.ConnectionStoppedError):
                for sent in batch:
                    queue.remove(sent)
                    self.lost.add(sent.seq)
                self.in_flight -= len(batch)
                self.n["ws_lost_raised"] += len(batch)
                return

    def on_stream_event(self, event: object) -> None:
        match event:
            case tether.Upgrade(stream=stream):
                self._on_upgrade(stream)
            case tether.Ws(stream=stream, frame=frame):
                self._on_ws(stream, frame)
            case tether.Error(stream=stream, reason=reason):
                assert stream is not None
                self._on_error(stream, reason)
            case tether.Response(stream=stream) if stream is self.upgrade_req:
                self.violation("upgrade refused", f"{event!r}")
            case _:
                self.violation("unexpected event", f"{event!r}")

    def _on_upgrade(self, stream: tether.StreamRef) -> None:
        if stream in self.streams:
            self.violation("Upgrade twice", f"a second Upgrade for {stream!r}")
        if self.ws_stream is not None:
            self.violation("Upgrade while upgraded", f"{stream!r} while {self.ws_stream!r} is up")
        if self.phase != "up":
            self.violation("Upgrade while not up", f"{stream!r} in phase {self.phase}")
        if stream is self.upgrade_req:
            self.upgrade_req = None
        self.streams.add(stream)
        self.ws_stream = stream
        self.ever_upgraded = True
        self.out[stream] = collections.deque()
        self.n["upgrades"] += 1

    def _on_ws(self, stream: tether.StreamRef, frame: tether.Frame) -> None:
        if stream is not self.ws_stream:
            what = "after the event that ended it" if stream in self.dead else "unknown"
            self.violation("Ws on a dead stream", f"{frame!r} on {stream!r}, {what}")
            return
        if not isinstance(frame, tether.Text | tether.Binary):
            self.n[f"ws_{type(frame).__name__.lower()}"] += 1  # a server close, a ping
            if isinstance(frame, tether.Close):
                # The server's close frame (its own, or its answer to one a
                # shutdown sent): it sends nothing after it (RFC 6455 5.5.1), so
                # what is still in flight will never be echoed, and this event,
                # which names the stream, says so. Over HTTP/2 the Websocket's
                # stream then ends by itself: the Down that may follow need not
                # name it (Gun's: a stream that ended is not killed).
                self._lose(stream, "ws_lost_close")
                self.ws_stream = None
            return
        queue = self.out[stream]
        if queue and queue[0].data == frame.data:
            queue.popleft()
            self.in_flight -= 1
            self.n["ws_echoed"] += 1
            return
        ids = self._seq_of(frame.data)
        if ids is None or ids[0] != self.index:
            self.violation("foreign echo", f"an echo that is not this client's: {ids}")
            return
        seq = ids[1]
        position = next((i for i, s in enumerate(queue) if s.seq == seq), None)
        if position is not None:
            skipped = [queue.popleft().seq for _ in range(position)]
            queue.popleft()
            self.in_flight -= position + 1
            self.n["ws_echoed"] += 1
            self.n["ws_skipped"] += position
            self.violation("echo out of order", f"seq {seq} came before {skipped} (never seen)")
        elif seq in self.lost:
            self.violation("echo after lost", f"seq {seq} echoed after it was reported lost")
        else:
            self.violation("bad echo", f"seq {seq}: not in flight, or its content differs")

    def _lose(self, stream: tether.StreamRef, counter: str) -> None:
        queue = self.out.pop(stream, None)
        if queue:
            self.n[counter] += len(queue)
            self.in_flight -= len(queue)
            self.lost.update(s.seq for s in queue)
        self.dead.add(stream)

    def _on_error(self, stream: tether.StreamRef, reason: BaseException) -> None:
        if stream is self.upgrade_req:
            self.upgrade_req = None
            self.n["upgrade_errors"] += 1
            return
        if stream not in self.streams:
            if self.closing == "shutdown" and isinstance(reason, tether.ClosedByUser):
                # The upgrade reupgrade repeats after a reconnect (a stream the
                # owner learns at its Upgrade), still queued when shutdown() came:
                # over HTTP/2 before the server's SETTINGS, it is never sent.
                self.n["reupgrades_refused"] += 1
                return
            self.violation("Error for an unknown stream", f"{stream!r}: {reason!r}")
            return
        if not isinstance(reason, tether.NotUpgradedError):
            # The Websocket failed: what it carried is lost (a Down follows).
            self._lose(stream, "ws_lost_error")
            if stream is self.ws_stream:
                self.ws_stream = None
            return
        queue = self.out.get(stream, collections.deque())
        for frame in reason.frames:
            data = getattr(frame, "data", None)
            ids = self._seq_of(data) if isinstance(data, str | bytes) else None
            if ids is None or ids[0] != self.index:
                self.violation("Error names a foreign frame", f"{frame!r}")
                continue
            sent = next((s for s in queue if s.seq == ids[1]), None)
            if sent is not None:
                queue.remove(sent)
                self.in_flight -= 1
                self.lost.add(sent.seq)
                self.n["ws_lost_error"] += 1
            elif ids[1] in self.lost:
                self.n["ws_reported_twice"] += 1
            else:
                self.violation("Error names a frame not in flight", f"seq {ids[1]}: {reason!r}")

    def on_down(self, down: tether.Down) -> None:
        named = set(down.killed_streams) | set(down.unprocessed_streams)
        if self.ws_stream is not None and self.ws_stream not in down.killed_streams:
            self.violation(
                "Down misses the Websocket",
                f"{self.ws_stream!r} not in {down.killed_streams} ({down.reason!r})",
            )
        if self.upgrade_req is not None and self.upgrade_req in named:
            self.upgrade_req = None
        for stream in named:
            if stream in self.out or stream in self.streams:
                self._lose(stream, "ws_lost_down")
        self.ws_stream = None
        if down.protocol == "ws" and not named & self.streams:
            self.violation("Down names no Websocket", f"protocol ws, streams {named}")

    def account_stopped(self) -> None:
        left = sum(len(q) for q in self.out.values())
        if left:
            seqs = [s.seq for q in self.out.values() for s in q][:10]
            self.violation("unaccounted", f"{left} message(s) neither echoed nor lost: {seqs}")
        if self.upgrade_req is not None:
            self.violation("unaccounted upgrade", f"{self.upgrade_req!r} never answered")

    def settled(self) -> bool:
        return self.done or (
            self.phase == "up" and self.ws_stream is not None and self.in_flight == 0
        )


@dataclass
class _Request:
    seq: int
    expect: bytes
    status: int | None = None
    chunks: list[bytes] = field(default_factory=list)


class _HttpClient(_Client):
    """An HTTP client: ``GET /`` and ``POST /echo``, each answer checked."""

    kind = "http"

    def _reset(self) -> None:
        super()._reset()
        self.reqs: dict[tether.StreamRef, _Request] = {}
        self.finished: set[tether.StreamRef] = set()
        self.lost: set[tether.StreamRef] = set()
        self.seq = 0
        self.in_flight = 0

    def options(self) -> dict[str, Any]:
        http: dict[str, Any] = {"closing_timeout": 3.0}
        if self.variant < 0.5:
            http["response_timeout"] = 4.0
        return {**self.base_options(), "http_opts": http}

    def send(self) -> None:
        conn = self.conn
        # websockets closes the connection after each answer: one at a time there.
        window = 2 if self.soak.post is not None else 1
        while conn is not None and self.tokens >= 1 and len(self.reqs) < window:
            self.seq += 1
            self.tokens -= 1
            try:
                if self.soak.post is not None and self.rng.random() < 0.6:
                    size = self.rng.randint(0, 2000)
                    if self.rng.random() < 0.05:
                        size = self.rng.randint(10_000, 100_000)
                    body = f"{self.index}.{self.seq}|".encode() + self.rng.randbytes(size)
                    stream = conn.request("POST", "/echo", [("content-type", "x/y")], body)
                    expect = body
                else:
                    stream = conn.get("/")
                    expect = b"hello"
            except (tether.SendTimeout, tether.ConnectionStoppedError):
                self.n["http_sent"] += 1
                self.n["http_lost_raised"] += 1
                return
            self.n["http_sent"] += 1
            self.reqs[stream] = _Request(self.seq, expect)
            self.in_flight += 1

    def _end(self, stream: tether.StreamRef, counter: str) -> None:
        self.reqs.pop(stream)
        self.in_flight -= 1
        self.n[counter] += 1
        (self.finished if counter == "http_answered" else self.lost).add(stream)

    def on_stream_event(self, event: object) -> None:
        stream = getattr(event, "stream", None)
        req = self.reqs.get(stream) if isinstance(stream, tether.StreamRef) else None
        if req is None:
            assert isinstance(stream, tether.StreamRef)
            what = (
                "answered"
                if stream in self.finished
                else "reported lost"
                if stream in self.lost
                else "unknown"
            )
            self.violation("event for a dead stream", f"{event!r} for a stream {what}")
            return
        match event:
            case tether.Response(fin=fin, status=status):
                if req.status is not None:
                    self.violation("two responses", f"{event!r}")
                req.status = status
                if status != 200:
                    self.violation("bad status", f"{status} for request {req.seq}")
                if fin:
                    self._complete(stream, req)
            case tether.Data(fin=fin, data=data):
                if req.status is None:
                    self.violation("Data before Response", f"{event!r}")
                req.chunks.append(data)
                if fin:
                    self._complete(stream, req)
            case tether.Error(reason=reason):
                self._end(stream, "http_lost_error")
                self.n[f"http_error_{type(reason).__name__}"] += 1
            case _:
                self.violation("unexpected event", f"{event!r}")

    def _complete(self, stream: tether.StreamRef, req: _Request) -> None:
        body = b"".join(req.chunks)
        if body != req.expect:
            self.violation(
                "bad body", f"request {req.seq}: {len(body)} bytes, {len(req.expect)} expected"
            )
        self._end(stream, "http_answered")

    def on_down(self, down: tether.Down) -> None:
        for stream in (*down.killed_streams, *down.unprocessed_streams):
            if stream in self.reqs:
                self._end(stream, "http_lost_down")
            elif stream in self.lost:
                self.n["http_reported_twice"] += 1
            elif stream in self.finished:
                self.violation("Down names an answered stream", f"{stream!r}")
            else:
                self.violation("Down names an unknown stream", f"{stream!r}")

    def account_stopped(self) -> None:
        if self.reqs:
            seqs = [r.seq for r in self.reqs.values()][:10]
            self.violation(
                "unaccounted", f"{len(self.reqs)} request(s) neither answered nor lost: {seqs}"
            )

    def settled(self) -> bool:
        return self.done or (self.phase == "up" and self.in_flight == 0)


# -- owners --------------------------------------------------------------------------------


class _Owner:
    """What an owner does with what it receives; the Inbox thread or the actor calls it."""

    kind = "?"

    def __init__(self, soak: _Soak, clients: list[_Client], rng: random.Random) -> None:
        self.soak = soak
        self.clients = clients
        self.rng = rng
        # A slow owner now and then takes its time over a turn: its connections'
        # events pile up (the receive bound pauses their reads).
        self.slow = rng.random() < 0.2
        self.by_conn: dict[tether.Connection, _Client] = {}
        self.sealed: weakref.WeakSet[tether.Connection] = weakref.WeakSet()
        self.ref: Any = None  # what connections tell (an Inbox or an ActorRef)
        self.tick_pending = False
        self.deaths = 0

    def post(self, message: object) -> None:
        self.ref.tell(message)

    def start(self) -> None:
        raise NotImplementedError

    def quit(self) -> None:
        raise NotImplementedError

    def open_all(self) -> None:
        for client in self.clients:
            client.open(self)

    def handle(self, message: object) -> None:
        try:
            self._handle(message)
        except Exception:
            self.soak.violation("harness error", traceback.format_exc(limit=6))

    def _handle(self, message: object) -> None:
        if isinstance(message, _Stopped):
            self.by_conn[message.conn].on_stopped(message.conn)
            return
        conn = getattr(message, "conn", None)
        if isinstance(conn, tether.Connection) and conn in self.sealed:
            self.soak.violation("event after stop", f"{self.kind} owner got {message!r}")
            return
        client = self.by_conn.get(conn) if isinstance(conn, tether.Connection) else None
        if client is None:
            self.soak.violation("event to another owner", f"{self.kind} owner got {message!r}")
            return
        client.on_event(message)

    def tick(self) -> None:
        self.tick_pending = False
        if self.slow and self.soak.phase == _Phase.RUN and self.rng.random() < 0.05:
            time.sleep(self.rng.uniform(0.05, 0.5))
        now = time.monotonic()
        for client in self.clients:
            try:
                client.tick(now)
            except Exception:
                self.soak.violation("harness error", traceback.format_exc(limit=6))

    @property
    def done(self) -> bool:
        return all(c.done for c in self.clients)


class _ThreadOwner(_Owner):
    """An owner that runs on a thread of its own, receiving and ticking in turn.

    Its receive loop is :class:`_InboxOwner`'s or :class:`_AsyncOwner`'s;
    what it does with each turn, and its deaths (``owner_churn``), are here.
    """

    inbox: tether.Inbox | tether.AsyncInbox

    def __init__(
        self, soak: _Soak, clients: list[_Client], index: int, rng: random.Random
    ) -> None:
        super().__init__(soak, clients, rng)
        self.thread = threading.Thread(
            target=self._run, name=f"chaos-{self.kind}-{index}", daemon=True
        )
        self._mean_life = soak.config.owner_churn
        self._dies_at = math.inf
        self._next_tick = 0.0

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def _started(self) -> bool:
        """Open its connections on its own thread; False if that failed (a violation)."""
        try:
            self.open_all()
        except Exception:
            self.soak.violation("harness error", traceback.format_exc(limit=6))
            return False
        now = time.monotonic()
        self._next_tick = now
        self._dies_at = now + self._life()
        return True

    def _life(self) -> float:
        return self.rng.expovariate(1 / self._mean_life) if self._mean_life else math.inf

    def _wait(self) -> float | None:
        """Before a receive: die if due; how long the receive may wait (None: stop, too late)."""
        now = time.monotonic()
        if now >= self.soak.hard_deadline:
            self.soak.violation("hang", f"{self.thread.name} still running at the hard deadline")
            return None
        if now >= self._dies_at and self.soak.phase == _Phase.RUN:
            self._die()
            self._dies_at = time.monotonic() + self._life()
        return max(self._next_tick - time.monotonic(), 0.0)

    def _turn(self, message: object) -> bool:
        """What a receive gave (None: nothing in time), then a tick if due; False to quit."""
        if message is _QUIT:
            return False
        if message is not None:
            self.handle(message)
        if time.monotonic() >= self._next_tick:
            self.tick()
            self._next_tick = time.monotonic() + TICK
        return True

    def _new_inbox(self) -> None:
        raise NotImplementedError

    def _die(self) -> None:
        """The owner goes away without closing its connections: they must stop by themselves.

        Then it comes back as a new owner (a new inbox) with new connections.
        """
        self.inbox.close()
        conns = {c.conn: c.kind for c in self.clients if c.conn is not None}
        for client in self.clients:
            client.abandon()
        self.deaths += 1
        if not _wait(lambda: all(fully_stopped(c) for c in conns), OWNER_GONE_WAIT):
            for conn, kind in conns.items():
                if not fully_stopped(conn):
                    self.soak.violation(
                        "outlived its owner",
                        f"{conn!r} ({kind}) still up {OWNER_GONE_WAIT:.0f} s after its "
                        f"{self.kind} owner's inbox closed: {conn.info(1.0)}",
                    )
        self._new_inbox()
        self.by_conn.clear()
        for client in self.clients:
            client.open(self)

    def quit(self) -> None:
        self.inbox.tell(_QUIT)
        self.thread.join(STOP_WAIT)
        if self.thread.is_alive():
            self.soak.violation("hang", f"{self.thread.name} did not quit")
        left = self.inbox.flush()
        if left:
            self.soak.violation(
                "event after stop", f"{len(left)} message(s) after quit: {left[:3]}"
            )
        self.inbox.close()


class _InboxOwner(_ThreadOwner):
    """A plain thread receiving from its own Inbox."""

    kind = "inbox"

    def __init__(
        self, soak: _Soak, clients: list[_Client], index: int, rng: random.Random
    ) -> None:
        super().__init__(soak, clients, index, rng)
        self._new_inbox()

    def _new_inbox(self) -> None:
        self.inbox = self.ref = tether.Inbox()

    def _run(self) -> None:
        if not self._started():
            return
        while (wait := self._wait()) is not None:
            try:
                message = self.inbox.receive(timeout=wait)
            except tether.ReceiveTimeout:
                message = None
            if not self._turn(message):
                return


class _AsyncOwner(_ThreadOwner):
    """A coroutine on an event loop of its own (its thread), receiving from an AsyncInbox.

    What it calls on its connections runs on the loop (a send that waits
    for room in a small send buffer holds the loop, as a slow turn does).
    Its loop closes when it quits: the inbox's owner is gone with it.
    """

    kind = "asyncio"
    inbox: tether.AsyncInbox

    def __init__(
        self, soak: _Soak, clients: list[_Client], index: int, rng: random.Random
    ) -> None:
        super().__init__(soak, clients, index, rng)
        self.loop = asyncio.new_event_loop()
        self._new_inbox()

    def _new_inbox(self) -> None:
        self.inbox = self.ref = tether.AsyncInbox(loop=self.loop)

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._receiving())
        finally:
            self.loop.close()

    async def _receiving(self) -> None:
        if not self._started():
            return
        while (wait := self._wait()) is not None:
            try:
                message = await self.inbox.receive(timeout=wait)
            except tether.ReceiveTimeout:
                message = None
            if not self._turn(message):
                return


class _OwnerActor(pykka.ThreadingActor):
    """A pykka actor owning connections (told events, and ticks by the soak's ticker)."""

    use_daemon_thread = True

    def __init__(self, owner: _ActorOwner) -> None:
        super().__init__()
        self.owner = owner

    def on_start(self) -> None:
        self.owner.ref = self.actor_ref
        try:
            self.owner.open_all()
        except Exception:
            self.owner.soak.violation("harness error", traceback.format_exc(limit=6))

    def on_receive(self, message: Any) -> Any:
        if message is _TICK_MSG:
            self.owner.tick()
        elif message is _QUIT:
            pass
        else:
            self.owner.handle(message)
        return None


class _ActorOwner(_Owner):
    kind = "actor"

    def __init__(
        self, soak: _Soak, clients: list[_Client], index: int, rng: random.Random
    ) -> None:
        super().__init__(soak, clients, rng)
        self.index = index
        self.actor: pykka.ActorRef[Any] | None = None

    def start(self) -> None:
        self.actor = _OwnerActor.start(self)

    def poke(self) -> None:
        """A tick, unless one is still waiting (the ticker's thread)."""
        if not self.tick_pending and self.actor is not None:
            self.tick_pending = True
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor.tell(_TICK_MSG)

    def quit(self) -> None:
        assert self.actor is not None
        stopped = self.actor.stop(block=True, timeout=STOP_WAIT)
        if not stopped:
            self.soak.violation("hang", f"owner actor {self.index} was dead already")


class _Ticker:
    """One thread ticking every owner actor each TICK."""

    def __init__(self, owners: list[_ActorOwner], soak: _Soak) -> None:
        self.owners = owners
        self.soak = soak
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-ticker", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(TICK) and time.monotonic() < self.soak.hard_deadline:
            for owner in self.owners:
                owner.poke()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(STOP_WAIT)


# -- faults --------------------------------------------------------------------------------


class _Injector:
    """Injects faults on the proxies on a seeded schedule, one fault at a time per proxy."""

    def __init__(
        self, proxies: list[FaultProxy], rng: random.Random, interval: float, until: float
    ) -> None:
        self.proxies = proxies
        self.rng = rng
        self.interval = interval
        self.until = until
        self.counts: collections.Counter[str] = collections.Counter()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos-faults", daemon=True)

    def _gap(self) -> float:
        return self.rng.uniform(0.3, 1.7) * self.interval

    def _inject(self, proxy: FaultProxy) -> tuple[float, Callable[[], None]] | None:
        """Inject a random fault; return when and how to lift it (None: nothing to lift)."""
        rng = self.rng
        kind = rng.choice(FAULTS)
        self.counts[kind] += 1
        now = time.monotonic()
        if kind == "drop":
            self.counts["links cut"] += proxy.drop()
            return None
        if kind == "cut_after":
            proxy.cut_after(rng.randint(1, 3000))
            return None
        if kind == "stall":
            proxy.stall()
            return now + rng.uniform(0.3, 5.0), proxy.resume
        if kind == "delay":
            proxy.delay(rng.uniform(0.005, 0.2))
            return now + rng.uniform(1.0, 5.0), lambda: proxy.delay(0)
        if kind == "rechunk":
            size = rng.choice((1, 2, 3, 7, 64, 1000))
            proxy.rechunk(size)
            return now + rng.uniform(0.5, 1.5 if size < 7 else 4.0), lambda: proxy.rechunk(None)
        # refuse: a server restarting: no new connections, the open ones cut.
        proxy.refuse()
        self.counts["links cut"] += proxy.drop()
        return now + rng.uniform(0.5, 3.0), lambda: self._accept(proxy)

    def _accept(self, proxy: FaultProxy) -> None:
        """Listen again; the port may be taken meanwhile (an outgoing connection's): retry."""
        for _ in range(50):
            try:
                proxy.accept()
            except OSError:
                time.sleep(0.1)
            else:
                return
        self.counts["accept failed"] += 1

    def _run(self) -> None:
        n = len(self.proxies)
        start = time.monotonic()
        due = [start + self.rng.uniform(0, self.interval) for _ in range(n)]
        lift: list[tuple[float, Callable[[], None]] | None] = [None] * n
        try:
            while not self._stop.is_set() and time.monotonic() < self.until:
                now = time.monotonic()
                for i, proxy in enumerate(self.proxies):
                    pending = lift[i]
                    if pending is not None and now >= pending[0]:
                        pending[1]()
                        lift[i] = None
                        due[i] = now + self._gap()
                    elif pending is None and now >= due[i]:
                        lift[i] = self._inject(proxy)
                        if lift[i] is None:
                            due[i] = now + self._gap()
                times = [p[0] if p is not None else d for p, d in zip(lift, due, strict=True)]
                wait = min(times, default=now + 1.0) - time.monotonic()
                self._stop.wait(min(max(wait, 0.0), 1.0))
        finally:
            for pending in lift:
                if pending is not None:
                    pending[1]()
            self.lift_all()

    def lift_all(self) -> None:
        for proxy in self.proxies:
            proxy.resume()
            proxy.delay(0)
            proxy.rechunk(None)
            proxy.cut_after(None)
            self._accept(proxy)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(STOP_WAIT)


# -- the process: threads, descriptors, what is logged ------------------------------------


def fds() -> set[int]:
    """The open file descriptors of this process."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def _tcp_inodes() -> dict[str, str]:
    """Socket inode -> "local -> remote" for the TCP sockets of the system (/proc/net/tcp)."""
    found: dict[str, str] = {}
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(path) as table:
            for line in list(table)[1:]:
                cols = line.split()
                local, remote, inode = cols[1], cols[2], cols[9]
                found[inode] = (
                    f"port {int(local.split(':')[1], 16)} -> {int(remote.split(':')[1], 16)}"
                )
    return found


def describe_fds(numbers: set[int]) -> list[str]:
    """What each descriptor is (a TCP socket with its ports where known)."""
    tcp = _tcp_inodes()
    described = []
    for fd in sorted(numbers):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            target += " " + tcp.get(target[8:-1], "(not TCP)")
        described.append(f"{fd}: {target}")
    return described


def max_rss() -> int:
    """The peak resident set size of this process, in bytes (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _Capture(logging.Handler):
    """Records what is logged at WARNING and above: level and one line, nothing kept alive.

    (A record's traceback would keep its frames, and all they hold, for the run.)
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        line = f"{record.name} {record.levelname}: {record.getMessage()[:200]}"
        if error is not None:
            line += f" ({type(error).__name__}: {str(error)[:200]})"
        self.records.append((record.levelno, line))


#: The server libraries' loggers: what they log (a client that went away in the
#: middle of a write, which is the point here) is counted, not printed.
SERVER_LOGGERS = ("aiohttp", "uvicorn", "websockets", "asyncio")


@contextlib.contextmanager
def _watching(soak: _Soak, server_log: _Capture) -> Iterator[_Capture]:
    """Log records and thread crashes during the run become violations."""
    capture = _Capture()
    loggers = [logging.getLogger(name) for name in ("tether", "pykka")]
    for logger in loggers:
        logger.addHandler(capture)
    quiet = [logging.getLogger(name) for name in SERVER_LOGGERS]
    propagate = [logger.propagate for logger in quiet]
    for logger in quiet:
        logger.addHandler(server_log)
        logger.propagate = False
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        name = args.thread.name if args.thread is not None else "?"
        soak.violation("thread crashed", f"{name}: {args.exc_type.__name__}: {args.exc_value}")
        previous(args)

    threading.excepthook = hook
    try:
        yield capture
    finally:
        threading.excepthook = previous
        for logger in loggers:
            logger.removeHandler(capture)
        for logger, was in zip(quiet, propagate, strict=True):
            logger.removeHandler(server_log)
            logger.propagate = was


def _warm_up() -> None:
    """Start tether's process-wide threads (its default supervisor) before the baseline."""
    with socket.create_server((HOST, 0)) as listener:
        conn = tether.open(HOST, listener.getsockname()[1], retry=0)
        conn.await_up(timeout=STOP_WAIT)
        conn.close()
        if not conn.wait_stopped(STOP_WAIT):
            raise RuntimeError("the warm-up connection did not stop")
    deadline = time.monotonic() + STOP_WAIT
    while not fully_stopped(conn) and time.monotonic() < deadline:
        time.sleep(0.01)


def _wait_threads(baseline: set[threading.Thread], until: float) -> list[threading.Thread]:
    """Join every thread not in ``baseline`` until ``until``; return those left."""
    while True:
        extra = [t for t in threading.enumerate() if t not in baseline]
        remaining = until - time.monotonic()
        if not extra or remaining <= 0:
            return extra
        if extra[0].ident is None:
            time.sleep(0.01)  # not started yet: join() would refuse it
        else:
            extra[0].join(min(remaining, 0.5))


def _wait_fds(before: set[int], until: float) -> set[int]:
    """Wait until no descriptor is open beyond ``before`` (by count); return the extra ones."""
    while True:
        now = fds()
        if len(now) <= len(before) or time.monotonic() >= until:
            return now - before
        time.sleep(0.05)


# -- the run ------------------------------------------------------------------------------


def _build(soak: _Soak, rng: random.Random, ports: list[int]) -> list[_Owner]:
    config = soak.config
    clients: list[_Client] = []
    for index in range(config.conns):
        cls = _WsClient if index % 2 == 0 else _HttpClient
        port = ports[min(index // config.group, len(ports) - 1)]
        clients.append(cls(soak, index, port, random.Random(rng.getrandbits(64))))
    order = clients[:]
    rng.shuffle(order)
    owners: list[_Owner] = []
    while order:
        index = len(owners)
        roll = rng.random()
        if roll < config.actor_share:
            owners.append(_ActorOwner(soak, order[:2], index, random.Random(rng.getrandbits(64))))
            del order[:2]
        else:
            kind = _AsyncOwner if roll < config.actor_share + config.async_share else _InboxOwner
            take = 1 if rng.random() < 0.5 else 2
            owners.append(kind(soak, order[:take], index, random.Random(rng.getrandbits(64))))
            del order[:take]
    return owners


def _forget(server: LoopServer) -> None:
    """Empty what the server records (every request, every Websocket's end): not needed here."""
    for recorded in (server.requests, server.ws_ended):
        for _ in range(100_000):
            try:
                recorded.get_nowait()
            except queue.Empty:
                break


def _wait(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)
    return True


def _progress(soak: _Soak, clients: list[_Client], injector: _Injector, start: float) -> str:
    n: collections.Counter[str] = collections.Counter()
    for client in clients:
        with contextlib.suppress(RuntimeError):  # changed size meanwhile (its owner's thread)
            n.update(dict(client.n))
    return (
        f"  {time.monotonic() - start:5.0f} s: ws {n['ws_sent']} sent {n['ws_echoed']} echoed; "
        f"http {n['http_sent']} sent {n['http_answered']} answered; Downs {n['downs']}; "
        f"faults {sum(v for k, v in injector.counts.items() if k != 'links cut')}; "
        f"threads {threading.active_count()}; fds {len(fds())}; "
        f"violations {sum(soak.violations.values())}"
    )


def run(config: SoakConfig) -> Report:
    """Run one soak (see the module's docstring); the report says what broke."""
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    _warm_up()
    gc.collect()
    threads_before = set(threading.enumerate())
    fds_before = fds()
    soak = _Soak(config, seed)
    report = Report(config, seed)
    start = time.monotonic()
    clients: list[_Client] = []
    server_log = _Capture()
    with (
        _watching(soak, server_log) as capture,
        tempfile.TemporaryDirectory() as tmp,
        contextlib.ExitStack() as stack,
    ):
        server, soak.client_options = SOAK_SERVERS[config.server].start(Path(tmp))
        soak.server_port = server.port
        proxies: list[FaultProxy] = []
        owners: list[_Owner] = []
        ticker: _Ticker | None = None
        try:
            upstream = server.port  # where the fault proxies forward
            if config.via is not None:  # the real proxy, tests/proxies' (a skip if missing)
                real = stack.enter_context(ProxyDaemon(Kind(config.via)))
                upstream, soak.via_scheme = real.port, real.kind.scheme
            proxies = [
                FaultProxy(upstream).start() for _ in range(math.ceil(config.conns / config.group))
            ]
            owners = _build(soak, rng, [p.port for p in proxies])
            clients = [c for owner in owners for c in owner.clients]
            actors = [o for o in owners if isinstance(o, _ActorOwner)]
            for owner in owners:
                owner.start()
            ticker = _Ticker(actors, soak)
            ticker.thread.start()
            injector = _Injector(
                proxies,
                random.Random(rng.getrandbits(64)),
                config.fault_interval,
                start + config.seconds,
            )
            injector.thread.start()
            _faults(soak, server, clients, injector, start)
            injector.stop()
            report.faults = injector.counts
            _drain_and_close(soak, clients, owners)
        finally:
            for owner in owners:
                with contextlib.suppress(Exception):
                    owner.quit()
            if ticker is not None:
                ticker.stop()
            for proxy in proxies:
                proxy.stop()
            server.stop()
        _logged(soak, report, capture, server_log)
    report.duration = time.monotonic() - start
    report.max_rss = max_rss()
    _leaks(soak, report, threads_before, fds_before)
    _tally(soak, report, clients, owners)
    return report


def _faults(
    soak: _Soak, server: LoopServer, clients: list[_Client], injector: _Injector, start: float
) -> None:
    """The soak's faulty phase, for ``config.seconds``: a progress line every 10 s."""
    config = soak.config
    next_line = start + 10.0
    while time.monotonic() < start + config.seconds:
        time.sleep(min(0.2, max(start + config.seconds - time.monotonic(), 0.0)))
        _forget(server)
        if config.progress is not None and time.monotonic() >= next_line:
            config.progress(_progress(soak, clients, injector, start))
            next_line += 10.0


def _state(client: _Client) -> str:
    """What a client that hangs was doing: its connection's state."""
    conn = client.conn
    info = conn.info(1.0) if conn is not None else None
    alive = conn.is_alive() if conn is not None else None
    return f"phase {client.phase}, closing {client.closing}, alive {alive}, {info}"


def _dump_threads(soak: _Soak) -> str:
    """Every thread's stack, in a file (a hang's evidence): its path."""
    frames = sys._current_frames()
    path = Path(tempfile.gettempdir()) / f"chaos-threads-{soak.seed}-{os.getpid()}.txt"
    path.write_text(
        "\n".join(
            f"--- {t.name}\n" + "".join(traceback.format_stack(frames[t.ident]))
            for t in threading.enumerate()
            if t.ident in frames
        )
    )
    return str(path)


def _drain_and_close(soak: _Soak, clients: list[_Client], owners: list[_Owner]) -> None:
    """After the faults: every client settles, then every owner closes and stops."""
    config = soak.config
    soak.phase = _Phase.DRAIN
    if not _wait(lambda: all(c.settled() for c in clients), config.drain):
        for client in [c for c in clients if not c.settled()][:MAX_DETAILS]:
            info = client.conn.info(1.0) if client.conn is not None else None
            client.violation(
                "not settled",
                f"{config.drain:.0f} s after the faults: phase {client.phase}, "
                f"{client.in_flight} in flight, {info}",
            )
    soak.phase = _Phase.CLOSE
    if not _wait(lambda: all(o.done for o in owners), STOP_WAIT):
        for client in [c for c in clients if not c.done][:MAX_DETAILS]:
            client.violation(
                "hang",
                f"not stopped {STOP_WAIT:.0f} s after close() (or a shutdown() begun "
                f"before): {_state(client)}",
            )
        soak.violation("hang", f"every thread's stack: {_dump_threads(soak)}")
    time.sleep(0.3)  # anything a stopped connection still told would arrive now


def _logged(soak: _Soak, report: Report, capture: _Capture, server_log: _Capture) -> None:
    """What tether logged (an error is a violation), and what the server did."""
    for level, line in capture.records:
        if level >= logging.ERROR:
            soak.violation("logged error", line)
        else:
            report.notes.append(f"logged: {line}")
    if server_log.records:
        kinds = collections.Counter(line for _, line in server_log.records)
        report.notes.append(
            f"the server logged {len(server_log.records)} time(s): "
            + "; ".join(f"{k} ({v})" for k, v in kinds.most_common(3))
        )


def _leaks(
    soak: _Soak, report: Report, threads_before: set[threading.Thread], fds_before: set[int]
) -> None:
    """Threads and descriptors left after the soak are violations."""
    left = _wait_threads(threads_before, time.monotonic() + LEAK_WAIT)
    if left:
        soak.violation("thread leak", f"{[t.name for t in left]}")
    extra = _wait_fds(fds_before, time.monotonic() + LEAK_WAIT)
    if extra:
        soak.violation("fd leak", f"{describe_fds(extra)}")
    report.threads = (len(threads_before), threading.active_count())
    report.fds = (len(fds_before), len(fds()))


def _tally(soak: _Soak, report: Report, clients: list[_Client], owners: list[_Owner]) -> None:
    """The counts of the report."""
    for client in clients:
        report.counts.update(dict(client.n))
        report.down_reasons.update(client.down_reasons)
        report.clients[client.kind] += 1
        report.clients[client.owner.kind if client.owner else "?"] += 1
    report.counts["owner_deaths"] = sum(o.deaths for o in owners)
    reconnects = [r for c in clients for r in c.reconnects]
    if reconnects:
        report.reconnect = (sum(reconnects) / len(reconnects), max(reconnects))
    report.violations = soak.violations
    report.details = soak.details


if __name__ == "__main__":  # pragma: no cover - bench/chaos.py is the command line
    sys.exit("run bench/chaos.py")
