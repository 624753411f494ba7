"""The connection actor: one pykka ThreadingActor per connection, its thread started lazily.

States and the events the owner sees on each transition (Gun's state
machine, ``gun.erl``)::

    connecting --Connected--> up  ......................... Up(conn, "http")
    up --shutdown()--> closing (streams finish, closing_timeout)
    up, closing --lost / close frame done--> (retry wait) . Down(...)
    connecting --ConnectFailed--> (retry wait)              (nothing: never up)
    (retry wait) --timer--> connecting
    any --retries used up--> stopped ...................... Error(conn, None, RetriesExhausted)
    any --close()/shutdown() done--> stopped .............. Down(reason=ClosedByUser) if up

All state is touched by one thread at a time, one message at a time, in
mailbox order. Everything reaches it by ``tell`` (bytes from the I/O
thread, timers, user commands); when the actor is idle, the telling
thread handles the message itself instead of waking the actor thread
(:mod:`~tether.actors._mailbox`: the round trip's thread hand-offs were
most of a small message's cost), and the actor thread is started only
when a message has to wait for it (:mod:`~tether.actors._lazy`: an ask, a
crash, a message that must wait for a turn). An exception in any of it is a crash
pykka reports to ``on_failure`` on the actor thread, never an exception
lost in a future or raised at the teller. The protocol work is delegated to
:class:`~tether.protocol.ClientProtocol`; this module only moves bytes and
events between it, the transport and the owner.

The actor keeps the state machine (the states, the timer table
``_TICKS``, connecting, retrying, up, closing, stopping). The rest is in
collaborators it owns, each called only from its turn, none calling
back (``docs/design.md``): where events go (:mod:`~tether.actors._routing`),
the event handler's phases (:mod:`~tether.actors._phases`), the write side
(:mod:`~tether.actors._writer`), keepalive (:mod:`~tether.actors._keepalive`),
head timeouts (:mod:`~tether.actors._head_timer`), Websocket upgrades
(:mod:`~tether.actors._upgrades`) and the retry count
(:mod:`~tether.actors._retries`).

Backpressure, both ways (``docs/connection.md``): reading stops while the
owner has not taken ``max_queue`` events (:mod:`~tether.actors._backlog`) or
a stream's ``flow`` credit is spent, and the bytes the socket does not take
wait in the transport's backlog, which callers of the handle may not fill
past ``send_buffer`` (:mod:`~tether.actors._sendbuffer`) and in which no byte
waits longer than ``send_timeout`` (else ``WriteTimeout``: the connection
is lost; :mod:`~tether.actors._writer`). Nothing here ever blocks on the network.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterable
from typing import Any

import pykka

from tether._errors import (
    ClosedByUser,
    ConnectionClosed,
    ConnectTimeout,
    Crashed,
    NotUpgradedError,
    OwnerDown,
    ProxyError,
    SupervisorStopped,
)
from tether._events import (
    Down,
    Error,
    Event,
    StreamRef,
    TunnelUp,
    Up,
    Upgrade,
)
from tether._frames import Close as CloseFrame
from tether.actors import _messages as msg
from tether.actors._async_inbox import AsyncInbox
from tether.actors._chain import Chain, Hop
from tether.actors._connect_phase import ConnectPhase
from tether.actors._delivery import Delivery, inbox_of
from tether.actors._handle import Connection, ConnectionInfo, StreamInfo
from tether.actors._handle import ConnectionState as State
from tether.actors._head_timer import HeadTimer
from tether.actors._keepalive import Keepalive
from tether.actors._layers import Layers, Received
from tether.actors._lazy import LazyThreadingActor
from tether.actors._lending import Lending
from tether.actors._loop_lending import LoopLending
from tether.actors._mailbox import Reraise
from tether.actors._messages import Timer
from tether.actors._phases import Phases, plain_protocol
from tether.actors._retries import PROVEN_AFTER, Retries
from tether.actors._routing import FULL, GONE, Router
from tether.actors._scheduler import TimerHandle, default_scheduler
from tether.actors._supervised import Supervised
from tether.actors._tls import TlsLayer, default_context
from tether.actors._transport import TcpTransport, Transport, UnixTransport
from tether.actors._tunnels import Destination, Tunnels
from tether.actors._upgrades import Upgrades
from tether.actors._writer import Writer
from tether.protocol import ClientProtocol, ProxyHandshake, handshake_for, host_authority
from tether.protocol._client import Tunnel
from tether.protocol._engine import ProtocolEngine
from tether.protocol._h2 import Http2Protocol
from tether.protocol._validate import ip_version
from tether.protocol._ws import FAIL_LINGER, WsClient

__all__ = ["PROVEN_AFTER", "ConnectionActor", "State"]

# Seconds between owner liveness checks of a connection that is up. A tell
# to a dead owner is noticed at once; this catches idle connections.
OWNER_CHECK_INTERVAL = 2.0

# What a teller may handle itself while the actor is idle: everything the
# actor is told except asks and pykka's own messages (see _mailbox).
_INLINE = frozenset(
    {
        msg.RequestCmd,
        msg.HeadersCmd,
        msg.DataCmd,
        msg.Cancel,
        msg.UpdateFlow,
        msg.WsUpgrade,
        msg.ConnectCmd,
        msg.WsSend,
        msg.PingCmd,
        msg.Close,
        msg.Shutdown,
        msg.OwnerClosed,
        msg.Connected,
        msg.ConnectFailed,
        msg.Resolved,
        msg.BytesIn,
        msg.Closed,
        msg.Tick,
        msg.Writable,
    }
)


# The close code of a Websocket that shutdown() (or the owner's end) closes:
# "going away", as Gun's (gun_ws:closing/4 sends 1001 for shutdown and owner_down).
GOING_AWAY = 1001


def _refuse_all(message: object) -> bool:
    """The Mailbox's ``run_inline`` when tellers may not run the actor (see ``_inline_ok``)."""
    return False


