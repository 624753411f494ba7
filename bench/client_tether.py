"""tether as a benchmark client: Websocket echo, fan-out, many connections, HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import client_others as others
import pykka
from _common import HOST, Params, Result, rate, rss_bytes, timed

import tether
from tether.protocol import ClientProtocol

_RECEIVE = 10.0  # seconds any one event may take before the run counts as failed


def upgraded(port: int) -> tether.Connection:
    """A tether connection to the echo server, upgraded to a Websocket."""
    conn = tether.open(HOST, port, retry=0)
    conn.await_up(timeout=_RECEIVE)
    stream = conn.ws_upgrade("/")
    event = conn.await_(stream, timeout=_RECEIVE)
    if not isinstance(event, tether.Upgrade):
        raise RuntimeError(f"upgrade refused: {event!r}")  # noqa: TRY004 - not a caller's type
    return conn


def echo(params: Params) -> Result:
    """Round trips of ``params.size``-byte binary messages on one connection."""
    conn = upgraded(params.ws_port)
    inbox = conn.inbox
    assert inbox is not None
    frame = tether.Binary(b"x" * params.size)

    def one() -> None:
        conn.ws_send(frame)
        match inbox.receive(timeout=_RECEIVE):
            case tether.Ws(frame=tether.Binary(data=data)) if len(data) == params.size:
                pass
            case event:
                raise RuntimeError(f"unexpected event {event!r}")

    try:
        return rate(params, one)
    finally:
        conn.close()
        conn.wait_stopped(_RECEIVE)


def protocol_upgraded(port: int) -> tuple[socket.socket, ClientProtocol]:
    """A blocking socket and tether's sans-I/O protocol on it, upgraded to a Websocket."""
    sock = socket.create_connection((HOST, port), timeout=_RECEIVE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as TcpTransport does
    proto = ClientProtocol(
        None,
        authority=f"{HOST}:{port}",
        http_opts=tether.HttpOpts(),
        ws_opts=tether.WsOpts(),
    )
    proto.ws_upgrade(tether.StreamRef(), b"/", [])
    sock.sendall(proto.data_to_send())
    for _ in range(100):  # bounded: the 101 comes in the first read or two
        if any(isinstance(e, tether.Upgrade) for e in proto.events()):
            return sock, proto
        proto.receive_data(sock.recv(65536))
    raise RuntimeError("no upgrade")


def protocol_echo(params: Params) -> Result:
    """The floor under ``echo``: tether's sans-I/O layer on a blocking socket, no actors.

    What the connection actor, the mailbox, the Inbox and the lending add
    to a round trip is ``echo`` minus this (``bench/NOTES.md``).
    """
    sock, proto = protocol_upgraded(params.ws_port)
    frames = (tether.Binary(b"x" * params.size),)

    def one() -> None:
        proto.ws_send(frames)
        sock.sendmsg(proto.chunks_to_send())
        got = 0
        while got < params.size:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed")
            proto.receive_data(data)
            for event in proto.events():
                match event:
                    case tether.Ws(frame=tether.Binary(data=payload)):
                        got += len(payload)
                    case _:
                        raise RuntimeError(f"unexpected event {event!r}")

    try:
        return rate(params, one)
    finally:
        sock.close()


class _Driver:
    """Drives many connections from one thread through one shared Inbox.

    Every connection upgrades, then echoes ``messages`` messages one after
    the other; ``hold`` holds the echoes back until every connection
    is upgraded (all open at once). :meth:`close_all` closes them with a
    close handshake and waits for each ``Down``.
    """

    def __init__(self, params: Params, messages: int, hold: bool) -> None:
        self.params = params
        self.inbox = tether.Inbox()
        self.frame = tether.Binary(b"x" * params.size)
        self.left: dict[tether.Connection, int] = {}
        self.messages = messages
        self.hold = hold
        self.upgraded = 0
        self.done = 0
        self.closed = 0  # Downs after close_all's shutdown()
        self.closing = False
        self.failures = 0
        self.deadline = time.monotonic() + params.timeout
        self.conns: list[tether.Connection] = []
        self.marks: dict[str, float] = {}  # phase -> perf_counter() when it ended
        self.reasons: list[str] = []

    def open_all(self) -> None:
        self.marks["start"] = time.perf_counter()
        for _ in range(self.params.conns):
            self.conns.append(tether.open(HOST, self.params.ws_port, owner=self.inbox, retry=0))
        self.marks["open() returned"] = time.perf_counter()

    def pump(self, until: int, what: str) -> None:
        """Handle events until ``what`` (upgraded/done) + failures reaches ``until``."""
        steps = 0
        while getattr(self, what) + self.failures < until and steps < 10 * len(self.conns) * (
            self.messages + 4
        ):
            steps += 1
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what}: {getattr(self, what)} of {until} in time")
            event = self.inbox.receive(timeout=min(remaining, _RECEIVE))
            self.handle(event)

    def handle(self, event: object) -> None:
        match event:
            case tether.Up(conn=conn):
                conn.ws_upgrade("/")
            case tether.Upgrade(conn=conn):
                self.upgraded += 1
                if self.upgraded == self.params.conns:
                    self.marks["all upgraded"] = time.perf_counter()
                self.left[conn] = self.messages
                if not self.hold:
                    conn.ws_send(self.frame)
            case tether.Ws(conn=conn) if not self.closing:  # (the close answer is no echo)
                self.left[conn] -= 1
                if self.left[conn] > 0:
                    conn.ws_send(self.frame)
                else:
                    self.done += 1
            case tether.Down() if self.closing:
                self.closed += 1
            case tether.Down() | tether.Error() | tether.Response():
                self.failures += 1
                if len(self.reasons) < 5:  # what went wrong, in the results
                    self.reasons.append(repr(event)[:300])
            case _:
                pass

    def release(self) -> None:
        for conn in self.left:
            try:
                conn.ws_send(self.frame)
            except tether.TetherError as exc:  # went down since its Upgrade: told as Down
                if len(self.reasons) < 5:
                    self.reasons.append(f"ws_send: {exc!r}"[:300])

    def close_all(self) -> None:
        """A close handshake on each connection (as websockets' ``async with``), Downs awaited."""
        self.closing = True
        for conn in self.conns:
            conn.shutdown()  # the server closes TCP first: TIME_WAIT stays on its side
        self.pump(len(self.conns), "closed")

    def stop_all(self) -> None:
        """Every connection shut down (a no-op for those already down) and waited for."""
        for conn in self.conns:
            conn.shutdown()  # the server closes TCP first: TIME_WAIT stays on its side
        for conn in self.conns:
            conn.wait_stopped(_RECEIVE)


