"""``tether.start_pool`` and ``Pool``: Gun's ``gun_pool``, a supervised set of connections.

A pool opens ``size`` connections to one host under a supervisor of its
own, owned by its manager actor (:mod:`tether.pool._manager`). Each request
checks out a connection that is up and has room (:mod:`tether.pool._slots`)
and is sent on it with ``reply_to`` the caller's target (the pool's owner
by default), so the stream's events go straight from that connection to
the caller, as with a connection of one's own; the pool is not in their
path. The ``StreamRef`` returned is the connection's; the pool remembers
which connection each of its live streams is on (weakly: a forgotten
``StreamRef`` costs nothing), for ``await_*``, ``cancel``, ``data``,
``ws_send`` and the others.

Why an exception at the call, and not an ``Error`` event, when no
connection can take a request in time: Gun's ``gun_pool`` answers the
call itself with ``{error, no_connection_available, _}``, nothing having
been sent, and there is no stream yet that an event could belong to.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

import pykka

from tether._errors import ConnectionStoppedError, OwnerError, PoolStopped, ReceiveTimeout
from tether._events import StreamRef
from tether._options import WsOpts, check_positive_seconds
from tether.actors import Connection, Inbox, Owner, StreamInfo
from tether.pool._manager import PoolManager
from tether.pool._slots import PoolInfo, Slot, Slots
from tether.supervision import Supervisor
from tether.supervision import open as open_connection

__all__ = ["DEFAULT_CHECKOUT_TIMEOUT", "DEFAULT_SIZE", "Pool", "start_pool"]

DEFAULT_SIZE = 8
"""Gun's default pool ``size``."""

DEFAULT_CHECKOUT_TIMEOUT = 5.0
"""How long a request waits for a connection with room (Gun's ``checkout_call_timeout``)."""

# The pool's supervisor: each connection's default budget (5 restarts in
# 10 s), times the number of connections.
_RESTARTS_PER_CONNECTION = 5
_RESTART_PERIOD = 10.0
# How long stop() waits for each connection to have stopped.
_STOP_WAIT = 5.0