class ConnectionActor(Supervised, LazyThreadingActor):
    """Owns one socket at a time and tells the owner about everything.

    A ``Supervised`` actor: it reports its exit to its supervisor, which
    restarts it with the same handle after a crash. Its thread starts only
    when a message has to wait for it (``LazyThreadingActor``), and is a
    daemon thread (from ``Supervised``): a connection the program forgot to
    close must not keep the interpreter alive (an ``atexit`` hook closes
    the remaining ones).
    """

    # Its own fields in slots: with pykka's and the base classes' they were
    # 35, past the 30 keys a shared-key instance dict holds, and the dict
    # alone was ~1.6 KiB per connection (pykka's and the bases' stay in it).
    __slots__ = (
        "_chain",
        "_conn",
        "_drain_epoch",
        "_epoch",
        "_flow_held",
        "_flow_used",
        "_handling",
        "_heads",
        "_inline_ok",
        "_keepalive",
        "_layers",
        "_lending",
        "_lingering",
        "_opts",
        "_owner_check",
        "_pending",
        "_pending_size",
        "_phases",
        "_proto",
        "_retries",
        "_router",
        "_scheduler",
        "_state",
        "_timers",
        "_transport",
        "_tunnels",
        "_upgrades",
        "_writer",
    )

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        opts = conn.opts
        self._opts = opts
        # Where events go: the owner, or a stream's reply_to.
        self._router = Router(conn, conn._delivery)
        self._phases = Phases(conn, self._router)  # the event handler's
        # Tellers may run this actor only if what it calls out to cannot block
        # them or run user code on their thread: no event handler, and targets
        # whose tell returns at once (an Inbox or a pykka ActorRef as they are:
        # a subclass may have a tell of its own, e.g. a bounded queue the very
        # thread that tells us consumes; a reply_to callable is user code).
        self._inline_ok = (
            opts.event_handler is None
            and conn._delivery.inline
            and all(d.inline for d in conn._reply_tos.values())
        )
        self._mailbox.bind(
            self._run_inline if self._inline_ok else _refuse_all,
            self.actor_stopped,
            conn._send.room,
        )
        # A receive bound changed (the owner took enough, or waits in a
        # selective receive): look again, through the I/O thread (the owner
        # may hold its Inbox's lock, see tether.actors._backlog).
        conn._reads_changed = self._resync_reads
        self._lending = self._lending_of(conn.owner)
        self._scheduler = default_scheduler()
        self._epoch = 0
        self._state = State.CONNECTING
        self._transport: Transport | None = None
        self._proto: ProtocolEngine | None = None
        # Commands given while no connection is up, replayed at the next Up,
        # and the bytes they hold (the send buffer counts them).
        self._pending: list[msg.Command] = []
        self._pending_size = 0
        # Reading is held for the flow credit of the stream being received;
        # and whether any stream has flow control (only then is it looked at).
        self._flow_held = False
        self._flow_used = opts.http_opts.flow is not None or opts.ws_opts.flow is not None
        # Timers of the current connection; cancelled whenever it is dropped.
        self._timers: list[TimerHandle] = []
        self._owner_check: TimerHandle | None = None  # lifelong: cancelled when stopped
        # The rest of the collaborators (see the module docstring); their
        # timers are the current connection's.
        schedule = self._schedule
        self._retries = Retries(opts)
        self._upgrades = Upgrades(conn)
        self._tunnels = Tunnels()  # conn.connect's tunnels, of the current connection
        self._heads = HeadTimer(opts, schedule)  # response_timeout, upgrade_timeout
        self._keepalive = Keepalive(opts.http_opts.keepalive, schedule)
        now = self._scheduler.now
        self._writer = Writer(conn._send, opts.send_timeout, now, schedule, self._held_elsewhere)
        # The Websocket whose failure lingers (see FAIL_LINGER), once its timer is set.
        self._lingering: WsClient | None = None
        self._drain_epoch = -1  # the connection whose graceful GOAWAY armed GOAWAY_DEADLINE
        self._handling: object = None  # the message being handled, for crash reports
        # The TLS sessions between the socket and the protocol (None: none),
        # and what is left of the attempt's chain of hops until Up (_chain).
        self._layers: Layers | None = None
        self._chain: Chain | None = None
        # What was told before this generation existed (open() does not wait
        # for it) or left by a crashed one goes first, before the first
        # connect and anything told after.
        conn._adopt(self.actor_ref)
        # The first attempt starts from a told message, not from on_start: an
        # exception in on_start is no crash to pykka (neither on_failure nor
        # on_stop runs). Queued until on_start is over; then the thread that
        # starts this actor (the supervisor's) handles it, and connecting
        # begins without any actor thread (LazyThreadingActor).
        self._report(msg.Tick(self._epoch, Timer.CONNECT))

    # -- pykka hooks -------------------------------------------------------------

    def on_stop(self) -> None:
        """Stopped from outside (its supervisor stops it, or restarts a sibling; exit).

        The owner is told ``Down`` if the connection was up, as for any lost
        connection, and the user's commands not handled yet go to the next
        generation (or, if there is none, end in ``Error`` events: the
        supervisor's ``on_exit`` callback ends the handle and tells the
        owner why). Without a supervisor the handle ends here.
        """
        if self._state is State.STOPPED:
            return
        try:
            self._carry_over_commands()
            if self._proto is not None:
                self._down(SupervisorStopped("the connection was stopped by its supervisor"))
        finally:
            self._stopped()
            self._close_transport()
            if self.supervisor_ref is None:
                self._conn._mark_stopped()

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        """A crash: close the socket and tell the owner (``Down``) that it is lost.

        Under a supervisor the handle stays alive: the restarted actor sends
        ``Up`` again. Without one, the crash is final (``Error``).
        """
        reason = Crashed(exc_value)
        try:
            if self.supervisor_ref is not None:
                # pykka drops what is still in a crashed actor's mailbox: hand
                # the user's commands (a request, a close()) to the next one.
                self._conn._carry_over(self._take_queued_commands())
            # The command being handled when the crash happened was lost with
            # this generation: report its stream with the others.
            crashed = getattr(self._handling, "stream", None)
            if self._proto is not None and self._state in (State.UP, State.CLOSING):
                self._down(reason, also_killed=crashed)
            elif crashed is not None:
                self._fail_streams((crashed,), reason)
            for command in self._take_pending():
                self._refuse(command, reason)
            if self.supervisor_ref is None and not self._is_stopped():
                self._finish(reason, final_error=True)
        finally:
            self._stopped()
            self._close_transport()
            if self.supervisor_ref is None:
                self._conn._mark_stopped()

    def _take_queued_commands(self) -> list[msg.Command]:
        """Take the user's commands out of the mailbox; leave the rest to pykka."""
        commands: list[msg.Command] = []
        others = []
        for envelope in self._mailbox.take_all():
            if envelope.reply_to is None and isinstance(envelope.message, msg.Command):
                commands.append(envelope.message)
            else:
                others.append(envelope)
        self._mailbox.requeue(others)  # asks among them fail with ActorDeadError
        return commands

    def _carry_over_commands(self) -> None:
        """Hand the commands not handled yet to the next generation (or to ``on_exit``)."""
        self._conn._carry_over(self._take_pending() + self._take_queued_commands())

    def _run_inline(self, message: object) -> bool:
        """Handle ``message`` on the telling thread (it holds the turn); False if it may not.

        What ``on_receive`` does for the types in ``_INLINE``. Also once the
        connection is stopped (the message is ignored then, as ``on_receive``
        does): what raced the stop must not start the thread for nothing.
        The actor itself cannot have stopped: pykka sets ``actor_stopped``
        only in its loop, with the turn, and a stopped actor's loop keeps the
        turn for good (its last ``get()`` took it), so no teller runs a
        message after it (``tether.actors._mailbox``).
        """
        kind = type(message)
        if kind not in _INLINE:
            return False
        if self._state is not State.STOPPED:
            self._handling = message
            self._DISPATCH[kind](self, message)
        return True

    def on_receive(self, message: Any) -> Any:
        """Dispatch a command or an I/O report (by its type: this runs for every message)."""
        handle = self._DISPATCH.get(type(message))
        if handle is None:
            if isinstance(message, Reraise):
                raise message.error  # handled inline by a teller, and it crashed
            return None if self._state is State.STOPPED else super().on_receive(message)
        if self._state is State.STOPPED:
            return None
        self._handling = message
        return handle(self, message)

    def _lending_of(self, owner: object) -> Lending | LoopLending | None:
        """Who may read the socket instead of the I/O thread, for the owner's sake.

        A thread waiting in the owner's Inbox (an Inbox, or an ``OwnerActor``'s
        mailbox: ``_owner``), or an ``AsyncInbox``'s event loop (``_loop_lending``).
        """
        if not self._inline_ok:
            return None
        if type(owner) is AsyncInbox:
            return owner._lending
        inbox = inbox_of(owner)
        return None if inbox is None else inbox._lending

    def _no_more_inline(self) -> None:
        """From now on every message goes to the actor thread (user code among the targets)."""
        if self._inline_ok:
            self._inline_ok = False
            self._mailbox.bind(_refuse_all, self.actor_stopped, self._conn._send.room)
            self._relend(None)

    def _relend(self, lending: Lending | LoopLending | None) -> None:
        self._lending = lending
        transport = self._transport
        if transport is not None:
            transport.relend(lending)

    def _on_set_owner(self, command: msg.SetOwner) -> None:
        """Gun's ``set_owner``: events from here on go to the new owner."""
        self._router.owner = command.delivery
        if not command.delivery.inline:
            self._no_more_inline()
        else:
            self._relend(self._lending_of(command.delivery.target))

    def _stream_info(self, query: msg.StreamInfoQuery) -> StreamInfo | None:
        proto = self._proto
        state = proto.stream_state(query.stream) if proto is not None else None
        if state is None:
            return None
        return StreamInfo(query.stream, state, self._router.target(query.stream))

    def _route(self, stream: StreamRef, reply_to: Delivery | None) -> None:
        """``stream``'s events go to ``reply_to`` (if given) until the stream ends."""
        if reply_to is not None:
            self._router.route(stream, reply_to)
            if not reply_to.inline:
                self._no_more_inline()

    def _on_bytes_in(self, report: msg.BytesIn) -> None:
        """Bytes read from the current socket: decrypt (TLS), feed the protocol, flush."""
        if report.epoch != self._epoch:
            return
        transport = self._transport
        assert transport is not None  # the epoch is current
        transport.consumed(len(report.data))
        data: bytes | None = report.data
        layers = self._layers
        if layers is not None:
            data = self._from_layers(layers.receive, report.data)
        chain = self._chain
        if data and chain is not None and chain.handshake is not None:
            data = self._through_proxy(chain.handshake, data)
        proto = self._proto
        if proto is not None and data:
            proto.receive_data(data)
            self._flush()
            if proto.tunnel is not None and self._proto is proto:
                self._open_tunnel(proto.tunnel)

    # -- connecting ----------------------------------------------------------------

    def _report(self, report: msg.IoReport) -> None:
        """Called from the connect or I/O thread: hand a report to the actor."""
        try:  # noqa: SIM105 - hot-path ledger: try/except, not suppress
            self._mailbox.tell(report)  # hot-path ledger: Mailbox.tell
        except pykka.ActorDeadError:
            pass  # the actor is gone, and so is interest in this socket

    def _connect(self) -> None:
        self._epoch += 1
        self._retries.attempting()
        self._state = State.CONNECTING
        self._phases.begin(ConnectPhase.DOMAIN_LOOKUP)
        self._flow_held = False
        self._chain = Chain(self._opts)
        self._transport = self._new_transport()
        self._transport.start()
        if self._opts.connect_timeout is not None:
            # The socket's own timeout covers each TCP connect; this one the
            # whole attempt, DNS and the TLS handshake included.
            self._schedule(Timer.CONNECT_DEADLINE, self._opts.connect_timeout)
        if self._opts.domain_lookup_timeout is not None:
            self._schedule(Timer.LOOKUP_DEADLINE, self._opts.domain_lookup_timeout)

    def _on_resolved(self, report: msg.Resolved) -> None:
        """The lookup ended: the TCP connect begins (the transport started it already)."""
        self._phases.resolved(report.addresses)
        chain = self._chain
        if report.too and chain is not None:  # the origin's, for a socks5:// proxy
            chain.origin_address = report.too[0]

    def _new_transport(self) -> Transport:
        """A transport for the next attempt: TCP to host:port (or the proxy's), or Unix."""
        common: dict[str, Any] = {
            "lending": self._lending,
            "hold_reads": self._hold_reads,
            "clock": self._scheduler.now,
        }
        conn = self._conn
        if conn.unix_path is not None:
            return UnixTransport(self._report, self._epoch, conn.unix_path, **common)
        timeout = self._opts.connect_timeout
        proxy = self._opts.proxy
        if proxy is None:
            return TcpTransport(self._report, self._epoch, conn.host, conn.port, timeout, **common)
        # A socks5:// proxy is given the origin's address: the lookup finds it too.
        if not proxy.remote_dns and ip_version(conn.host) is None:
            common["resolve_too"] = conn.host
        return TcpTransport(self._report, self._epoch, proxy.host, proxy.port, timeout, **common)

    def _on_tcp_connected(self) -> None:
        transport = self._transport
        assert transport is not None  # the epoch is current
        self._phases.resolved(())  # a transport that looks nothing up has no lookup phase
        chain = self._chain
        assert chain is not None  # the epoch is current
        self._phases.connected(transport, last=chain.last)
        self._next_hop(chain)

    def _next_hop(self, chain: Chain) -> None:
        """The hop under way ended (or TCP connected): start the next, or the connection is up."""
        hop = chain.advance()
        if hop is None:
            self._chain = None
            self._on_connected()
        elif hop is Hop.PROXY_HANDSHAKE:
            self._start_proxy_handshake(chain)
        else:
            self._start_tls(chain, hop)

    def _start_tls(self, chain: Chain, hop: Hop) -> None:
        """A TLS handshake, with the proxy (``PROXY_TLS``) or the origin, inside what is there."""
        opts = self._opts
        if hop is Hop.PROXY_TLS:
            assert opts.proxy is not None
            context = opts.proxy_tls_context or default_context()
            name, port = opts.proxy.host, opts.proxy.port
        else:
            context = opts.tls_context or default_context(opts.speaks)
            name, port = opts.server_hostname or self._conn.host, self._conn.port
            self._phases.aim(self._conn.host, port)  # the origin's, from now on
        self._phases.begin(ConnectPhase.TLS_HANDSHAKE, context, server_hostname=name)
        if opts.tls_handshake_timeout is not None:
            chain.timer = self._schedule(Timer.TLS_DEADLINE, opts.tls_handshake_timeout)
        self._push_tls(context, name)

    def _push_tls(self, context: ssl.SSLContext, name: str) -> Layers | None:
        """Start a TLS session with ``name`` inside those there are; None if the write failed."""
        layers = self._layers
        if layers is None:
            layers = self._layers = Layers()
        return layers if self._write_raw(layers.push(TlsLayer(context, name))) else None

    def _start_proxy_handshake(self, chain: Chain) -> None:
        """Ask the proxy for the tunnel to the origin (HTTP CONNECT or SOCKS5)."""
        proxy = self._opts.proxy
        assert proxy is not None
        host = chain.origin_address or self._conn.host
        chain.handshake = handshake = handshake_for(proxy, host, self._conn.port)
        self._phases.begin(ConnectPhase.PROXY_HANDSHAKE)
        self._write_through(handshake.start())

    def _through_proxy(self, handshake: ProxyHandshake, data: bytes) -> bytes | None:
        """The proxy's answer to the handshake; what came after its end, for the origin.

        None if the handshake failed (a failed attempt) or is not over.
        """
        try:
            answer = handshake.receive(data)
        except ProxyError as exc:
            self._connection_failed(exc)
            return None
        if answer and not self._write_through(answer):
            return None
        if not handshake.done:
            return None
        chain = self._chain
        assert chain is not None
        self._phases.end({"protocol": plain_protocol(self._conn)} if chain.last else {})
        epoch, sessions = self._epoch, len(self._layers or ())
        self._next_hop(chain)
        rest = handshake.leftover()
        if self._epoch != epoch or self._is_stopped() or not rest:
            return None
        layers = self._layers
        if layers is not None and len(layers) > sessions:  # the origin's TLS, just begun
            return self._from_layers(layers.feed_inner, rest)
        return rest

    def _write_raw(self, data: bytes) -> bool:
        """Write bytes for the socket; on failure the connection is lost (False)."""
        transport = self._transport
        if not data or transport is None:
            return True
        error = self._writer.write(transport, data)
        if error is not None:
            self._connection_failed(error)
            return False
        return True

    def _write_through(self, plaintext: bytes) -> bool:
        """Write ``plaintext`` through the TLS sessions there are (:meth:`_write_raw`)."""
        layers = self._layers
        return self._write_raw(plaintext if layers is None else layers.send(plaintext))

    def _on_writable(self) -> None:
        """The socket can take more of the backlog: send it (without blocking)."""
        transport = self._transport
        if transport is not None:
            error = self._writer.writable(transport)
            if error is not None:
                self._connection_failed(error)

    def _send_deadline_passed(self) -> None:
        late = self._writer.deadline_passed(self._transport)
        if late is not None:
            self._lost(late)

    def _held_elsewhere(self) -> int:
        """The bytes held for the wire besides the socket's backlog (see ``_writer``)."""
        proto = self._proto
        return self._pending_size + (proto.held_size if proto is not None else 0)

    def _connection_failed(self, reason: BaseException) -> None:
        """The socket failed: before Up it is a failed attempt, after it a lost connection."""
        if self._proto is None:
            self._phases.end({"error": reason})  # the phase it failed in
            self._close_transport()
            self._retry_or_stop(reason)
        else:
            self._lost(reason)

    def _from_layers(self, receive: Callable[[bytes], Received], data: bytes) -> bytes | None:
        """Decrypt ``data``, answering the sessions; the plaintext, or None if there is none.

        ``receive``: ``Layers.receive`` (bytes from the socket) or
        ``Layers.feed_inner`` (a proxy handshake's leftover). None also when
        a handshake failed or ended the connection, or the server closed TLS
        (reported here). The end of a handshake is the end of its hop: the
        next one begins, or the connection is up.
        """
        try:
            received = receive(data)
        except ssl.SSLError as exc:
            self._connection_failed(exc.with_traceback(None))
            return None
        if not self._write_raw(received.out):
            return None
        if received.handshake_ended:
            epoch = self._epoch
            chain = self._chain
            if chain is not None:
                self._hop_tls_done(chain)
            elif self._tunnels.handshaking:
                self._tunnel_tls_done()
            if self._epoch != epoch or self._is_stopped():
                return None  # what came next failed, or the owner went at the Up
        if received.closed and not received.plain:
            self._on_closed(None)
            return None
        return received.plain

    def _hop_tls_done(self, chain: Chain) -> None:
        """A TLS hop of the attempt ended: its phase's end, then the next hop (or Up)."""
        if chain.last:  # the origin's TLS: what ALPN chose
            http2 = layers_alpn(self._layers) == "h2"
            self._phases.end({"protocol": "http2" if http2 else "http"})
        else:
            self._phases.end({})
        self._next_hop(chain)

    def _on_connected(self) -> None:
        self._state = State.UP
        self._retries.up(self._scheduler.now())
        tls = self._opts.transport == "tls"
        # HTTP/2 if the origin's TLS (the innermost) chose h2 by ALPN, or by prior knowledge.
        http2 = layers_alpn(self._layers) == "h2" if tls else self._opts.speaks == ("http2",)
        self._proto = proto = self._new_protocol(
            self._conn.host, self._conn.port, tls=tls, http2=http2
        )
        self._conn._set_multiplexed(http2)
        if not self._deliver(Up(self._conn, proto.protocol)):
            return
        if proto.protocol == "http2":
            self._flush()  # the client preface and SETTINGS
            if not self._is_up():
                return
        self._keepalive.up()
        for command in self._take_pending():
            self._command(command)
            if not self._is_up():
                return
        again = self._upgrades.again()
        if again is not None:
            self._command(again)

    def _new_protocol(
        self, host: str, port: int, *, tls: bool, http2: bool = False
    ) -> ProtocolEngine:
        """The protocol for a server: the connection's, or a tunnel's destination.

        HTTP/2 (``http2``) or HTTP/1.1; a tunnel's destination speaks HTTP/1.1.
        """
        authority = host_authority(host, port, tls=tls)
        if http2:
            return Http2Protocol(
                self._conn,
                authority=authority,
                scheme="https" if tls else "http",
                http_opts=self._opts.http_opts,
                ws_opts=self._opts.ws_opts,
                http2_opts=self._opts.http2_opts,
                observe=self._phases.observe,
            )
        return ClientProtocol(
            self._conn,
            authority=authority,
            http_opts=self._opts.http_opts,
            ws_opts=self._opts.ws_opts,
            observe=self._phases.observe,
        )

    def _open_tunnel(self, tunnel: Tunnel) -> None:
        """A CONNECT succeeded (its Response is delivered): talk to its destination now.

        A ``"tls"`` destination first gets its TLS session, pushed inside
        the ones there are (Gun's ``tls_handshake`` state): commands wait
        meanwhile, and its end is the tunnel's ``TunnelUp``.
        """
        pending = self._tunnels.pending
        assert pending is not None
        assert pending[0] is tunnel.stream  # one CONNECT at a time
        stream, destination, _ = pending
        if not destination.tls:
            self._tunnel_up(tunnel.leftover)
            return
        context = destination.tls_context or default_context()
        name = destination.server_hostname or destination.host
        timeout = destination.tls_handshake_timeout
        data = self._tunnels.handshake = {
            "stream": stream,
            "host": destination.host,
            "port": destination.port,
            "server_hostname": name,
            "tls_context": context,
            "timeout": timeout,
        }
        self._phases.emit("tls_handshake_start", dict(data))
        if timeout is not None:
            self._schedule(Timer.TUNNEL_TLS_DEADLINE, timeout)
        layers = self._push_tls(context, name)
        if layers is not None and tunnel.leftover:
            plain = self._from_layers(layers.feed_inner, tunnel.leftover)
            proto = self._proto
            if plain and proto is not None:
                proto.receive_data(plain)
                self._flush()

    def _tunnel_tls_done(self) -> None:
        """The TLS handshake inside the tunnel succeeded: the tunnel is up."""
        data = self._tunnels.handshake
        assert data is not None
        self._phases.emit("tls_handshake_end", {**data, "protocol": "http"})
        self._tunnel_up(b"")

    def _tunnel_up(self, leftover: bytes) -> None:
        """Gun's ``gun_tunnel_up``: a new protocol speaks to the destination, fed ``leftover``.

        Then the commands that waited for the tunnel's TLS handshake go, in order.
        """
        pending = self._tunnels.pending
        assert pending is not None
        stream, destination, reply_to = pending
        proto = self._proto = self._new_protocol(
            destination.host, destination.port, tls=destination.tls
        )
        self._tunnels.up(stream)
        event = TunnelUp(self._conn, stream, "http")
        if not self._tell_stream(event, reply_to):
            return
        if leftover:
            proto.receive_data(leftover)
            self._flush()
        for command in self._take_pending():
            if self._proto is not proto:
                self._command_not_up(command)  # lost meanwhile: kept for the next Up
            else:
                self._command(command)

    def _tell_stream(self, event: Event, reply_to: Delivery | None) -> bool:
        """Tell a stream's event to its ``reply_to`` (None: the owner); False if the owner went."""
        if reply_to is None:
            return self._deliver(event)
        return self._told(self._router.tell_reply_to(reply_to, [event]))

    def _is_up(self) -> bool:
        return self._state is State.UP

    def _is_stopped(self) -> bool:
        return self._state is State.STOPPED

    def _retry_or_stop(self, reason: BaseException) -> None:
        """After a failed attempt or a lost connection: wait and retry, or give up."""
        if self._router.owner_gone:  # the owner went while it was up: no reconnect
            self._finish(OwnerDown("the owner stopped"), final_error=False)
            return
        exhausted = self._retries.exhausted(reason)
        if exhausted is not None:
            self._finish(exhausted, final_error=True)
            return
        try:
            delay = self._retries.next_delay()
        except Exception as exc:
            if not self._deliver(Error(self._conn, None, exc)):
                return
            delay = self._opts.retry_timeout
        self._state = State.WAITING
        if delay <= 0:
            self._connect()
            return
        self._schedule(Timer.RETRY, delay)

    def _on_tick(self, tick: msg.Tick) -> None:
        """A timer fired: its kind's handler, unless it was one of a dropped connection."""
        if tick.epoch in (self._epoch, msg.LIFELONG):
            self._TICKS[tick.kind](self)

    def _tick_connect(self) -> None:
        if self._state is State.CONNECTING:
            # The owner is watched from now on, whatever the state (Gun monitors
            # it from the start): a connection that never connects stops too.
            self._schedule(Timer.OWNER_CHECK, OWNER_CHECK_INTERVAL)
            self._phases.init()
            self._connect()

    def _tick_retry(self) -> None:
        if self._state is State.WAITING:
            self._connect()

    def _tick_connect_deadline(self) -> None:
        if self._state is State.CONNECTING:
            self._connection_failed(
                ConnectTimeout(
                    f"connecting to {self._conn._where}{self._through()} (TLS handshake "
                    f"included) took longer than {self._opts.connect_timeout} s"
                )
            )

    def _through(self) -> str:
        """`` through the proxy ...`` for messages, if there is one."""
        proxy = self._opts.proxy
        return "" if proxy is None else f" through the proxy {proxy.url}"

    def _tick_lookup_deadline(self) -> None:
        self._phase_deadline(ConnectPhase.DOMAIN_LOOKUP)

    def _tick_tls_deadline(self) -> None:
        self._phase_deadline(ConnectPhase.TLS_HANDSHAKE)

    def _phase_deadline(self, phase: ConnectPhase) -> None:
        """A phase's own bound passed: the attempt fails, if it is still in that phase."""
        if self._state is State.CONNECTING and self._phases.attempt is phase:
            what = phase.describe(*self._phases.target)
            self._connection_failed(
                ConnectTimeout(
                    f"{what} took longer than {phase.option} ({phase.timeout(self._opts)} s)"
                )
            )

    def _tick_closing(self) -> None:
        if self._state is State.CLOSING:
            self._stop_now(self._closing_end("timed out (closing_timeout); closed"))

    def _goaway_deadline(self) -> None:
        """The streams a graceful GOAWAY let finish did not in time: the connection ends."""
        proto = self._proto
        if proto is not None:
            proto.stop_draining()
            self._flush()

    def _tick_owner_check(self) -> None:
        """Every OWNER_CHECK_INTERVAL, in any state: is the owner there? Proven yet?"""
        if self._state is State.UP:
            self._retries.lasted(self._scheduler.now())
        self._check_owner()

    def _tick_ws_fail(self) -> None:
        if self._lingering is not None:
            self._lingering.fail_now()
            self._flush()

    def _tick_head(self) -> None:
        """A response (or upgrade) head is late: fail its stream, and the connection."""
        if self._heads.fired(self._proto, self._transport):
            self._flush()

    _TICKS: dict[Timer, Callable[[ConnectionActor], None]]  # set after the class
    _DISPATCH: dict[type, Callable[[ConnectionActor, Any], Any]]  # set after the class

    # -- up ----------------------------------------------------------------------

    def _command(self, command: msg.Command) -> None:
        if self._held_back(command):
            return
        proto = self._proto
        assert proto is not None  # up: _held_back let it through
        match command:
            case msg.RequestCmd(stream, method, target, headers, body, flow, _, reply_to):
                self._route(stream, reply_to)
                self._flow_used |= flow is not None
                proto.request(stream, method, target, headers, body, flow=flow)
            case msg.HeadersCmd(stream, method, target, headers, flow, _, reply_to):
                self._route(stream, reply_to)
                self._flow_used |= flow is not None
                proto.headers(stream, method, target, headers, flow=flow)
            case msg.DataCmd(stream, fin, data):
                proto.data(stream, fin, data)
            case msg.Cancel(stream):
                self._cancel(proto, stream)
            case msg.UpdateFlow(stream, increment):
                proto.update_flow(stream, increment)
            case msg.WsUpgrade() | msg.ConnectCmd():
                self._switching(proto, command)
            case msg.WsSend():
                self._ws_send(proto, command)
            # Close and Shutdown never come here: on_receive handles them.
        self._flush()
        if proto.held_size:  # a body queued behind an earlier request: the send buffer counts it
            self._writer.count(self._transport)

    def _on_ping(self, command: msg.PingCmd) -> None:
        """``conn.ping()``: the protocol sends it (or refuses it); kept while not up."""
        proto = self._proto
        if self._held_back(command) or proto is None:
            return
        proto.ping(command.stream)
        self._flush()

    def _held_back(self, command: msg.Command) -> bool:
        """Whether ``command`` cannot go to the protocol now (it was kept or refused).

        Kept or refused while not up (``_command_not_up``); refused if its
        ``tunnel`` is not the one the connection is up through, Gun's
        ``badstate`` ("The stream is not a tunnel."): an ``Error`` for its
        stream, nothing sent.
        """
        if self._state is not State.UP or self._proto is None or self._tunnels.handshaking:
            self._command_not_up(command)
            return True
        tunnel = getattr(command, "tunnel", None)
        refusal = None if tunnel is None else self._tunnels.refusal(tunnel)
        if refusal is None:
            return False
        self._refuse(command, refusal)
        return True

    def _switching(self, proto: ProtocolEngine, command: msg.WsUpgrade | msg.ConnectCmd) -> None:
        """The requests whose success switches what the connection speaks (upgrade, CONNECT)."""
        if isinstance(command, msg.WsUpgrade):
            self._ws_upgrade(proto, command)
        else:
            self._connect_cmd(proto, command)

    def _connect_cmd(self, proto: ProtocolEngine, command: msg.ConnectCmd) -> None:
        """Send a CONNECT; remember where it goes until its answer (``_open_tunnel``)."""
        stream, destination = command.stream, command.destination
        self._route(stream, command.reply_to)
        if proto.connect(
            stream,
            destination.authority,
            command.headers,
            username=destination.username,
            password=destination.password,
        ):
            self._tunnels.pending = (stream, destination, command.reply_to)

    def _command_not_up(self, command: msg.Command) -> None:
        """A command while not up: refused while closing, else kept (frames refused)."""
        if self._state is State.CLOSING:
            self._refuse(command, self._closing_end("is under way: not sent"))
            return
        if isinstance(command, msg.WsSend):
            self._refuse(
                command,
                NotUpgradedError("the connection is down; frames not sent", command.frames),
            )
        elif isinstance(command, msg.Cancel):
            if self._phases.handler is not None and any(
                getattr(c, "stream", None) is command.stream for c in self._pending
            ):
                self._phases.cancelled(command.stream)
            self._pending = [
                c for c in self._pending if getattr(c, "stream", None) is not command.stream
            ]
            self._pending_size = sum(getattr(c, "size", 0) for c in self._pending)
        else:
            self._pending.append(command)
            self._pending_size += getattr(command, "size", 0)
        self._writer.count(self._transport)

    def _cancel(self, proto: ProtocolEngine, stream: StreamRef) -> None:
        if (
            self._phases.handler is not None
            and proto.ws is None
            and proto.stream_state(stream) is not None
        ):
            self._phases.cancelled(stream)
        proto.cancel(stream)

    def _ws_upgrade(self, proto: ProtocolEngine, command: msg.WsUpgrade) -> None:
        stream, opts = command.stream, command.opts
        self._route(stream, command.reply_to)
        self._phases.emit("ws_upgrade", {"stream": stream, "opts": opts})
        self._upgrades.asked(command)
        if opts.upgrade_timeout is not None:
            self._heads.wanted = True
        self._flow_used |= opts.flow is not None
        proto.ws_upgrade(stream, command.target, command.headers, opts)

    def _refuse_unsent(self, proto: ProtocolEngine, reason: BaseException) -> None:
        """The requests queued behind the one in progress will never be sent: an Error each."""
        self._fail_streams(proto.take_unsent(), reason)

    def _fail_streams(self, streams: Iterable[StreamRef], reason: BaseException) -> None:
        """An ``Error`` for each stream, to its ``reply_to`` if it has one (its route ends)."""
        errors: list[Event] = [Error(self._conn, stream, reason) for stream in streams]
        if errors:
            found = self._router.tell_all(errors)
            if found:
                self._told(found)

    def _take_pending(self) -> list[msg.Command]:
        pending, self._pending = self._pending, []
        self._pending_size = 0
        return pending

    def _on_ws_send(self, command: msg.WsSend) -> None:
        """The most frequent command, without ``_command``'s dispatch when up."""
        proto = self._proto
        if self._state is not State.UP or proto is None:
            self._command(command)  # refused there
            return
        self._ws_send(proto, command)
        self._flush()

    def _ws_send(self, proto: ProtocolEngine, command: msg.WsSend) -> None:
        for frame in command.frames:
            if isinstance(frame, CloseFrame):
                self._upgrades.closed_by_user()  # a close the user sent is final (Gun)
        proto.ws_send(command.frames, command.stream)

    def _refuse(self, command: msg.Command, reason: BaseException) -> None:
        if isinstance(command, msg.Cancel | msg.UpdateFlow | msg.Close | msg.Shutdown):
            return
        if isinstance(command, msg.SetOwner):
            self._router.owner = command.delivery  # it took effect: later events go there
            return
        stream: StreamRef | None = getattr(command, "stream", None)
        if isinstance(command, msg.WsSend) and not isinstance(reason, NotUpgradedError):
            # Its frames, for the caller to resend (as for frames refused while down).
            reason = NotUpgradedError(f"frames not sent: {reason}", command.frames)
        error = Error(self._conn, stream, reason)
        reply_to: Delivery | None = getattr(command, "reply_to", None)
        if reply_to is None:
            self._deliver(error)
        else:
            self._told(self._router.tell_reply_to(reply_to, [error]))

    def _flush(self) -> None:
        """Write what the protocol produced, deliver its events, act on a close."""
        proto = self._proto
        if proto is None:
            return
        chunks, events, close_reason, failing = proto.drain()
        write_error: OSError | None = None
        transport = self._transport
        if chunks and transport is not None:
            layers = self._layers
            # TLS encrypts into new records anyway: join the pieces for it.
            out = chunks if layers is None else layers.send(b"".join(chunks))
            if out:
                write_error = self._writer.write(transport, out)  # events first, then Down
        # Delivering runs no protocol call (commands told meanwhile are
        # queued behind this turn): close_reason and failing still hold.
        if events and not self._deliver_events(events):
            return
        if failing is not None and self._lingering is not failing:
            self._lingering = failing  # answers to the messages before the bad frame go out first
            self._schedule(Timer.WS_FAIL, FAIL_LINGER)
        lost_reason = write_error or close_reason
        if lost_reason is not None:
            self._lost(lost_reason)
            return
        if self._state is State.CLOSING:
            self._shutdown_step(proto)
        if proto.draining and self._drain_epoch != self._epoch:
            # A server's graceful GOAWAY: the streams it may still answer get
            # closing_timeout to finish (Gun's), not for ever.
            self._drain_epoch = self._epoch
            self._schedule(Timer.GOAWAY_DEADLINE, self._opts.http_opts.closing_timeout)
        if self._flow_used or self._heads.wanted:  # neither, usually: no more calls
            self._after_flush(proto)

    def _after_flush(self, proto: ProtocolEngine) -> None:
        """What a flush may have changed for reading: flow credit, a head to wait for."""
        if self._flow_used:
            flow_held = proto.flow_paused
            if flow_held != self._flow_held:
                self._flow_held = flow_held
                self._sync_reads()
        if self._heads.wanted:
            self._heads.follow(proto)

    def _hold_reads(self) -> bool:
        """Whether reading must pause now (read by the I/O thread too: state only)."""
        return self._flow_held or self._conn._holds_reads()

    def _sync_reads(self) -> None:
        transport = self._transport
        if transport is not None:
            transport.sync_reads()

    def _resync_reads(self) -> None:
        """The owner took enough (its thread, perhaps holding its Inbox's lock)."""
        transport = self._transport
        if transport is not None:
            transport.resync_reads()

    def _shutdown_step(self, proto: ProtocolEngine) -> None:
        """While shutting down, after each flush: stop once idle, or close a new Websocket."""
        if proto.ws is None and not proto.busy:
            self._stop_now(self._closing_end("completed"))
        elif proto.close_websockets(GOING_AWAY):
            # Upgraded while shutting down (an upgrade in flight then, over
            # HTTP/1.1 or HTTP/2): closed as shutdown() closes one.
            self._flush()

    def _deliver_events(self, events: list[Event]) -> bool:
        """Deliver what one read or command produced; False if the owner is gone."""
        for event in events:
            if isinstance(event, Upgrade):
                inside = self._tunnels.innermost is not None
                command = self._upgrades.upgraded(event.stream, repeatable=not inside)
                self._keepalive.upgraded(command.opts.keepalive if command is not None else None)
        if self._upgrades.waiting:
            self._upgrades.answered(events)
        if not self._retries.proven and self._proto is not None:
            self._retries.answered(events)
        found = self._router.tell_all(events)
        return self._told(found) if found else True

    def _ws_ping(self) -> None:
        proto = self._proto
        if proto is not None and self._keepalive.ws_ping(proto, self._transport):
            self._flush()

    def _http_ping(self) -> None:
        proto = self._proto
        if proto is not None and self._keepalive.http_ping(proto):
            self._flush()

    def _pong_deadline(self) -> None:
        dead = self._keepalive.pong_deadline(self._proto, self._transport)
        if dead is not None:
            self._lost(dead)

    def _check_owner(self) -> None:
        """Owner monitoring for idle connections, where no ``tell`` would fail."""
        if self._owner_stopped():
            self._owner_gone()
        else:
            self._schedule(Timer.OWNER_CHECK, OWNER_CHECK_INTERVAL)

    def _on_owner_closed(self, _: msg.OwnerClosed) -> None:
        """The owner's Inbox says it closed: the owner check's look, at once."""
        if self._owner_stopped():
            self._owner_gone()

    def _owner_stopped(self) -> bool:
        """The owner is a closed Inbox, or an actor no longer alive."""
        owner = self._conn.owner
        is_alive = getattr(owner, "is_alive", None)
        return bool(getattr(owner, "closed", False)) or (callable(is_alive) and not is_alive())

    def _schedule(self, kind: Timer, delay: float) -> TimerHandle:
        """Tick ``kind`` in ``delay`` seconds (cancelled with the connection, unless lifelong)."""
        if kind.lifelong:  # the owner check: one at a time, until stopped
            self._owner_check = self._scheduler.call_later(
                delay, lambda: self._report(msg.Tick(msg.LIFELONG, kind))
            )
            return self._owner_check
        epoch = self._epoch
        timer = self._scheduler.call_later(delay, lambda: self._report(msg.Tick(epoch, kind)))
        self._timers = [t for t in self._timers if not t.done]
        self._timers.append(timer)
        return timer

    def _on_closed(self, reason: BaseException | None) -> None:
        """The I/O thread saw the socket close (EOF or error)."""
        proto = self._proto
        if proto is None:
            if self._state is State.CONNECTING:  # during a TLS or proxy handshake
                self._connection_failed(reason or self._closed_while_connecting())
            return
        if reason is None:
            proto.receive_data(b"")
            self._flush()
            if self._proto is None:
                return  # handled as a protocol close
        self._lost(reason or ConnectionClosed())

    def _closed_while_connecting(self) -> BaseException:
        """Why an attempt failed when the server closed the connection (a proxy's words)."""
        chain = self._chain
        if chain is not None and chain.handshake is not None:
            try:
                chain.handshake.receive(b"")  # the end: the handshake names what it waited for
            except ProxyError as exc:
                return exc
        during = self._phases.attempt or ConnectPhase.TLS_HANDSHAKE
        return ConnectionClosed(
            f"the server closed the connection during {during.describe(*self._phases.target)}"
        )

    def _lost(self, reason: BaseException) -> None:
        """The connection ended: Down, then reconnect (or stop if shutting down)."""
        shutting_down = self._state is State.CLOSING
        self._down(reason)
        if self._is_stopped():
            return  # the owner vanished while being told
        if shutting_down:
            self._finish(self._closing_end("completed"), final_error=False)
            return
        self._retry_or_stop(reason)

    def _down(
        self,
        reason: BaseException,
        also_killed: StreamRef | None = None,
        also_unprocessed: tuple[StreamRef, ...] = (),
    ) -> None:
        proto = self._proto
        assert proto is not None
        self._close_transport()
        killed, unprocessed = proto.lost_streams()
        if also_killed is not None and also_killed not in killed + unprocessed:
            killed = (*killed, also_killed)
        unprocessed += also_unprocessed
        protocol = proto.protocol
        self._proto = None
        self._upgrades.lost()
        handshake = self._tunnels.handshake
        opening = self._tunnels.lost()
        if opening is not None and handshake is not None:  # the handshake failed, or the
            self._tunnel_failed(opening, handshake, reason)  # connection went under it
        self._writer.count(self._transport)
        self._phases.emit("disconnect", {"reason": reason})
        self._router.lost((*killed, *unprocessed), reason)
        self._deliver(Down(self._conn, protocol, reason, killed, unprocessed))

    def _tunnel_failed(
        self,
        opening: tuple[StreamRef, Destination, Delivery | None],
        handshake: dict[str, Any],
        reason: BaseException,
    ) -> None:
        """The tunnel never came up: its handshake's end (``error``), an ``Error`` for its stream.

        Gun only disconnects (``gun_down``); tether also tells the stream,
        whose owner waits for its ``TunnelUp``, why (before the ``Down``).
        """
        stream, _, reply_to = opening
        self._phases.emit("tls_handshake_end", {**handshake, "error": reason})
        self._tell_stream(Error(self._conn, stream, reason), reply_to)

    def _tick_tunnel_tls_deadline(self) -> None:
        pending = self._tunnels.pending
        if self._tunnels.handshaking and pending is not None:
            destination = pending[1]
            self._lost(
                ConnectTimeout(
                    f"the TLS handshake with {destination.authority} inside the tunnel took "
                    f"longer than tls_handshake_timeout ({destination.tls_handshake_timeout} s)"
                )
            )

    def _close_transport(self) -> None:
        # A new epoch first: whatever the old socket still reports is stale.
        self._epoch += 1
        self._layers = None
        self._chain = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._writer.dropped()
        self._heads.dropped()

    # -- stopping ------------------------------------------------------------------

    def _start_shutdown(self) -> None:
        """``shutdown()``, or the owner gone while up: close gracefully (Gun's ``closing``)."""
        proto = self._proto
        if self._state is State.CLOSING:
            return  # the owner went while a shutdown() was under way: it goes on
        if self._state is not State.UP or proto is None:
            self._stop_now(self._closing_end("was asked while not up"))
            return
        self._state = State.CLOSING
        # A Websocket's own closing_timeout (ws_upgrade's opts win over open's), or http_opts'.
        timeout = proto.closing_timeout(self._opts.http_opts.closing_timeout)
        if proto.ws is None:
            # Gun's shutdown: the requests in progress finish; those queued,
            # never sent, fail at once.
            self._refuse_unsent(proto, self._closing_end("lets only the request in progress end"))
        # A Websocket whose close handshake has begun (the user's close frame) is left to it.
        proto.close_websockets(GOING_AWAY)
        self._schedule(Timer.CLOSING, timeout)
        self._flush()

    def _closing_end(self, how: str) -> BaseException:
        """The reason a graceful close gives: the user's ``shutdown()``, or the owner gone."""
        if self._router.owner_gone:
            return OwnerDown(f"the owner stopped; closing {how}")
        return ClosedByUser(f"shutdown() {how}")

    def _stop_now(self, reason: BaseException) -> None:
        """``close()`` (or the end of a shutdown): stop at once, whatever is queued.

        Requests it overtook (queued in the mailbox, or kept while down)
        were never sent: on a connection that was up they are listed in the
        ``Down`` as unprocessed, as the protocol's own queue is.
        """
        unsent = self._take_pending() + self._close_mailbox()
        if self._proto is not None:
            never_sent = tuple(
                command.stream
                for command in unsent
                if isinstance(
                    command, msg.RequestCmd | msg.HeadersCmd | msg.WsUpgrade | msg.ConnectCmd
                )
            )
            # The rest (frames, body pieces) are refused before the Down, which
            # stays the last event.
            for command in unsent:
                if getattr(command, "stream", None) not in never_sent:
                    self._refuse(command, reason)
            self._down(reason, also_unprocessed=never_sent)
            unsent = []
        self._finish(reason, final_error=False, unsent=unsent)

    def _close_mailbox(self) -> list[msg.Command]:
        """Refuse later commands (at the call) and take those queued (see ``_finish``)."""
        return [
            envelope.message
            for envelope in self._mailbox.close()
            if envelope.reply_to is None and isinstance(envelope.message, msg.Command)
        ]

    def _finish(
        self,
        reason: BaseException,
        *,
        final_error: bool,
        unsent: list[msg.Command] | None = None,
    ) -> None:
        """Stop for good: refuse what was asked and not done, mark the handle, tell the owner last.

        The mailbox is closed first: a command told from now on is refused
        at the call (``ConnectionStoppedError``), one told before is taken
        here (or was, as ``unsent``) and refused with an ``Error`` for its
        stream: none is dropped.
        """
        state = self._phases.life_state(self._state)
        self._close_transport()
        self._stopped()
        if unsent is None:
            unsent = self._take_pending() + self._close_mailbox()
        for command in unsent:
            self._refuse(command, reason)
        self._conn._mark_stopped()
        if final_error:
            self._deliver(Error(self._conn, None, reason))
        self._phases.emit_safe("terminate", {"state": state, "reason": reason})
        self._stop_actor()

    def _stopped(self) -> None:
        """The state every end comes to; the lifelong timers end with it."""
        self._state = State.STOPPED
        owner_check, self._owner_check = self._owner_check, None
        if owner_check is not None:
            owner_check.cancel()

    def _stop_actor(self) -> None:
        # In on_failure pykka has stopped the actor already.
        with contextlib.suppress(pykka.ActorDeadError):
            self.stop()

    # -- the owner -----------------------------------------------------------------

    def _deliver(self, event: Event) -> bool:
        """Tell the owner; False if the connection stopped because it is gone."""
        found = self._router.tell(event)
        return self._told(found) if found else True

    def _told(self, found: int) -> bool:
        """Act on what telling found (``_routing``'s flags); False if the connection stopped."""
        if found & FULL:
            self._sync_reads()  # past the receive bound: stop reading
        if found & GONE:
            self._owner_left()
            return not self._is_stopped()
        return True

    def _owner_gone(self) -> None:
        """Owner monitoring found the owner stopped: from now on nobody hears the events."""
        if self._state is not State.STOPPED and self._router.drop_owner():
            self._owner_left()

    def _owner_left(self) -> None:
        """The owner is gone, and the router tells it nothing any more.

        As Gun's: a connection that is up closes gracefully, as ``shutdown()``
        does (the request in progress ends, a Websocket is closed with 1001;
        bounded by ``closing_timeout``); one that is not stops at once. The
        end's reason is ``OwnerDown`` (the ``terminate`` phase says so). A
        ``reply_to`` target still gets its stream's events.
        """
        if self._state is State.STOPPED:
            return
        self._conn._owner_left()  # its receive bound holds reading no more
        self._relend(None)  # no owner thread borrows the socket any more
        if self._state is State.UP and self._proto is not None:
            self._sync_reads()
            # Next, not now: a delivery may be under way in this turn.
            self._mailbox.tell_first(msg.Shutdown())
        elif self._state is not State.CLOSING:
            self._finish(OwnerDown("the owner stopped"), final_error=False)

    def _info(self) -> ConnectionInfo:
        proto = self._proto
        addresses = self._transport.addresses() if self._transport else None
        return ConnectionInfo(
            host=self._conn.host,
            port=self._conn.port,
            transport=self._opts.transport,
            protocol=proto.protocol if proto is not None else None,
            state=self._state,
            owner=self._conn.owner,
            local_address=addresses[0] if addresses else None,
            peer_address=addresses[1] if addresses else None,
            ws_stream=proto.ws_stream if proto is not None else None,
            reading_paused=self._transport is not None and self._transport.reads_paused,
            send_buffered=self._conn._send.held,
            unix_path=self._conn.unix_path,
            tunnels=self._tunnels.streams,
        )