def fanout(params: Params) -> Result:
    """Open ``conns`` connections at once, each echoing ``messages`` messages, then closing.

    The close handshake is timed, as in every other client's fan-out
    (websockets' and aiohttp's ``async with``, websocket-client's ``close()``).
    """
    driver = _Driver(params, params.messages, hold=False)

    def run() -> int:
        driver.open_all()
        driver.pump(params.conns, "done")
        driver.marks["all echoed"] = time.perf_counter()
        driver.close_all()
        driver.marks["all closed"] = time.perf_counter()
        return driver.failures

    try:
        result = timed(params, run)
        start = driver.marks.pop("start")
        # When each phase ended, in seconds from the first open() call.
        result["phases"] = {name: at - start for name, at in driver.marks.items()}
        return result
    finally:
        driver.stop_all()


def fanout_threads(params: Params) -> Result:
    """``fanout`` with a thread per connection, each waiting in its own connection's Inbox.

    As ``client_others.wsclient_fanout`` runs websocket-client: each thread
    opens, upgrades, echoes ``messages`` messages and closes (a close
    handshake: ``shutdown()``, then waits until the connection stopped).
    """
    frame = tether.Binary(b"x" * params.size)

    def client(_: int) -> int:
        try:
            conn = upgraded(params.ws_port)
            try:
                inbox = conn.inbox
                assert inbox is not None
                for _ in range(params.messages):
                    conn.ws_send(frame)
                    if not isinstance(inbox.receive(timeout=_RECEIVE), tether.Ws):
                        return 1
            finally:
                conn.shutdown()
                conn.wait_stopped(_RECEIVE)
        except Exception:
            return 1
        return 0

    def run() -> int:
        with ThreadPoolExecutor(max_workers=params.conns) as pool:
            return sum(pool.map(client, range(params.conns)))

    return timed(params, run)


