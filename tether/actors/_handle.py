"""Connection: the thread-safe handle users hold, and ``open()``.

Every request method validates its arguments in the caller's thread (so a
mistake raises at the call), issues the ``StreamRef`` at once and *tells*
the connection actor a command: it never blocks, like Gun's casts. Only
``info()`` asks, with a timeout. The handle, not an ``ActorRef``, is what
events carry as ``conn``, so that it can outlive the actor behind it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import pickle
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pykka

from tether._errors import (
    ConnectionDownError,
    ConnectionStoppedError,
    Crashed,
    InboxClosedError,
    InvalidRequestError,
    NotUpgradedError,
    OwnerError,
    ReceiveTimeout,
    StreamLost,
    SupervisorStopped,
    UpgradedError,
)
from tether._events import (
    Data,
    Down,
    Error,
    Inform,
    ProtocolName,
    Response,
    StreamRef,
    Trailers,
    TunnelUp,
    Up,
    Upgrade,
    Ws,
)
from tether._frames import Frame, coerce_frames
from tether._locks import Rank, new_lock
from tether._options import ConnectOpts, WsOpts, check_flow, check_positive_seconds, coerce_opts
from tether._proxies import proxy_from_environment
from tether._wire import as_is, register_connection
from tether.actors import _messages as msg
from tether.actors._async_inbox import AsyncInbox
from tether.actors._awaiting import Body
from tether.actors._backlog import Backlog
from tether.actors._delivery import NOBODY, Delivery, delivery_for
from tether.actors._inbox import Inbox, Match
from tether.actors._mailbox import Mailbox
from tether.actors._sendbuffer import COMMAND_OVERHEAD, SendBuffer
from tether.actors._transport import check_unix_path
from tether.actors._tunnels import destination_from
from tether.protocol import check_body, check_framing, check_method, check_path, normalize_headers
from tether.protocol._validate import check_host, check_server_hostname

__all__ = [
    "Connection",
    "ConnectionInfo",
    "ConnectionState",
    "Owner",
    "StreamInfo",
    "open_connection",
    "open_unix_connection",
]

_STREAM_EVENTS = (Inform, Response, Data, Trailers, Upgrade, Ws, TunnelUp, Error)
_INFO_TIMEOUT = 5.0
# How long a call waits for a supervisor to restart a crashed connection actor.
_RESTART_WAIT = 2.0


def _nothing() -> None:
    pass


def _check_tunnel(tunnel: object) -> StreamRef | None:
    """The ``tunnel`` request option: None, or the ``StreamRef`` of a ``connect``."""
    if tunnel is not None and not isinstance(tunnel, StreamRef):
        raise TypeError(
            f"tunnel must be the StreamRef of a connect(), not {type(tunnel).__name__}"
        )
    return tunnel


def _frames_size(frames: tuple[Frame, ...]) -> int:
    """What a ``WsSend`` of ``frames`` counts for in the send buffer (control frames: 0)."""
    return COMMAND_OVERHEAD + sum([len(getattr(frame, "data", b"")) for frame in frames])


class ConnectionState(enum.StrEnum):
    """Where a connection is in its life: ``ConnectionInfo.state`` (a ``str``: ``== "up"`` works).

    ``CONNECTING`` (an attempt is under way), ``UP``, ``WAITING`` (for the
    next attempt), ``CLOSING`` (``shutdown()``: streams finish), ``STOPPED``
    (for good).
    """

    CONNECTING = "connecting"
    UP = "up"
    WAITING = "waiting"
    CLOSING = "closing"
    STOPPED = "stopped"


class Owner(Protocol):
    """Anything that can be told events: a ``pykka.ActorRef`` or an [`Inbox`][tether.Inbox]."""

    def tell(self, message: Any, /) -> None:
        """Deliver one event; raise (e.g. ``ActorDeadError``) if the owner is gone."""


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """A snapshot of a connection (Gun's ``gun:info/1``).

    Attributes:
        host: the host given to ``open`` (``"localhost"`` for ``open_unix``,
            as Gun's ``origin_host``: the ``host`` header and the TLS name).
        port: the port given to ``open`` (for ``open_unix``: 80, or 443 with
            TLS, as Gun's ``origin_port``; no TCP port is used).
        transport: ``"tcp"`` or ``"tls"``.
        protocol: ``"http"`` or ``"ws"`` while up, else ``None``.
        state: a [ConnectionState][tether.ConnectionState] (a ``str``):
            ``"connecting"``, ``"up"``, ``"waiting"`` (before a retry),
            ``"closing"`` or ``"stopped"``.
        owner: the owner events go to.
        local_address: ``(host, port)`` of our end while up (``None`` on a
            Unix domain socket).
        peer_address: ``(host, port)`` of the server while up (``None`` on a
            Unix domain socket).
        ws_stream: the Websocket's stream while upgraded.
        reading_paused: True while the socket is not read: the owner has not
            taken ``max_queue`` events yet, or a stream's ``flow`` credit is
            spent (a peer's close is still noticed).
        send_buffered: bytes handed to the connection that the socket has
            not taken yet (what ``send_buffer`` bounds; commands still queued
            for the actor are not counted here).
        unix_path: the socket's path for a connection opened with
            [`open_unix`][tether.open_unix], else ``None``.
        tunnels: the streams of the [`connect`][tether.Connection.connect]
            tunnels the connection is up through, outermost first (Gun's
            ``intermediaries`` of type ``connect``): requests go to the
            last one's destination. Empty again after a reconnect.
    """

    host: str
    port: int
    transport: str
    protocol: ProtocolName | None
    state: ConnectionState
    owner: Owner
    local_address: tuple[str, int] | None = None
    peer_address: tuple[str, int] | None = None
    ws_stream: StreamRef | None = None
    reading_paused: bool = False
    send_buffered: int = 0
    unix_path: str | None = None
    tunnels: tuple[StreamRef, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """A snapshot of one stream (Gun's ``gun:stream_info``).

    Attributes:
        ref: the stream.
        state: ``"running"``, or ``"stopping"`` once cancelled while its
            response is still being read (and discarded).
        reply_to: where its events go: its ``reply_to``, or the owner.
    """

    ref: StreamRef
    state: Literal["running", "stopping"]
    reply_to: Any


class Connection:
    """A handle to one connection (Gun's ``ConnPid``). Every method is thread-safe.

    Obtained from [`tether.open`][tether.open]. Request methods return a
    [`StreamRef`][tether.StreamRef] at once; the answer arrives at the owner as
    events. The handle stays valid across reconnects.
    """

    # Called in the connection's turn with each stream opened with a
    # reply_to as its last event is told (tether.actors._routing): how a
    # pool learns that a connection has capacity again. Must not block.
    _stream_ended: Callable[[StreamRef], None] | None = None

    def __init__(
        self, host: str, port: int, opts: ConnectOpts, owner: Owner, unix_path: str | None = None
    ) -> None:
        self.host = host
        self.port = port
        #: The Unix domain socket's path (``open_unix``), or None for TCP.
        self.unix_path = unix_path
        self.opts = opts
        self.owner = owner
        self._lock = new_lock(Rank.HANDLE)
        # Notified (under the lock) when a generation is adopted and when the
        # handle stops; built by the first thread that waits for either
        # (_waitable): most handles never see one, and a Condition is ~1 KiB.
        self._generation: threading.Condition | None = None
        self._ref: pykka.ActorRef[Any] | None = None
        self._carried: list[msg.Command] = []
        self._ws_stream: StreamRef | None = None
        # The connection speaks HTTP/2: a Websocket is one stream among others,
        # and requests go on beside it (set by the actor at each Up).
        self._multiplexed = False
        # How events reach the owner, and the reply_to targets of streams (by
        # id(target)), each with its receive bound, and the send buffer: they
        # outlive the actor's generations, as what they count does.
        self._delivery = self._delivery_to(owner)
        self._reply_tos: dict[int, Delivery] = {}
        self._backlogs: tuple[Backlog, ...] = ()  # all of them, for any thread to read
        self._update_backlogs()
        # What the current generation does when a receive bound changes (it
        # looks at reading again); set by each generation.
        self._reads_changed: Callable[[], None] = _nothing
        self._send = SendBuffer(opts.send_buffer, opts.send_timeout)
        # The upgrade to repeat after a reconnect (ws_opts reupgrade); here, not
        # in the actor, so that a restarted generation repeats it too.
        self._reupgrade: msg.WsUpgrade | None = None
        # Stopped for good: set under the lock, with _generation notified
        # (wait_stopped waits for it: an Event of its own was ~1 KiB per
        # connection); read without the lock by the checks on every command.
        self._done = False
        # Streams whose last event an await_ call returned, so that a later
        # await_body returns b"" at once instead of waiting (as Gun's does).
        # Weak: forgotten StreamRefs cost nothing. Built on first use, as the
        # next (~1 KiB each, and many connections never need them).
        self._ended: weakref.WeakSet[StreamRef] | None = None
        # The streams whose reply_to is an Inbox: await_ and await_body wait there.
        self._reply_inboxes: weakref.WeakKeyDictionary[StreamRef, Inbox | AsyncInbox] | None = None
        # What this handle pickles as (tether._wire): made on first use.
        self._wire: object = None
        # Last: an owner closed already calls back at once.
        self._delivery.monitor(self._owner_closed)

    def __repr__(self) -> str:
        state = "stopped" if self._done else "alive"
        return f"<tether.Connection {self._where} {state}>"

    @property
    def _where(self) -> str:
        """Where the connection goes, for messages: ``host:port``, or ``unix:<path>``."""
        return f"{self.host}:{self.port}" if self.unix_path is None else f"unix:{self.unix_path}"

    # -- in another process ----------------------------------------------------

    @property
    def wire(self) -> object:
        """What this handle becomes when pickled (an event's ``conn`` sent to another process).

        By default a [`ConnectionRef`][tether.ConnectionRef], made on first
        use: a name equal to every copy of it, that unpickles to this very
        handle in this process. See [`set_wire`][tether.Connection.set_wire].
        Thread-safe.
        """
        wire = self._wire
        if wire is None:
            with self._lock:
                if self._wire is None:
                    self._wire = register_connection(self)
                wire = self._wire
        return wire

    def set_wire(self, stand_in: object) -> None:
        """Pickle this handle as ``stand_in`` from now on. Thread-safe.

        For code that carries a connection's events to other processes and
        routes calls back (a fleet's host): ``stand_in`` is its own picklable
        handle, so that events received elsewhere carry it (and compare equal
        to it). It is pickled once here, so that a stand-in that cannot be
        pickled fails at this call, not in the connection's delivery.

        Raises:
            TypeError: ``stand_in`` is None or cannot be pickled.
        """
        if stand_in is None:
            raise TypeError("stand_in must be a picklable object, not None")
        try:
            pickle.dumps(stand_in)
        except Exception as exc:
            raise TypeError(f"stand_in cannot be pickled: {exc!r}") from exc
        with self._lock:
            self._wire = stand_in

    def __reduce__(self) -> tuple[Any, ...]:
        # A handle holds locks, a mailbox and sockets: pickle its stand-in,
        # as it pickles itself (a ConnectionRef resolves to this handle here).
        return (as_is, (self.wire,))

    # -- hooks for the actor (its thread) and the supervisor ----------------

    def _adopt(self, ref: pykka.ActorRef[Any]) -> None:
        # Called by every generation of the actor as it is built (before its
        # thread runs): the commands told before it existed, or left by a
        # crashed generation, go to it first, and only then is it the target
        # of new ones. Both under the lock that _tell's queueing takes, so a
        # command told meanwhile is queued before the hand-over (and sent
        # with it) or sent after it: never lost, never ahead of older ones.
        with self._lock:
            for command in self._carried:
                ref.tell(command)
            self._carried = []
            self._ref = ref
            self._notify()

    def _carry_over(self, commands: list[msg.Command]) -> None:
        # Called by a crashed generation: the commands it left unhandled.
        with self._lock:
            self._carried.extend(commands)

    def _on_exit(self, reason: BaseException | None) -> None:
        """The supervisor will not restart the actor: end the handle, tell the owner why."""
        # Under the lock, so that an await_* that sees the handle stopped (it
        # takes the lock first) also finds this final Error in the inbox.
        with self._lock:
            if self._done:
                return  # the actor ended it already, with its own final event
            self._end()
            carried, self._carried = self._carried, []
            if reason is None:
                return
            if not isinstance(reason, SupervisorStopped | Crashed):
                # The crash that spent the restart budget, as Down reports it.
                reason = Crashed(reason)
            with contextlib.suppress(pykka.ActorDeadError, InboxClosedError):
                # Commands a crashed generation left behind will never run.
                for command in carried:
                    stream = getattr(command, "stream", None)
                    if stream is not None and not isinstance(command, msg.Cancel):
                        target = getattr(command, "reply_to", None) or self._delivery
                        target.tell(Error(self, stream, reason))
                self._delivery.tell(Error(self, None, reason))

    def _delivery_to(self, target: Any) -> Delivery:
        opts = self.opts
        delivery = delivery_for(target, self, opts.max_queue, opts.max_queue_bytes)
        if delivery.backlog is not None:
            delivery.backlog.on_change = self._backlog_changed
        return delivery

    def _backlog_changed(self) -> None:
        # Any thread, perhaps holding an Inbox's lock: the generation asks its
        # I/O thread to look again (tether.actors._backlog).
        self._reads_changed()

    def _update_backlogs(self) -> None:
        # A new tuple, swapped in at once: the I/O thread may be reading the old one.
        deliveries = [self._delivery, *self._reply_tos.values()]
        self._backlogs = tuple(d.backlog for d in deliveries if d.backlog is not None)

    def _holds_reads(self) -> bool:
        """Whether a receive bound of this connection holds reading (any thread)."""
        return any(b.full and not b.lifted for b in self._backlogs)

    def _stream_for(self, reply_to: Delivery | None) -> StreamRef:
        """A new stream, remembered if its events go to an Inbox of their own (``await_``)."""
        stream = StreamRef()
        if reply_to is not None and type(reply_to.target) in (Inbox, AsyncInbox):
            with self._lock:
                if self._reply_inboxes is None:
                    self._reply_inboxes = weakref.WeakKeyDictionary()
                self._reply_inboxes[stream] = reply_to.target
        return stream

    def _reply_to(self, target: Any) -> Delivery | None:
        """The delivery of a stream's ``reply_to`` (None: the owner's)."""
        if target is None or target is self.owner:
            return None
        if not callable(getattr(target, "tell", None)) and not callable(target):
            raise TypeError(
                "reply_to must be a pykka.ActorRef, a tether.Inbox, anything with "
                f"tell(message), or a callable, not {type(target).__name__}"
            )
        with self._lock:
            delivery = self._reply_tos.get(id(target))
            if delivery is None or delivery.target is not target:
                delivery = self._reply_tos[id(target)] = self._delivery_to(target)
                self._update_backlogs()
        return delivery

    def _owner_closed(self) -> None:
        """The owner said it is gone (its Inbox closed: any thread): the actor looks at once.

        Gun's monitor on the owner, where the owner can say so; without it
        the actor's owner check finds it (every ``OWNER_CHECK_INTERVAL``), as
        it does when no generation is there to tell now (not built yet, or
        being restarted).
        """
        ref = self._ref
        if ref is None or self._done:
            return
        mailbox: Mailbox = ref.actor_inbox  # type: ignore[assignment]  # see _tell
        with contextlib.suppress(pykka.ActorDeadError):
            mailbox.tell(msg.OwnerClosed())

    def _owner_left(self) -> None:
        """The owner is gone (the actor's turn): its events go nowhere and hold no reading."""
        with self._lock:
            previous, self._delivery = self._delivery, NOBODY
            self._update_backlogs()
        previous.release()

    def _release_deliveries(self) -> None:
        # Stopped for good: the Inboxes stop counting this connection's events.
        for delivery in (self._delivery, *self._reply_tos.values()):
            delivery.release()

    def _set_ws_stream(self, stream: StreamRef | None) -> None:
        # Set before the owner is told Upgrade (or Down), so that a call made
        # in reaction to the event sees the new state.
        with self._lock:
            self._ws_stream = stream

    def _set_multiplexed(self, multiplexed: bool) -> None:
        # A plain store, read without the lock: a call racing the Up sees the
        # old value and is refused (or accepted) by the actor instead.
        self._multiplexed = multiplexed

    def _mark_stopped(self) -> None:
        with self._lock:
            self._end()

    def _end(self) -> None:
        # Stopped for good (the lock held): wakes calls waiting for a restart,
        # or for room in the send buffer.
        self._ws_stream = None
        self._done = True
        self._notify()
        self._send.stop()
        self._release_deliveries()

    def _next_generation(self, dead: pykka.ActorRef[Any]) -> pykka.ActorRef[Any] | None:
        # The actor died: while its supervisor restarts it, wait (briefly) for
        # the next generation instead of failing the call.
        with self._lock:
            self._waitable().wait_for(lambda: self._ref is not dead or self._done, _RESTART_WAIT)
            return self._ref

    def _waitable(self) -> threading.Condition:
        """The condition to wait on for a new generation or the end (the lock held)."""
        if self._generation is None:
            self._generation = threading.Condition(self._lock)
        return self._generation

    def _notify(self) -> None:
        # The lock held: whoever waits built the Condition before it looked.
        if self._generation is not None:
            self._generation.notify_all()

    def _tell(self, command: msg.Command, size: int = 0, *, first: bool = False) -> None:
        """Tell the current generation ``command``; ``size``: what it counts in the send buffer.

        ``first``: in front of the commands still queued (close, shutdown).
        """
        ref = self._ref
        if ref is None:
            # The supervisor has not built the first actor yet (open() does
            # not wait for it): keep the command for it, in order.
            with self._lock:
                ref = self._ref
                if ref is None and not self._done:
                    self._carried.append(command)
                    return
        for attempt in range(2):
            if ref is None or self._done:
                break
            try:
                # ref.tell(command): every generation's inbox is a Mailbox
                # (ConnectionActor is a LazyThreadingActor). hot-path ledger: Mailbox.tell
                mailbox: Mailbox = ref.actor_inbox  # type: ignore[assignment]
                # Read without a lock: a stale look only lets one more message
                # in, or costs a look under the lock wait_for_room takes.
                send = self._send
                limit = send.limit
                if size and limit is not None and send.held + mailbox.queued_size > limit:
                    send.wait_for_room(mailbox)  # see tether.actors._sendbuffer
                if first:
                    mailbox.tell_first(command)
                else:
                    mailbox.tell(command)
            except pykka.ActorDeadError:
                pass
            else:
                return
            if attempt == 0:
                ref = self._next_generation(ref)
        raise ConnectionStoppedError(f"{self!r} has stopped")

    # -- state -----------------------------------------------------------------

    @property
    def inbox(self) -> Inbox | None:
        """The owner if it is an [`Inbox`][tether.Inbox] (the default owner), else None."""
        return self.owner if isinstance(self.owner, Inbox) else None

    @property
    def upgraded(self) -> bool:
        """True while a Websocket is up (set before ``Upgrade`` is told).

        On HTTP/1.1 the Websocket is then the whole connection; on HTTP/2
        it is one stream, and requests go on beside it.
        """
        return self._ws_stream is not None

    def is_alive(self) -> bool:
        """False once the connection has stopped for good (not during reconnects)."""
        return not self._done

    def info(self, timeout: float = _INFO_TIMEOUT) -> ConnectionInfo:
        """A snapshot of the connection's state (asks the actor, bounded by ``timeout``).

        ``state`` is ``"connecting"`` until the supervisor has started the
        actor, ``"stopped"`` once the connection has stopped (or the actor
        did not answer in time).
        """
        ref = self._ref
        stopped = self._done
        if ref is not None and not stopped:
            try:
                info = ref.ask(msg.InfoQuery(), timeout=timeout)
            except (pykka.ActorDeadError, pykka.Timeout):
                pass
            else:
                if isinstance(info, ConnectionInfo):
                    return info
        state = (
            ConnectionState.CONNECTING if ref is None and not stopped else ConnectionState.STOPPED
        )
        return ConnectionInfo(
            self.host,
            self.port,
            self.opts.transport,
            None,
            state,
            self.owner,
            unix_path=self.unix_path,
        )

    def set_owner(self, owner: Owner) -> None:
        """Make ``owner`` the connection's owner (Gun's ``gun:set_owner``). Thread-safe.

        Events from here on go to ``owner``, in order: what the connection
        told before the call stays with the previous owner. Owner
        monitoring moves to the new owner (when it stops, the connection
        does), and so do ``await_*`` (they need an [Inbox][tether.Inbox]).

        Raises:
            TypeError: ``owner`` has no ``tell``.
            ConnectionStoppedError: the connection has stopped.
        """
        if not callable(getattr(owner, "tell", None)):
            raise TypeError(
                "owner must have a tell(message) method (a pykka.ActorRef or a tether.Inbox)"
            )
        delivery = self._delivery_to(owner)
        with self._lock:
            previous = self._delivery
            self.owner = owner
            self._delivery = delivery
            self._update_backlogs()
        try:
            self._tell(msg.SetOwner(delivery))
        finally:
            previous.release()  # what the previous owner holds no longer holds reading
        delivery.monitor(self._owner_closed)  # after SetOwner: its end is looked at after it

    def stream_info(self, stream: StreamRef, timeout: float = _INFO_TIMEOUT) -> StreamInfo | None:
        """What the connection knows of ``stream`` (Gun's ``gun:stream_info``).

        ``None`` for a stream it does not know, one that has ended, and any
        stream while the connection is not up (Gun: ``not_connected``).
        Asks the actor, bounded by ``timeout``.
        """
        if not isinstance(stream, StreamRef):
            raise TypeError(f"stream must be a StreamRef, not {type(stream).__name__}")
        ref = self._ref
        if ref is None or self._done:
            return None
        try:
            info = ref.ask(msg.StreamInfoQuery(stream), timeout=timeout)
        except (pykka.ActorDeadError, pykka.Timeout):
            return None
        return info if isinstance(info, StreamInfo) else None

    # -- HTTP ------------------------------------------------------------------

    def _check_http(self) -> None:
        if self._ws_stream is not None and not self._multiplexed:
            raise UpgradedError(
                "the connection speaks Websocket: HTTP requests are no longer possible (as in Gun)"
            )

    def request(
        self,
        method: str,
        path: str,
        headers: Any = None,
        body: bytes | None = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """Send a request (Gun's ``gun:request``); ``body=None`` sends no body.

        ``flow``: Gun's flow control for this response (``http_opts`` flow
        if None): how many ``Data`` events it may deliver before tether stops
        reading, until [`update_flow`][tether.Connection.update_flow] gives more.

        ``reply_to`` (Gun's request option): where this stream's events go
        instead of the owner: a ``pykka.ActorRef``, a
        [Inbox][tether.Inbox], anything with ``tell(message)``, or a callable
        called with each event in the connection's context (as an
        ``event_handler``: it must not block). Connection-wide events
        (``Up``, ``Down``, ``Error(conn, None, ...)``) still go to the owner;
        a lost connection tells a ``reply_to`` an ``Error`` for its stream.

        ``tunnel`` (Gun's request option): the ``StreamRef`` of the
        [`connect`][tether.Connection.connect] whose tunnel this request
        goes through; if that is not the tunnel the connection is up
        through when the request is handled (its CONNECT was refused, or
        the connection was lost since) the stream gets an ``Error``
        (``InvalidRequestError``) and nothing is sent. Without it the
        request goes to whatever the connection talks to then.

        Blocks while the send buffer is full (``send_buffer``), for at most
        ``send_timeout`` seconds.

        Raises:
            InvalidRequestError: a bad method, path or header, or a
                ``content-length``/``transfer-encoding`` that cannot frame the
                body (also ``ValueError``).
            TypeError: a body that is not ``bytes``.
            UpgradedError: the connection speaks Websocket.
            SendTimeout: the send buffer stayed full for ``send_timeout``.
            ConnectionStoppedError: the connection has stopped.
        """
        command_body = check_body(body)
        raw_method, target, raw_headers = (
            check_method(method),
            check_path(path),
            normalize_headers(headers),
        )
        check_framing(raw_headers, command_body)
        check_flow("flow", flow)
        _check_tunnel(tunnel)
        reply = self._reply_to(reply_to)
        self._check_http()
        stream = self._stream_for(reply)
        size = COMMAND_OVERHEAD + (len(command_body) if command_body else 0)
        self._tell(
            msg.RequestCmd(
                stream, raw_method, target, raw_headers, command_body, flow, size, reply, tunnel
            ),
            size,
        )
        return stream

    def get(
        self,
        path: str,
        headers: Any = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``GET path`` (Gun's ``gun:get``)."""
        return self.request("GET", path, headers, flow=flow, reply_to=reply_to, tunnel=tunnel)

    def head(
        self,
        path: str,
        headers: Any = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``HEAD path``; the response has ``fin=True`` (Gun's ``gun:head``)."""
        return self.request("HEAD", path, headers, flow=flow, reply_to=reply_to, tunnel=tunnel)

    def options(
        self,
        path: str,
        headers: Any = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``OPTIONS path`` (Gun's ``gun:options``)."""
        return self.request("OPTIONS", path, headers, flow=flow, reply_to=reply_to, tunnel=tunnel)

    def delete(
        self,
        path: str,
        headers: Any = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``DELETE path`` (Gun's ``gun:delete``)."""
        return self.request("DELETE", path, headers, flow=flow, reply_to=reply_to, tunnel=tunnel)

    def post(
        self,
        path: str,
        headers: Any = None,
        body: bytes = b"",
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``POST path`` with a body (Gun's ``gun:post``)."""
        return self.request(
            "POST", path, headers, body, flow=flow, reply_to=reply_to, tunnel=tunnel
        )

    def put(
        self,
        path: str,
        headers: Any = None,
        body: bytes = b"",
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``PUT path`` with a body (Gun's ``gun:put``)."""
        return self.request(
            "PUT", path, headers, body, flow=flow, reply_to=reply_to, tunnel=tunnel
        )

    def patch(
        self,
        path: str,
        headers: Any = None,
        body: bytes = b"",
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """``PATCH path`` with a body (Gun's ``gun:patch``)."""
        return self.request(
            "PATCH", path, headers, body, flow=flow, reply_to=reply_to, tunnel=tunnel
        )

    def headers(
        self,
        method: str,
        path: str,
        headers: Any = None,
        *,
        flow: int | None = None,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """Start a request whose body follows with ``data`` (Gun's ``gun:headers``).

        Without a ``content-length`` header the body is sent chunked, which
        HTTP/1.0 cannot do: there the header is required. ``flow``,
        ``reply_to`` and ``tunnel`` as for [`request`][tether.Connection.request].
        """
        raw_method, target, raw_headers = (
            check_method(method),
            check_path(path),
            normalize_headers(headers),
        )
        check_framing(raw_headers, None, streamed=True)
        self._check_http()
        if self.opts.http_opts.version == "HTTP/1.0" and not any(
            name == b"content-length" for name, _ in raw_headers
        ):
            raise InvalidRequestError(
                "a streamed body on HTTP/1.0 needs a content-length "
                "header (HTTP/1.0 has no chunked encoding)"
            )
        check_flow("flow", flow)
        _check_tunnel(tunnel)
        reply = self._reply_to(reply_to)
        stream = self._stream_for(reply)
        self._tell(
            msg.HeadersCmd(
                stream, raw_method, target, raw_headers, flow, COMMAND_OVERHEAD, reply, tunnel
            ),
            COMMAND_OVERHEAD,
        )
        return stream

    def data(self, stream: StreamRef, fin: bool, data: bytes) -> None:
        """Send a piece of a streamed request body; ``fin=True`` on the last one.

        Blocks while the send buffer is full, as [`request`][tether.Connection.request] does.
        """
        if not isinstance(stream, StreamRef):
            raise TypeError(f"stream must be a StreamRef, not {type(stream).__name__}")
        checked = check_body(data)
        assert checked is not None
        self._check_http()
        size = COMMAND_OVERHEAD + len(checked)
        self._tell(msg.DataCmd(stream, bool(fin), checked, size), size)

    def cancel(self, stream: StreamRef) -> None:
        """Stop receiving events for ``stream`` (Gun's ``gun:cancel``)."""
        if not isinstance(stream, StreamRef):
            raise TypeError(f"stream must be a StreamRef, not {type(stream).__name__}")
        self._tell(msg.Cancel(stream))

    def ping(self) -> StreamRef:
        """Send an HTTP/2 PING (Gun's ``gun:ping``); returns the ref its answer names.

        The answer is a [`PingAck`][tether.PingAck] event with that ref, to
        the owner, once the server acknowledged the PING. A connection that
        does not speak HTTP/2 answers ``Error(conn, ref, UnsupportedByProtocol)``
        instead (Gun's ``ping_unsupported_by_protocol``). While the
        connection is down, the PING waits for the next ``Up``.
        Thread-safe: any thread may call it.
        """
        ref = StreamRef()
        self._tell(msg.PingCmd(ref))
        return ref

    def update_flow(self, stream: StreamRef, increment: int) -> None:
        """Give ``stream`` ``increment`` more flow credit (Gun's ``gun:update_flow``).

        Reading resumes if that stream is the one being received and its
        credit is now above zero. Nothing happens for a stream without flow
        control, an unknown stream or one that has ended (as in Gun).

        Raises:
            TypeError, ValueError: ``increment`` is not an int > 0.
        """
        if not isinstance(stream, StreamRef):
            raise TypeError(f"stream must be a StreamRef, not {type(stream).__name__}")
        check_flow("increment", increment, allow_none=False)
        self._tell(msg.UpdateFlow(stream, increment))

    # -- Websocket -------------------------------------------------------------

    def ws_upgrade(
        self,
        path: str,
        headers: Any = None,
        opts: Any = None,
        *,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """Ask to upgrade to Websocket (Gun's ``gun:ws_upgrade``).

        Success arrives as ``Upgrade``; a refusal as ``Response`` (+ ``Data``);
        an upgrade that cannot be attempted (HTTP/1.0) as ``Error``. ``opts``
        (a dict or [`WsOpts`][tether.WsOpts]) overrides the ``ws_opts`` of
        ``open`` key by key. ``reply_to`` as for
        [`request`][tether.Connection.request]: the upgrade's events and
        then the Websocket's go there; ``tunnel`` as for ``request`` (a
        Websocket inside a tunnel is not upgraded again after a reconnect,
        ``reupgrade`` or not: the tunnel is not redone).
        """
        target, raw_headers = check_path(path), normalize_headers(headers)
        ws_opts = self._merge_ws_opts(opts)
        _check_tunnel(tunnel)
        reply = self._reply_to(reply_to)
        self._check_http()
        stream = self._stream_for(reply)
        self._tell(msg.WsUpgrade(stream, target, raw_headers, ws_opts, reply, tunnel))
        return stream

    # -- tunnels ---------------------------------------------------------------

    def connect(
        self,
        destination: Any,
        headers: Any = None,
        *,
        reply_to: Any = None,
        tunnel: StreamRef | None = None,
    ) -> StreamRef:
        """Open a tunnel to ``destination`` through the proxy (Gun's ``gun:connect``).

        Sends ``CONNECT host:port``. ``destination`` is a mapping as Gun's
        ``connect_destination()``: ``host`` and ``port`` (mandatory),
        ``transport`` (``"tcp"``, or ``"tls"`` for a TLS handshake with the
        destination inside the tunnel), ``username`` and ``password``
        (``proxy-authorization: Basic``, sent when both are given), and for
        ``"tls"``: ``tls_context`` (default: verifying), ``server_hostname``
        (the name verified and sent as SNI; default ``host``) and
        ``tls_handshake_timeout`` (seconds). ``headers`` are added to the
        CONNECT (``content-length`` and ``transfer-encoding`` are dropped:
        it has no body).

        A 2xx answer is a ``Response(fin=True)``, then
        [`TunnelUp`][tether.TunnelUp] once the tunnel carries HTTP to the
        destination: from then on requests go there (pass
        ``tunnel=stream`` to make sure). Any other answer is a ``Response``
        (with its body) and the connection goes on with the proxy; a
        request naming that stream as ``tunnel`` gets an ``Error``.
        ``tunnel`` here nests: a CONNECT sent through an earlier tunnel.

        HTTP/1.1 only, and only while no other request is in progress or
        queued (Gun's rule): else the stream gets an ``Error``
        (``InvalidRequestError``). A reconnect does not redo the CONNECT,
        as Gun documents: after ``Down`` and ``Up`` the connection talks to
        the proxy again (call ``connect`` again on ``Up``). Thread-safe.

        Raises:
            TypeError, ValueError: a bad ``destination`` (a missing or
                unknown key, a bad host, port or transport) or ``tunnel``.
            InvalidRequestError: a bad header.
            UpgradedError: the connection speaks Websocket.
            ConnectionStoppedError: the connection has stopped.
        """
        checked = destination_from(destination)
        raw_headers = normalize_headers(headers)
        _check_tunnel(tunnel)
        reply = self._reply_to(reply_to)
        self._check_http()
        stream = self._stream_for(reply)
        self._tell(msg.ConnectCmd(stream, checked, raw_headers, reply, tunnel))
        return stream

    def _merge_ws_opts(self, opts: Any) -> WsOpts:
        if opts is None:
            return self.opts.ws_opts
        if isinstance(opts, WsOpts):
            return opts
        coerce_opts("ws_opts", WsOpts, opts)  # validates names and values
        return dataclasses.replace(self.opts.ws_opts, **opts)

    def ws_send(self, frames: Any, stream: StreamRef | None = None) -> None:
        """Send one frame, or a list of frames in order (Gun's ``gun:ws_send``).

        A ``str`` is a Text frame, ``bytes`` a Binary frame. Without ``stream``
        the frames go to the current Websocket.

        Blocks while the send buffer is full (``send_buffer``: bytes handed
        to the connection that the socket has not taken), for at most
        ``send_timeout`` seconds; the first message into an empty buffer is
        always taken.

        Raises:
            TypeError: something that is not a frame.
            NotUpgradedError: no Websocket is up (the frames are in the error).
            SendTimeout: the send buffer stayed full for ``send_timeout``
                (nothing was sent).
            ConnectionStoppedError: the connection stopped (also while waiting).
        """
        checked = coerce_frames(frames)
        current = self._ws_stream
        if current is None or (stream is not None and stream is not current):
            if current is None or not self._multiplexed:
                raise NotUpgradedError(
                    "no Websocket is up on this connection"
                    if current is None
                    else f"{stream!r} is not the Websocket",
                    checked,
                )
            current = stream  # one Websocket among several on HTTP/2: the protocol checks it
        # The resolved stream, so that frames that race a drop come back as an
        # Error of that Websocket's stream, not as a connection-wide Error.
        size = _frames_size(checked)
        self._tell(msg.WsSend(checked, current, size), size)

    def _send_would_wait(self) -> bool:
        """Whether a send now would wait for room in the send buffer (any thread).

        The look ``_tell`` makes, without a lock (a stale look only errs by
        one message either way).
        """
        send, ref = self._send, self._ref
        limit = send.limit
        if limit is None or ref is None or self._done:
            return False
        mailbox: Mailbox = ref.actor_inbox  # type: ignore[assignment]  # see _tell
        return send.held + mailbox.queued_size > limit

    # -- lifecycle ---------------------------------------------------------------

    def close(self) -> None:
        """Close at once (Gun's ``gun:close``): streams are killed, no reconnect.

        Never waits behind work: it overtakes the commands still queued
        (which are then refused, each with an ``Error`` for its stream) and
        is handled as soon as the message being handled is done.
        """
        if self._done:
            return
        self._tell(msg.Close(), first=True)

    def shutdown(self) -> None:
        """Close gracefully (Gun's ``gun:shutdown``): let streams finish, then stop.

        A Websocket is closed with a close frame; both waits are bounded by the
        ``closing_timeout`` options. Unlike [`close`][tether.Connection.close] it keeps its place
        after the commands given before it, as in Gun: a frame sent just
        before goes out before the close frame. (Nothing waits on the
        network any more, and the send buffer bounds what is queued.)
        """
        if self._done:
            return
        self._tell(msg.Shutdown())

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until the connection has stopped for good; False on timeout."""
        inbox = self.inbox
        if inbox is not None and not self._done:
            # A socket its last receive kept is read by nobody while this
            # waits: the close handshake of a shutdown() would wait for the
            # I/O thread to take it back (5-10 ms).
            inbox._let_go()
        with self._lock:
            return self._waitable().wait_for(lambda: self._done, timeout)

    # -- receiving (Inbox owners only) -----------------------------------------

    def _require_inbox(self, call: str) -> Inbox:
        inbox = self.inbox
        if inbox is None:
            raise OwnerError(_not_an_inbox(self.owner, call))
        return inbox

    def _inbox_of(self, stream: StreamRef, call: str) -> Inbox:
        """Where ``stream``'s events arrive: its ``reply_to`` Inbox, or the owner Inbox."""
        inbox = self._reply_inbox(stream)
        if inbox is None:
            return self._require_inbox(call)
        if type(inbox) is not Inbox:
            raise OwnerError(_not_an_inbox(inbox, call))
        return inbox

    def _receiver_of(self, stream: StreamRef) -> object:
        """Where ``stream``'s events arrive: its ``reply_to`` (Async)Inbox, or the owner."""
        receiver = self._reply_inbox(stream)
        return self.owner if receiver is None else receiver

    def _reply_inbox(self, stream: StreamRef) -> Inbox | AsyncInbox | None:
        """``stream``'s ``reply_to`` (Async)Inbox, if it has one."""
        inboxes = self._reply_inboxes
        return inboxes.get(stream) if inboxes is not None else None

    def _mine(self, message: object) -> bool:
        return getattr(message, "conn", None) is self

    def await_up(self, timeout: float = 5.0) -> ProtocolName:
        """Wait for ``Up`` and return its protocol (Gun's ``gun:await_up``).

        Raises:
            OwnerError: the owner is not an Inbox (for an
                [AsyncInbox][tether.AsyncInbox]: ``await inbox.await_up(conn)``).
            ConnectionDownError: a ``Down`` or connection ``Error`` came first.
            ReceiveTimeout: nothing came in time.
        """
        inbox = self._require_inbox("await_up")
        check_positive_seconds("timeout", timeout, allow_inf=True)
        return self._up_protocol(self._take(inbox, self._up_match(), timeout))

    # The waits of await_up/await_/await_body as pieces without I/O: what they
    # match, and what they make of the event taken. Connection's blocking
    # methods and AsyncInbox's coroutines both wait with them.

    def _up_match(self) -> Match:
        """What ``await_up`` waits for: this connection's ``Up``, ``Down`` or own ``Error``."""

        def match(m: object) -> bool:
            return self._mine(m) and (
                isinstance(m, Up | Down) or (isinstance(m, Error) and m.stream is None)
            )

        return match

    @staticmethod
    def _up_protocol(event: object) -> ProtocolName:
        """``await_up``'s answer from the event its match took."""
        if isinstance(event, Up):
            return event.protocol
        assert isinstance(event, Down | Error)
        raise ConnectionDownError(
            f"the connection went down before Up: {event.reason!r}", event.reason
        )

    def _stopped_for_good(self) -> bool:
        """Whether nothing more will be told (the handle ended, its actor is gone): any thread."""
        if not self._done:
            return False
        with self._lock:
            pass  # a supervisor's _on_exit tells its Error under this lock
        ref = self._ref
        return ref is None or ref.actor_stopped.is_set()

    def _take(
        self,
        inbox: Inbox,
        match: Callable[[object], bool],
        timeout: float | None,
        remove: Callable[[object], bool] | None = None,
    ) -> object:
        if not self.is_alive():
            # Nothing more will come: don't make the caller wait out the timeout.
            # But the handle is marked stopped just before the final Error is
            # told; the actor stops right after telling it, so wait for that.
            ref = self._ref
            if ref is not None:
                # inf (or past TIMEOUT_MAX, where Event.wait overflows) is no limit.
                finite = timeout is not None and timeout <= threading.TIMEOUT_MAX
                ref.actor_stopped.wait(timeout if finite else None)
            with self._lock:
                pass  # a supervisor's _on_exit tells its Error under this lock
            try:
                return inbox.take(match, 0, remove)
            except ReceiveTimeout:
                raise ConnectionStoppedError(f"{self!r} has stopped") from None
        return inbox.take(match, timeout, remove)

    def await_(self, stream: StreamRef, timeout: float = 5.0) -> object:
        """Remove and return the next event of ``stream`` (Gun's ``gun:await``).

        Returns an ``Inform``, ``Response``, ``Data``, ``Trailers``,
        ``Upgrade``, ``Ws`` or ``Error`` event.

        Raises:
            OwnerError: the owner is not an Inbox.
            StreamLost: the connection went down (or stopped) without answering it.
            ReceiveTimeout: nothing came in time.
        """
        check_positive_seconds("timeout", timeout, allow_inf=True)
        inbox = self._inbox_of(stream, "await_")
        return self._await_stream(inbox, stream, timeout, self._waiter(stream, trailers=True))

    def _waiter(self, stream: StreamRef, *, trailers: bool) -> tuple[Match, Match]:
        """The ``match`` and ``remove`` of a wait for ``stream``'s next event.

        Built once per ``await_``/``await_body`` call, not per event.
        ``trailers``: whether a ``Trailers`` event is removed when taken.
        """

        def match(m: object) -> bool:
            if not self._mine(m):
                return False
            if isinstance(m, _STREAM_EVENTS) and m.stream is stream:
                return True
            if isinstance(m, Down):
                return stream in m.killed_streams or stream in m.unprocessed_streams
            return isinstance(m, Error) and m.stream is None

        def remove(m: object) -> bool:
            # Connection-wide events stay for await_up and the owner's loop.
            if isinstance(m, Trailers):
                return trailers
            return not isinstance(m, Down) and not (isinstance(m, Error) and m.stream is None)

        return match, remove

    def _await_stream(
        self, inbox: Inbox, stream: StreamRef, timeout: float | None, waiter: tuple[Match, Match]
    ) -> object:
        # ``timeout`` is checked by the public caller (once per await_body, not per event).
        match, remove = waiter
        return self._stream_event(stream, self._take(inbox, match, timeout, remove))

    def _stream_event(self, stream: StreamRef, event: object) -> object:
        """``await_``'s answer from the event its waiter took (``StreamLost`` for a ``Down``)."""
        if isinstance(event, Down | Error) and not (
            isinstance(event, Error) and event.stream is stream
        ):
            raise StreamLost(f"{stream!r} was lost: {event.reason!r}", event.reason)
        if isinstance(event, Error | Trailers) or (
            isinstance(event, Response | Data) and event.fin
        ):
            with self._lock:
                if self._ended is None:
                    self._ended = weakref.WeakSet()
                self._ended.add(stream)
        return event

    def _body_ended(self, stream: StreamRef) -> bool:
        """Whether an ``await_`` returned ``stream``'s last event already (``await_body``: b"")."""
        with self._lock:
            return self._ended is not None and stream in self._ended

    def await_body(self, stream: StreamRef, timeout: float = 5.0) -> bytes:
        """Wait for the rest of the response body and return it (Gun's ``gun:await_body``).

        Consumes the stream's ``Response``/``Inform``/``Data`` events; a
        ``Trailers`` event ends the body and is left for [`await_`][tether.Connection.await_].
        ``timeout`` bounds the whole wait.

        Raises:
            OwnerError: the owner is not an Inbox.
            StreamLost: the connection went down without finishing the body.
            TetherError: the stream's ``Error`` reason, or ``UpgradedError``
                if the stream was upgraded instead.
            ReceiveTimeout: the body did not complete in time.
        """
        check_positive_seconds("timeout", timeout, allow_inf=True)
        deadline = time.monotonic() + timeout
        inbox = self._inbox_of(stream, "await_body")
        waiter = self._waiter(stream, trailers=False)
        if self._body_ended(stream):
            return b""
        body = Body(stream)
        while True:
            remaining = max(deadline - time.monotonic(), 0.0)
            done = body.add(self._await_stream(inbox, stream, remaining or 1e-9, waiter))
            if done is not None:
                return done

    def flush(self, stream: StreamRef | None = None) -> int:
        """Drop the waiting events of this connection, or of one stream (Gun's ``gun:flush``).

        Returns how many were dropped. Needs an Inbox or an AsyncInbox owner.
        """
        owner = self.owner
        inbox = owner if type(owner) is AsyncInbox else self._require_inbox("flush")

        def match(m: object) -> bool:
            if not self._mine(m):
                return False
            return stream is None or getattr(m, "stream", None) is stream

        return len(inbox.flush(match))


def _not_an_inbox(owner: object, call: str) -> str:
    """The OwnerError's message for a blocking ``call`` on a connection ``owner`` receives for."""
    if type(owner) is AsyncInbox:
        return (
            f"{call} blocks, and this connection's events go to a tether.AsyncInbox: "
            f"await the coroutine instead (await inbox.{call}(conn, ...))"
        )
    return (
        f"{call} needs the owner to be a tether.Inbox, not "
        f"{type(owner).__name__}; receive events in the owner"
    )


def open_connection(
    host: str,
    port: int,
    owner: Owner | None,
    start: Callable[[Connection], None],
    **options: Any,
) -> Connection:
    """Validate, build the handle and have ``start`` start its actor. See ``tether.open``.

    ``start`` need not wait for the actor: each generation adopts the handle
    itself as it is built (``Connection._adopt``), and commands given before
    are kept for it.
    """
    if not isinstance(host, str) or not host:
        raise TypeError(f"host must be a non-empty str, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 < port < 65536:
        raise ValueError(f"port must be in 1..65535, not {port}")
    check_host(host, port)
    if options.get("proxy") == "env":  # explicit: the environment is read only when asked
        tls = options.get("transport") == "tls"
        found = proxy_from_environment(tls=tls, host=host, port=port)
        options["proxy"] = found
        if (found is None or not found.tls) and isinstance(
            options.get("proxy_tls_context"), ssl.SSLContext
        ):
            # Given for the https:// proxy the environment might name (the caller
            # cannot know which): unused, not an error, when it names another.
            options.pop("proxy_tls_context", None)
    opts = _build_opts(options)
    conn = Connection(host, port, opts, _owner(owner))
    start(conn)
    return conn


def open_unix_connection(
    path: object,
    owner: Owner | None,
    start: Callable[[Connection], None],
    **options: Any,
) -> Connection:
    """As :func:`open_connection`, to a Unix domain socket. See ``tether.open_unix``.

    As Gun's ``open_unix``, the origin is ``localhost`` on port 80 (443 with
    TLS): the ``host`` header says ``localhost``, and TLS verifies that name
    (or ``server_hostname``).
    """
    unix_path = check_unix_path(path)
    if options.get("proxy") is not None:
        raise ValueError("a Unix domain socket is reached directly: open_unix takes no proxy")
    opts = _build_opts(options)
    port = 443 if opts.transport == "tls" else 80
    conn = Connection("localhost", port, opts, _owner(owner), unix_path)
    start(conn)
    return conn


def _build_opts(options: dict[str, Any]) -> ConnectOpts:
    opts = ConnectOpts.build(**options)
    if opts.server_hostname is not None:
        check_server_hostname(opts.server_hostname)
    return opts


def _owner(owner: Owner | None) -> Owner:
    if owner is None:
        return Inbox()
    if not callable(getattr(owner, "tell", None)):
        raise TypeError(
            "owner must have a tell(message) method (a pykka.ActorRef or a tether.Inbox)"
        )
    return owner