def layers_alpn(layers: Layers | None) -> str | None:
    """What ALPN chose in the innermost TLS session (the origin's, once the chain is walked)."""
    return layers.innermost.alpn if layers is not None and len(layers) else None


def _when_up(handle: Callable[[ConnectionActor], None]) -> Callable[[ConnectionActor], None]:
    def when_up(actor: ConnectionActor) -> None:
        if actor._state is State.UP:
            handle(actor)

    return when_up


def _if_current(
    handle: Callable[[ConnectionActor, Any], None],
) -> Callable[[ConnectionActor, Any], None]:
    """``handle`` for I/O reports of the current connection; a replaced one's are dropped."""

    def if_current(actor: ConnectionActor, report: Any) -> None:
        if report.epoch == actor._epoch:
            handle(actor, report)

    return if_current


# Each message type's handler, for every actor (a table per actor was ~3 KiB
# a connection).
ConnectionActor._DISPATCH = {
    msg.BytesIn: ConnectionActor._on_bytes_in,
    msg.Resolved: _if_current(ConnectionActor._on_resolved),
    msg.Connected: _if_current(lambda actor, _: actor._on_tcp_connected()),
    msg.ConnectFailed: _if_current(lambda actor, m: actor._connection_failed(m.reason)),
    msg.Closed: _if_current(lambda actor, m: actor._on_closed(m.reason)),
    msg.Tick: ConnectionActor._on_tick,
    msg.Writable: _if_current(lambda actor, _: actor._on_writable()),
    msg.InfoQuery: lambda actor, _: actor._info(),
    msg.StreamInfoQuery: ConnectionActor._stream_info,
    msg.SetOwner: ConnectionActor._on_set_owner,
    msg.OwnerClosed: ConnectionActor._on_owner_closed,
    msg.Close: lambda actor, _: actor._stop_now(ClosedByUser("close() was called")),
    msg.Shutdown: lambda actor, _: actor._start_shutdown(),
    msg.WsSend: ConnectionActor._on_ws_send,
    msg.RequestCmd: ConnectionActor._command,
    msg.HeadersCmd: ConnectionActor._command,
    msg.DataCmd: ConnectionActor._command,
    msg.Cancel: ConnectionActor._command,
    msg.UpdateFlow: ConnectionActor._command,
    msg.WsUpgrade: ConnectionActor._command,
    msg.ConnectCmd: ConnectionActor._command,
    msg.PingCmd: ConnectionActor._on_ping,
}