def many(params: Params) -> Result:
    """``conns`` upgraded connections open at once, then each echoes one message."""
    driver = _Driver(params, 1, hold=True)
    threads0, rss0 = threading.active_count(), rss_bytes()
    start = time.perf_counter()
    try:
        driver.open_all()
        driver.pump(params.conns, "upgraded")
        opened = time.perf_counter()
        driver.release()
        driver.pump(params.conns, "done")
        echoed = time.perf_counter()
        rss1 = rss_bytes()
        return {
            "open_s": opened - start,
            "echo_s": echoed - opened,
            "failures": driver.failures + params.conns - driver.done,
            "conns": params.conns,
            "rss_per_conn": (rss1 - rss0) / params.conns,
            "threads": threading.active_count() - threads0,
            "reasons": driver.reasons,
        }
    finally:
        driver.stop_all()


def http(params: Params) -> Result:
    """Keep-alive GETs on one connection, one at a time."""
    conn = tether.open(HOST, params.http_port, retry=0)
    conn.await_up(timeout=_RECEIVE)

    def one() -> None:
        body = conn.await_body(conn.get("/"), timeout=_RECEIVE)
        if body != b"hello":
            raise RuntimeError(f"unexpected body {body!r}")

    try:
        return rate(params, one)
    finally:
        conn.close()
        conn.wait_stopped(_RECEIVE)


# -- owner actors: a pykka actor owns each connection ----------------------------


def _owner_base(client: str) -> type[pykka.ThreadingActor]:
    """tether-actor: a plain pykka.ThreadingActor; tether-owner: tether.OwnerActor;
    tether-pooled: tether.PooledOwnerActor."""
    bases: dict[str, type[pykka.ThreadingActor]] = {
        "tether-owner": tether.OwnerActor,
        "tether-pooled": tether.PooledOwnerActor,
    }
    return bases.get(client, pykka.ThreadingActor)


@dataclasses.dataclass(frozen=True)
class _Go:
    """Tells an echo actor: ``count`` more round trips, then set ``done``."""

    count: int
    done: threading.Event


class _Echoing:
    """An owner actor's body: opens, upgrades, echoes (the next message sent from on_receive).

    With ``messages`` (fan-out) it echoes that many at once, then shuts
    the connection down (a close handshake, as websockets' ``async with``)
    and stops once it is down; without, it echoes what ``_Go`` asks.
    ``errors`` collects what it did not expect, ``marks`` when each
    connection passed each phase (fan-out). Mixed into an actor class
    by :func:`_echo_actor`, which sets the class attributes.
    """

    params: Params
    messages: int
    marks: list[tuple[str, float]]
    actor_ref: Any
    stop: Any

    def __init__(self, done: threading.Event, errors: list[str]) -> None:
        super().__init__()
        self.done, self.errors = done, errors
        self.frame = tether.Binary(b"x" * self.params.size)
        self.left = 0

    def on_start(self) -> None:
        self.conn = tether.open(HOST, self.params.ws_port, owner=self.actor_ref, retry=0)

    def on_receive(self, message: Any) -> None:
        match message:
            case tether.Ws(frame=tether.Binary(data=data)) if len(data) == self.params.size:
                self._echoed()
            case _Go(count=count, done=done):
                self.left, self.done = count, done
                self.conn.ws_send(self.frame)
            case tether.Up():
                self.conn.ws_upgrade("/")
            case tether.Upgrade():
                self._upgraded()
            case tether.Ws(frame=tether.Close()):
                pass  # the server's answer to the shutdown
            case tether.Down() if self.messages and self.left == 0:  # after our shutdown()
                self.stop()
                self.done.set()
            case _:
                self.errors.append(repr(message)[:300])
                self.done.set()

    def _echoed(self) -> None:
        self.left -= 1
        if self.left > 0:
            self.conn.ws_send(self.frame)
        elif self.messages:
            self.marks.append(("all echoed", time.perf_counter()))
            self.conn.shutdown()
        else:
            self.done.set()

    def _upgraded(self) -> None:
        if self.messages:
            self.marks.append(("all upgraded", time.perf_counter()))
            self.left = self.messages
            self.conn.ws_send(self.frame)
        else:
            self.done.set()


def _echo_actor(base: type[pykka.ThreadingActor], params: Params, messages: int) -> type[Any]:
    """An echo actor class (:class:`_Echoing`) on ``base``, for ``params`` and ``messages``."""
    attributes = {"params": params, "messages": messages, "marks": []}
    return type("EchoActor", (_Echoing, base), attributes)