def start_pool(
    host: str,
    port: int,
    size: int = DEFAULT_SIZE,
    owner: Owner | None = None,
    *,
    checkout_timeout: float = DEFAULT_CHECKOUT_TIMEOUT,
    supervisor: Supervisor | None = None,
    **open_opts: Any,
) -> Pool:
    """Start a pool of ``size`` connections to ``host:port`` (Gun's ``gun_pool:start_pool``).

    Returns at once; the connections connect in the background (``await_up``
    waits for all of them). Thread-safe.

    Args:
        host: host name or IP address.
        port: TCP port.
        size: how many connections (Gun's default: 8).
        owner: where the pool's streams' events go unless a request names a
            ``reply_to``: a ``pykka.ActorRef``, an [`Inbox`][tether.Inbox],
            anything with ``tell``. Default: a new Inbox (``pool.inbox``).
        checkout_timeout: how long a request waits for a connection that is
            up and has room before it raises
            [`NoConnectionAvailable`][tether.NoConnectionAvailable]
            (seconds; default 5.0, Gun's ``checkout_call_timeout``).
        supervisor: the pool's own supervisor starts as a child of this one
            (stopped with it, reported to it if it gives up).
        **open_opts: the options of [`tether.open`][tether.open], for every
            connection (``supervise`` excepted: pooled connections are
            supervised).

    Raises:
        TypeError, ValueError: a bad argument or option (nothing is left running).
    """
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, not {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    check_positive_seconds("checkout_timeout", checkout_timeout, allow_none=False)
    if "supervise" in open_opts:
        raise TypeError("a pool's connections are always supervised: drop supervise=")
    if owner is None:
        owner = Inbox()
    elif not callable(getattr(owner, "tell", None)):
        raise TypeError(
            "owner must have a tell(message) method (a pykka.ActorRef or a tether.Inbox)"
        )
    return Pool(host, port, size, owner, checkout_timeout, supervisor, open_opts)


class Pool:
    """A pool of connections to one host (Gun's ``gun_pool``). Every method is thread-safe.

    Made by [`tether.start_pool`][tether.start_pool]. Request methods have
    [`Connection`][tether.Connection]'s names and arguments and return the
    ``StreamRef`` at once, its events going to ``reply_to`` (the pool's
    owner by default); they first check out a connection that is up and
    has room, waiting up to ``checkout_timeout`` for one (in the calling
    thread: there is no queue of requests).
    """

    def __init__(  # noqa: PLR0917  # built by start_pool only
        self,
        host: str,
        port: int,
        size: int,
        owner: Owner,
        checkout_timeout: float,
        supervisor: Supervisor | None,
        open_opts: dict[str, Any],
    ) -> None:
        self.host = host
        self.port = port
        self.owner = owner
        self.checkout_timeout = checkout_timeout
        self._slots = Slots(host, port)
        # The connection of each live pool stream (under the slots' lock).
        self._streams: WeakKeyDictionary[StreamRef, Connection] = WeakKeyDictionary()
        self._sup = Supervisor.start(
            "one_for_one",
            max_restarts=_RESTARTS_PER_CONNECTION * size,
            period=_RESTART_PERIOD,
            parent=supervisor,
        )

        def reopen() -> Connection:
            return open_connection(host, port, self._manager, supervisor=self._sup, **open_opts)

        self._manager: pykka.ActorRef[PoolManager] = PoolManager.start(self._slots, reopen)
        try:
            for _ in range(size):
                self._slots.add(reopen())
        except BaseException:
            self.stop()
            raise

    def __repr__(self) -> str:
        return f"<tether.Pool {self.host}:{self.port} {self._slots.info().state.value}>"

    @property
    def inbox(self) -> Inbox | None:
        """The owner if it is an [`Inbox`][tether.Inbox] (the default owner), else None."""
        return self.owner if isinstance(self.owner, Inbox) else None

    @property
    def connections(self) -> tuple[Connection, ...]:
        """The pool's connections now (one replaced after it stopped for good is not here)."""
        return tuple(c.conn for c in self._slots.info().connections)

    # -- checking out ----------------------------------------------------------------

    def _issue(
        self,
        send: Callable[[Connection, Any], StreamRef],
        reply_to: Any,
        *,
        ws_for_good: Callable[[Connection], bool] | None = None,
    ) -> StreamRef:
        slots = self._slots
        target = self.owner if reply_to is None else reply_to
        timeout = self.checkout_timeout
        deadline = time.monotonic() + timeout
        while True:
            slot: Slot = slots.checkout(deadline, timeout)
            stream: StreamRef | None = None
            conn = slot.conn
            try:
                stream = send(conn, target)
            except ConnectionStoppedError:
                # It stopped for good just now, before the manager heard:
                # nothing was sent; take another (the manager replaces it).
                slots.stopped_for_good(conn)
                continue
            finally:
                lasting = stream is not None and ws_for_good is not None and ws_for_good(conn)
                slots.issued(slot, stream, self._streams, ws_for_good=lasting)
            return stream

    def connection_of(self, stream: StreamRef) -> Connection:
        """The connection that carries ``stream`` (one of this pool's live streams).

        Raises:
            TypeError: ``stream`` is not a ``StreamRef``.
            ValueError: it is not a stream of this pool.
        """
        return self._conn_of(stream)

    def _conn_of(self, stream: StreamRef) -> Connection:
        if not isinstance(stream, StreamRef):
            raise TypeError(f"stream must be a StreamRef, not {type(stream).__name__}")
        conn = self._streams.get(stream)  # written under the slots' lock
        if conn is None:
            raise ValueError(f"{stream!r} is not a stream of this pool")
        return conn

    # -- HTTP --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        headers: Any = None,
        body: bytes | None = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
    ) -> StreamRef:
        """Send a request on a connection with room (Gun's ``gun_pool:request``).

        As [`Connection.request`][tether.Connection.request]; ``reply_to``
        defaults to the pool's owner.

        Raises:
            NoConnectionAvailable: no connection was up with room within
                ``checkout_timeout`` (nothing was sent).
            PoolStopped: the pool has stopped.
            InvalidRequestError, TypeError, SendTimeout: as ``Connection.request``.
        """
        return self._issue(
            lambda conn, to: conn.request(method, path, headers, body, flow=flow, reply_to=to),
            reply_to,
        )

    def get(
        self, path: str, headers: Any = None, *, flow: int | None = None, reply_to: Any = None
    ) -> StreamRef:
        """``GET path`` on a connection with room (Gun's ``gun_pool:get``)."""
        return self.request("GET", path, headers, flow=flow, reply_to=reply_to)

    def head(
        self, path: str, headers: Any = None, *, flow: int | None = None, reply_to: Any = None
    ) -> StreamRef:
        """``HEAD path`` (Gun's ``gun_pool:head``)."""
        return self.request("HEAD", path, headers, flow=flow, reply_to=reply_to)

    def options(
        self, path: str, headers: Any = None, *, flow: int | None = None, reply_to: Any = None
    ) -> StreamRef:
        """``OPTIONS path`` (Gun's ``gun_pool:options``)."""
        return self.request("OPTIONS", path, headers, flow=flow, reply_to=reply_to)

    def delete(
        self, path: str, headers: Any = None, *, flow: int | None = None, reply_to: Any = None
    ) -> StreamRef:
        """``DELETE path`` (Gun's ``gun_pool:delete``)."""
        return self.request("DELETE", path, headers, flow=flow, reply_to=reply_to)

    def post(
        self,
        path: str,
        headers: Any = None,
        body: bytes = b"",
        *,
        flow: int | None = None,
        reply_to: Any = None,
    ) -> StreamRef:
        """``POST path`` with a body (Gun's ``gun_pool:post``)."""
        return self.request("POST", path, headers, body, flow=flow, reply_to=reply_to)

    def put(
        self,
        path: str,
        headers: Any = None,
        body: bytes = b"",
        *,
        flow: int | None = None,
        reply_to: Any = None,
    ) -> StreamRef:
        """``PUT path`` with a body (Gun's ``gun_pool:put``)."""
        return self.request("PUT", path, headers, body, flow=flow, reply_to=reply_to)

    def patch(
        self,
        path: str,
        headers: Any = None,
        body: bytes = b"",
        *,
        flow: int | None = None,
        reply_to: Any = None,
    ) -> StreamRef:
        """``PATCH path`` with a body (Gun's ``gun_pool:patch``)."""
        return self.request("PATCH", path, headers, body, flow=flow, reply_to=reply_to)

    def headers(
        self,
        method: str,
        path: str,
        headers: Any = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
    ) -> StreamRef:
        """Start a request whose body follows with [`data`][tether.Pool.data].

        Gun's ``gun_pool:headers``.
        """
        return self._issue(
            lambda conn, to: conn.headers(method, path, headers, flow=flow, reply_to=to),
            reply_to,
        )

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """Send a piece of ``stream``'s body on its connection (Gun's ``gun_pool:data``)."""
        self._conn_of(stream).data(stream, fin, data)

    def cancel(self, stream: StreamRef) -> None:
        """Stop receiving ``stream``'s events (Gun's ``gun_pool:cancel``).

        Its connection takes the pool's next request at once (it reads and
        drops the rest of the cancelled response first, as Gun does).
        """
        conn = self._conn_of(stream)
        conn.cancel(stream)
        slot = self._slots.slot_of(conn)
        if slot is not None:
            self._slots.release(slot, stream)

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Give ``stream`` more flow credit (Gun's ``gun_pool:update_flow``)."""
        self._conn_of(stream).update_flow(stream, increment)

    def stream_info(self, stream: StreamRef, timeout: float = 5.0) -> StreamInfo | None:
        """What ``stream``'s connection knows of it (Gun's ``gun_pool:stream_info``)."""
        return self._conn_of(stream).stream_info(stream, timeout)

    # -- Websocket ----------------------------------------------------------------------

    def ws_upgrade(
        self, path: str, headers: Any = None, opts: Any = None, *, reply_to: Any = None
    ) -> StreamRef:
        """Upgrade a connection with room to Websocket (``Connection.ws_upgrade``).

        Once upgraded, that connection is the Websocket's: the pool sends no
        more requests on it until it is lost (with ``reupgrade``, for as
        long as it is in the pool: it upgrades again after each reconnect).
        Send on it with [`ws_send`][tether.Pool.ws_send].
        """

        def reupgrades(conn: Connection) -> bool:
            if isinstance(opts, WsOpts):
                return opts.reupgrade
            if isinstance(opts, dict) and "reupgrade" in opts:
                return bool(opts["reupgrade"])
            return conn.opts.ws_opts.reupgrade

        return self._issue(
            lambda conn, to: conn.ws_upgrade(path, headers, opts, reply_to=to),
            reply_to,
            ws_for_good=reupgrades,
        )

    def ws_send(self, frames: Any, stream: StreamRef) -> None:
        """Send frames on the Websocket ``stream`` (a pool ``ws_upgrade``'s).

        As ``Connection.ws_send``.
        """
        self._conn_of(stream).ws_send(frames, stream)

    # -- receiving (an Inbox owner or reply_to) ---------------------------------------------

    def await_(self, stream: StreamRef, timeout: float = 5.0) -> object:
        """The next event of ``stream`` (Gun's ``gun_pool:await``); see ``Connection.await_``."""
        return self._conn_of(stream).await_(stream, timeout)

    def await_body(self, stream: StreamRef, timeout: float = 5.0) -> bytes:
        """The rest of ``stream``'s body (Gun's ``gun_pool:await_body``).

        Raises what ``Connection.await_body`` raises: a lost connection's
        reason (the stream's ``Error``) if its connection was lost first.
        """
        return self._conn_of(stream).await_body(stream, timeout)

    def flush(self, stream: StreamRef | None = None) -> int:
        """Drop the waiting events of ``stream``, or of every pool stream, from the owner Inbox.

        Returns how many were dropped (Gun's ``gun_pool:flush``).

        Raises:
            OwnerError: the owner is not an Inbox.
        """
        inbox = self._require_inbox()
        if stream is not None:
            return len(inbox.flush(lambda m: getattr(m, "stream", None) is stream))
        conns = set(map(id, self.connections))
        return len(inbox.flush(lambda m: id(getattr(m, "conn", None)) in conns))

    def _require_inbox(self) -> Inbox:
        inbox = self.inbox
        if inbox is None:
            raise OwnerError(
                "flush needs the pool's owner to be a tether.Inbox, "
                f"not {type(self.owner).__name__}"
            )
        return inbox

    # -- the pool ------------------------------------------------------------------------------

    def info(self) -> PoolInfo:
        """A snapshot: the pool's state and each connection's (Gun's ``gun_pool:info``).

        Read from the pool's own bookkeeping: it asks no connection.
        """
        return self._slots.info()

    def await_up(self, timeout: float = 5.0) -> None:
        """Wait until every connection is up (Gun's ``gun_pool:await_up``: ``operational``).

        Raises:
            ReceiveTimeout: not all were up within ``timeout``.
            PoolStopped: the pool has stopped.
        """
        check_positive_seconds("timeout", timeout, allow_none=False, allow_inf=True)
        if self._slots.wait_operational(timeout):
            return
        if self._slots.stopped:
            raise PoolStopped(
                f"the pool to {self.host}:{self.port} has stopped", self._slots.reason
            )
        raise ReceiveTimeout(f"not every connection of the pool was up within {timeout} s")

    def is_alive(self) -> bool:
        """False once the pool has stopped (``stop()``, or its supervisor gave up)."""
        return not self._slots.stopped

    def stop(self) -> None:
        """Stop the pool (Gun's ``gun_pool:stop_pool``): every connection closes.

        Requests waiting for a connection fail with ``PoolStopped``; streams
        in flight end with an ``Error`` (``ClosedByUser``) to their ``reply_to``. Returns once
        every connection has stopped (each waited for at most 5 s).
        Idempotent.
        """
        conns = self._slots.stop()
        # Closed first (brutal, as Gun's stop_pool), so that streams in
        # flight end with ClosedByUser, the reason the user gave; then the
        # supervisor, with nothing left to stop.
        for conn in conns:
            conn.close()
        for conn in conns:
            conn.wait_stopped(_STOP_WAIT)
        self._sup.stop()
        with contextlib.suppress(pykka.ActorDeadError):
            self._manager.stop(block=True, timeout=_STOP_WAIT)