# Each timer kind and what its tick does (the state checks are in the handlers).
ConnectionActor._TICKS = {
    Timer.CONNECT: ConnectionActor._tick_connect,
    Timer.RETRY: ConnectionActor._tick_retry,
    Timer.CONNECT_DEADLINE: ConnectionActor._tick_connect_deadline,
    Timer.CLOSING: ConnectionActor._tick_closing,
    Timer.GOAWAY_DEADLINE: _when_up(ConnectionActor._goaway_deadline),
    Timer.OWNER_CHECK: ConnectionActor._tick_owner_check,
    Timer.HTTP_PING: _when_up(ConnectionActor._http_ping),
    Timer.WS_PING: _when_up(ConnectionActor._ws_ping),
    Timer.PONG_DEADLINE: _when_up(ConnectionActor._pong_deadline),
    Timer.WS_FAIL: ConnectionActor._tick_ws_fail,
    Timer.SEND_DEADLINE: ConnectionActor._send_deadline_passed,
    Timer.HEAD: ConnectionActor._tick_head,
    Timer.LOOKUP_DEADLINE: ConnectionActor._tick_lookup_deadline,
    Timer.TLS_DEADLINE: ConnectionActor._tick_tls_deadline,
    Timer.TUNNEL_TLS_DEADLINE: ConnectionActor._tick_tunnel_tls_deadline,
}