def actor_echo(params: Params) -> Result:
    """Round trips driven by an owner actor, which sends the next from on_receive(Ws).

    The caller asks for a batch of round trips at a time (one wake-up
    of the caller per batch, not per round trip); ``one.ops`` says so to
    ``rate``.
    """
    batch = 100 if params.size <= 65536 else 4
    ready, errors = threading.Event(), list[str]()
    ref = _echo_actor(_owner_base(params.client), params, 0).start(ready, errors)
    if not ready.wait(_RECEIVE) or errors:
        ref.stop()
        raise RuntimeError(f"no upgrade: {errors}")

    def one() -> None:
        done = threading.Event()
        ref.tell(_Go(batch, done))
        if not done.wait(_RECEIVE) or errors:
            raise RuntimeError(f"the echo actor failed: {errors or 'timed out'}")

    one.ops = batch  # type: ignore[attr-defined]
    conn = ref.proxy().conn.get(timeout=_RECEIVE)
    try:
        return rate(params, one)
    finally:
        ref.stop(timeout=_RECEIVE)
        conn.close()
        conn.wait_stopped(_RECEIVE)


def actor_fanout(params: Params) -> Result:
    """``conns`` owner actors, each opens, upgrades, echoes ``messages`` times, closes, stops."""
    kind = _echo_actor(_owner_base(params.client), params, params.messages)
    refs: list[pykka.ActorRef[Any]] = []
    done = [threading.Event() for _ in range(params.conns)]
    errors: list[str] = []

    def run() -> int:
        kind.marks.append(("start", time.perf_counter()))
        refs.extend(kind.start(event, errors) for event in done)
        kind.marks.append(("all started", time.perf_counter()))
        failures = 0
        deadline = time.monotonic() + params.timeout
        for event in done:
            if not event.wait(max(deadline - time.monotonic(), 0.0)):
                failures += 1
        return failures + len(errors)

    try:
        result = timed(params, run)
        result["reasons"] = errors[:5]
        # When the last connection passed each phase, in seconds from the first start().
        ends: dict[str, float] = {}
        for name, at in kind.marks:
            ends[name] = max(ends.get(name, at), at)
        start = ends.pop("start")
        result["phases"] = {name: at - start for name, at in ends.items()}
        return result
    finally:
        for ref in refs:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.stop()


# -- an asyncio owner (tether.AsyncInbox) --------------------------------------------


async def _async_upgraded(port: int) -> tuple[tether.Connection, tether.AsyncInbox]:
    inbox = tether.AsyncInbox()
    conn = tether.open(HOST, port, owner=inbox, retry=0)
    await inbox.await_up(conn, _RECEIVE)
    stream = conn.ws_upgrade("/")
    event = await inbox.await_(conn, stream, _RECEIVE)
    if not isinstance(event, tether.Upgrade):
        raise RuntimeError(f"upgrade refused: {event!r}")  # noqa: TRY004 - not a caller's type
    return conn, inbox


async def _async_close(conn: tether.Connection, inbox: tether.AsyncInbox) -> None:
    conn.shutdown()  # the server closes TCP first, as websockets' close()
    await inbox.receive(_RECEIVE, match=lambda m: isinstance(m, tether.Down))


def async_echo(params: Params) -> Result:
    """``echo`` from a coroutine owning the connection through an AsyncInbox."""
    frame = tether.Binary(b"x" * params.size)

    async def setup() -> tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]:
        conn, inbox = await _async_upgraded(params.ws_port)

        async def one() -> None:
            conn.ws_send(frame)
            # No timeout, as websockets' recv() here: no timer per round trip.
            match await inbox.receive():
                case tether.Ws(frame=tether.Binary(data=data)) if len(data) == params.size:
                    pass
                case event:
                    raise RuntimeError(f"unexpected event {event!r}")

        return one, lambda: _async_close(conn, inbox)

    return others._async_rate(params, setup)


def async_fanout(params: Params) -> Result:
    """``fanout`` from one event loop: a coroutine and an AsyncInbox per connection."""
    frame = tether.Binary(b"x" * params.size)

    async def one(_: int) -> int:
        conn, inbox = await _async_upgraded(params.ws_port)
        try:
            for _ in range(params.messages):
                conn.ws_send(frame)
                if not isinstance(await inbox.receive(_RECEIVE), tether.Ws):
                    return 1
        finally:
            await _async_close(conn, inbox)
        return 0

    return timed(params, lambda: asyncio.run(others._gather(params.conns, one)))
