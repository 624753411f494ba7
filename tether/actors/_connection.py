"""The connection actor: one pykka ThreadingActor per connection, its thread started lazily.

States and the events the owner sees on each transition (Gun's state
machine, ``gun.erl``)::

    connecting --Connected--> up  ......................... Up(conn, "http")
    up --lost / close frame done--> (retry wait) .......... Down(...)
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
crash, a write backlog to drain). An exception in any of it is a crash
pykka reports to ``on_failure`` on the actor thread, never an exception
lost in a future or raised at the teller. The protocol work is delegated to
:class:`~tether.protocol.ClientProtocol`; this module only moves bytes and
events between it, the transport and the owner.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
from collections.abc import Callable
from typing import Any, Literal

import pykka

from tether._errors import (
    ClosedByUser,
    ConnectionClosed,
    ConnectTimeout,
    Crashed,
    InboxClosedError,
    NotUpgradedError,
    OwnerDown,
    PongTimeout,
    RetriesExhausted,
)
from tether._events import (
    Data,
    Down,
    Error,
    Event,
    Response,
    StreamRef,
    Trailers,
    Up,
    Upgrade,
    Ws,
)
from tether._frames import Close as CloseFrame
from tether._frames import Ping as PingFrame
from tether.actors import _messages as msg
from tether.actors._handle import Connection, ConnectionInfo
from tether.actors._inbox import Inbox
from tether.actors._lazy import LazyThreadingActor
from tether.actors._mailbox import Reraise
from tether.actors._scheduler import TimerHandle, default_scheduler
from tether.actors._supervised import Supervised
from tether.actors._tls import TlsLayer, default_context
from tether.actors._transport import TcpTransport, Transport
from tether.protocol import ClientProtocol
from tether.protocol._ws import FAIL_LINGER, WsClient

__all__ = ["ConnectionActor"]

log = logging.getLogger("tether.connection")

State = Literal["connecting", "up", "waiting", "closing", "stopped"]

# Seconds between owner liveness checks of a connection that is up. A tell
# to a dead owner is noticed at once; this catches idle connections.
OWNER_CHECK_INTERVAL = 2.0

# What a teller may handle itself while the actor is idle: everything the
# actor is told except asks, pykka's own messages (see _mailbox) and Drain
# (sendall of a backlog may block up to SEND_TIMEOUT: the actor thread's job).
_INLINE = frozenset(
    {
        msg.RequestCmd,
        msg.HeadersCmd,
        msg.DataCmd,
        msg.Cancel,
        msg.WsUpgrade,
        msg.WsSend,
        msg.Close,
        msg.Shutdown,
        msg.Connected,
        msg.ConnectFailed,
        msg.BytesIn,
        msg.Closed,
        msg.Tick,
    }
)


def _refuse_all(message: object) -> bool:
    """The Mailbox's ``run_inline`` when tellers may not run the actor (see ``_inline_ok``)."""
    return False


def _checked_delay(delay: float) -> float:
    import threading  # noqa: PLC0415 (to move to the top once this module's rewrite lands)

    # inf (or past TIMEOUT_MAX, 292 years on Linux) would leave the connection
    # "waiting" for good instead of retrying.
    if math.isnan(delay) or delay < 0 or delay > threading.TIMEOUT_MAX:
        raise ValueError(
            f"retry_backoff returned {delay!r}; a delay must be >= 0 and finite "
            f"(at most threading.TIMEOUT_MAX, {threading.TIMEOUT_MAX:.0f} s)"
        )
    return delay


class ConnectionActor(Supervised, LazyThreadingActor):
    """Owns one socket at a time and tells the owner about everything.

    A ``Supervised`` actor: it reports its exit to its supervisor, which
    restarts it with the same handle after a crash. Its thread starts only
    when a message has to wait for it (``LazyThreadingActor``), and is a
    daemon thread (from ``Supervised``): a connection the program forgot to
    close must not keep the interpreter alive (an ``atexit`` hook closes
    the remaining ones).
    """

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self._conn = conn
        # Tellers may run this actor only if what it calls out to cannot block
        # them or run user code on their thread: no event handler, and an
        # owner whose tell returns at once (an Inbox or a pykka ActorRef as
        # they are: a subclass may have a tell of its own, e.g. a bounded queue
        # the very thread that tells us consumes).
        self._inline_ok = conn.opts.event_handler is None and type(conn.owner) in (
            Inbox,
            pykka.ActorRef,
        )
        self._dispatch = self._dispatch_table()
        self._mailbox.bind(
            self._run_inline if self._inline_ok else _refuse_all, self.actor_stopped
        )
        # Events are delivered in batches to an Inbox (without an event
        # handler, which must see each event before the owner does).
        owner = conn.owner
        self._batch_to = (
            owner if type(owner) is Inbox and conn.opts.event_handler is None else None
        )
        self._opts = conn.opts
        self._epoch = 0
        self._state: State = "connecting"
        self._transport: Transport | None = None
        self._proto: ClientProtocol | None = None
        # Commands given while no connection is up, replayed at the next Up.
        self._pending: list[msg.Command] = []
        self._retries_left = self._opts.retry
        self._attempt = 0
        self._attempts_since_up = 0
        # Timers of the current connection; cancelled whenever it is dropped.
        self._timers: list[TimerHandle] = []
        # Upgrade commands of this connection by stream, to find the one that
        # succeeded; with ws_opts reupgrade it is repeated after each reconnect.
        self._upgrades: dict[StreamRef, msg.WsUpgrade] = {}
        self._reupgrade: msg.WsUpgrade | None = None
        # One mark per keepalive ping awaiting its deadline: the pong count when it went out.
        self._pong_marks: list[int] = []
        # The Websocket whose failure lingers (see FAIL_LINGER), once its timer is set.
        self._lingering: WsClient | None = None
        self._handling: object = None  # the message being handled, for crash reports
        self._tls: TlsLayer | None = None
        # What was told before this generation existed (open() does not wait
        # for it) or left by a crashed one goes first, before the first
        # connect and anything told after.
        conn._adopt(self.actor_ref)
        # The first attempt starts from a told message, not from on_start: an
        # exception in on_start is no crash to pykka (neither on_failure nor
        # on_stop runs). Queued until on_start is over; then the thread that
        # starts this actor (the supervisor's) handles it, and connecting
        # begins without any actor thread (LazyThreadingActor).
        self._report(msg.Tick(self._epoch, "connect"))

    # -- pykka hooks -------------------------------------------------------------

    def on_stop(self) -> None:
        """Stopped from outside (a supervisor, interpreter exit): close quietly.

        Under a supervisor, the supervisor's ``on_exit`` callback ends the
        handle and tells the owner why; without one, the handle ends here.
        """
        if self._state != "stopped":
            self._state = "stopped"
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
            if self._proto is not None and self._state in ("up", "closing"):
                self._down(reason, also_killed=crashed)
            elif crashed is not None:
                self._deliver(Error(self._conn, crashed, reason))
            for command in self._pending:
                self._refuse(command, reason)
            self._pending = []
            if self.supervisor_ref is None and not self._is_stopped():
                self._finish(reason, final_error=True)
        finally:
            self._state = "stopped"
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
        if self._state != "stopped":
            self._handling = message
            self._dispatch[kind](message)
        return True

    def on_receive(self, message: Any) -> Any:
        """Dispatch a command or an I/O report (by its type: this runs for every message)."""
        handle = self._dispatch.get(type(message))
        if handle is None:
            if isinstance(message, Reraise):
                raise message.error  # handled inline by a teller, and it crashed
            return None if self._state == "stopped" else super().on_receive(message)
        if self._state == "stopped":
            return None
        self._handling = message
        return handle(message)

    def _dispatch_table(self) -> dict[type, Callable[[Any], Any]]:
        """Each message type's handler. I/O reports of a replaced connection are dropped."""
        return {
            msg.BytesIn: self._on_bytes_in,
            msg.Connected: self._if_current(lambda _: self._on_tcp_connected()),
            msg.ConnectFailed: self._if_current(lambda m: self._connection_failed(m.reason)),
            msg.Closed: self._if_current(lambda m: self._on_closed(m.reason)),
            msg.Tick: self._if_current(lambda m: self._on_tick(m.kind)),
            msg.Drain: self._if_current(lambda _: self._drain()),
            msg.InfoQuery: lambda _: self._info(),
            msg.Close: lambda _: self._stop_now(ClosedByUser("close() was called")),
            msg.Shutdown: lambda _: self._start_shutdown(),
            msg.WsSend: self._on_ws_send,
            msg.RequestCmd: self._command,
            msg.HeadersCmd: self._command,
            msg.DataCmd: self._command,
            msg.Cancel: self._command,
            msg.WsUpgrade: self._command,
        }

    def _if_current(self, handle: Callable[[Any], None]) -> Callable[[Any], None]:
        def current(report: Any) -> None:
            if report.epoch == self._epoch:
                handle(report)

        return current

    def _on_bytes_in(self, report: msg.BytesIn) -> None:
        """Bytes read from the current socket: decrypt (TLS), feed the protocol, flush."""
        if report.epoch != self._epoch:
            return
        data: bytes | None = report.data
        if self._tls is not None:
            data = self._from_tls(report.data)
        proto = self._proto
        if proto is not None and data:
            proto.receive_data(data)
            self._flush()

    # -- connecting ----------------------------------------------------------------

    def _report(self, report: msg.IoReport) -> None:
        """Called from the connect or I/O thread: hand a report to the actor."""
        # Not contextlib.suppress: it costs two calls on every report.
        try:  # noqa: SIM105
            self._mailbox.tell(report)  # actor_ref.tell, without its envelope
        except pykka.ActorDeadError:
            pass  # the actor is gone, and so is interest in this socket

    def _connect(self) -> None:
        self._epoch += 1
        self._attempts_since_up += 1
        self._state = "connecting"
        self._handler("connect_start", {"host": self._conn.host, "port": self._conn.port})
        self._transport = TcpTransport(
            self._report,
            self._epoch,
            self._conn.host,
            self._conn.port,
            self._opts.connect_timeout,
            # A thread waiting in the owner Inbox may read the socket itself
            # (tether.actors._lending): what it reads is handled inline there.
            lending=self._batch_to._lending if self._batch_to is not None else None,
        )
        self._transport.start()
        if self._opts.connect_timeout is not None:
            # The socket's own timeout covers DNS and TCP; this one the whole
            # attempt, the TLS handshake included.
            self._schedule("connect_deadline", self._opts.connect_timeout)

    def _on_tcp_connected(self) -> None:
        if self._opts.transport != "tls":
            self._on_connected()
            return
        # TLS: the connection is up only once the handshake has succeeded.
        context = self._opts.tls_context or default_context()
        self._tls = TlsLayer(context, self._conn.host)
        self._write_raw(self._tls.start())

    def _write_raw(self, data: bytes) -> bool:
        """Write bytes to the socket; on failure the connection is lost (False)."""
        if not data or self._transport is None:
            return True
        try:
            self._transport.write(data)
        except OSError as exc:  # WriteTimeout included
            self._connection_failed(exc)
            return False
        return True

    def _drain(self) -> None:
        """Send what the socket did not take at once (may block up to SEND_TIMEOUT)."""
        if self._transport is None:
            return
        try:
            self._transport.drain()
        except OSError as exc:  # WriteTimeout included
            self._connection_failed(exc)

    def _connection_failed(self, reason: BaseException) -> None:
        """The socket failed: before Up it is a failed attempt, after it a lost connection."""
        if self._proto is None:
            self._close_transport()
            self._retry_or_stop(reason)
        else:
            self._lost(reason)

    def _from_tls(self, data: bytes) -> bytes | None:
        """Decrypt ``data``, answering the TLS layer; the plaintext, or None if there is none.

        None also when the handshake failed or ended the connection, or the
        server closed TLS (reported here).
        """
        tls = self._tls
        assert tls is not None
        was_done = tls.handshake_done
        try:
            plain, reply = tls.receive(data)
        except ssl.SSLError as exc:
            self._connection_failed(exc)
            return None
        if not self._write_raw(reply):
            return None
        if not was_done and tls.handshake_done:
            self._on_connected()
            if not self._is_up():
                return None
        if tls.closed and not plain:
            self._on_closed(None)
            return None
        return plain

    def _on_connected(self) -> None:
        self._state = "up"
        self._retries_left = self._opts.retry  # a successful connect resets the count
        self._attempt = 0
        self._attempts_since_up = 0
        port = self._conn.port
        default_port = 443 if self._opts.transport == "tls" else 80
        authority = self._conn.host if port == default_port else f"{self._conn.host}:{port}"
        if ":" in self._conn.host and not self._conn.host.startswith("["):
            authority = f"[{self._conn.host}]" + ("" if port == default_port else f":{port}")
        self._proto = ClientProtocol(
            self._conn,
            authority=authority,
            http_opts=self._opts.http_opts,
            ws_opts=self._opts.ws_opts,
        )
        self._handler("connect_end", {"protocol": "http"})
        if not self._deliver(Up(self._conn, "http")):
            return
        self._schedule("owner_check", OWNER_CHECK_INTERVAL)
        if self._opts.http_opts.keepalive is not None:
            self._schedule("http_ping", self._opts.http_opts.keepalive)
        pending, self._pending = self._pending, []
        for command in pending:
            self._command(command)
            if not self._is_up():
                return
        if self._reupgrade is not None:
            last = self._reupgrade
            self._command(msg.WsUpgrade(StreamRef(), last.target, last.headers, last.opts))

    def _is_up(self) -> bool:
        return self._state == "up"

    def _is_stopped(self) -> bool:
        return self._state == "stopped"

    def _retry_or_stop(self, reason: BaseException) -> None:
        """After a failed attempt or a lost connection: wait and retry, or give up."""
        if self._retries_left <= 0:
            self._finish(RetriesExhausted(self._attempts_since_up, reason), final_error=True)
            return
        self._retries_left -= 1
        self._attempt += 1
        try:
            delay = _checked_delay(self._opts.retry_delay(self._attempt))
        except Exception as exc:
            if not self._deliver(Error(self._conn, None, exc)):
                return
            delay = self._opts.retry_timeout
        self._state = "waiting"
        if delay <= 0:
            self._connect()
            return
        self._schedule("retry", delay)

    def _on_tick(self, kind: str) -> None:
        if (kind == "retry" and self._state == "waiting") or (
            kind == "connect" and self._state == "connecting"
        ):
            self._connect()
        elif kind == "connect_deadline" and self._state == "connecting":
            self._connection_failed(
                ConnectTimeout(
                    f"connecting to {self._conn.host}:{self._conn.port} (TLS handshake "
                    f"included) took longer than {self._opts.connect_timeout} s"
                )
            )
        elif kind == "closing" and self._state == "closing":
            self._stop_now(ClosedByUser("shutdown() timed out; closed"))
        elif kind == "http_ping" and self._state == "up":
            self._http_ping()
        elif kind == "owner_check" and self._state == "up":
            self._check_owner()
        elif kind == "ws_ping" and self._state == "up":
            self._ws_ping()
        elif kind == "pong_deadline" and self._state == "up":
            self._pong_deadline()
        elif kind == "ws_fail" and self._lingering is not None:
            self._lingering.fail_now()
            self._flush()

    # -- up ----------------------------------------------------------------------

    def _command(self, command: msg.Command) -> None:
        proto = self._proto
        if self._state == "closing":
            self._refuse(command, ClosedByUser("the connection is shutting down"))
            return
        if self._state != "up" or proto is None:
            if isinstance(command, msg.WsSend):
                self._refuse(
                    command,
                    NotUpgradedError("the connection is down; frames not sent", command.frames),
                )
            elif isinstance(command, msg.Cancel):
                self._pending = [
                    c for c in self._pending if getattr(c, "stream", None) is not command.stream
                ]
            else:
                self._pending.append(command)
            return
        match command:
            case msg.RequestCmd(stream, method, target, headers, body):
                self._handler("request_start", {"stream": stream, "method": method})
                proto.request(stream, method, target, headers, body)
            case msg.HeadersCmd(stream, method, target, headers):
                self._handler("request_start", {"stream": stream, "method": method})
                proto.headers(stream, method, target, headers)
            case msg.DataCmd(stream, fin, data):
                proto.data(stream, fin, data)
            case msg.Cancel(stream):
                proto.cancel(stream)
            case msg.WsUpgrade(stream, target, headers, opts):
                self._upgrades[stream] = command
                proto.ws_upgrade(stream, target, headers, opts)
            case msg.WsSend():
                self._ws_send(proto, command)
            case _:  # pragma: no cover - Close/Shutdown are handled by on_receive
                pass
        self._flush()

    def _on_ws_send(self, command: msg.WsSend) -> None:
        """The most frequent command, without ``_command``'s dispatch when up."""
        proto = self._proto
        if self._state != "up" or proto is None:
            self._command(command)  # refused there
            return
        self._ws_send(proto, command)
        self._flush()

    def _ws_send(self, proto: ClientProtocol, command: msg.WsSend) -> None:
        handler = self._opts.event_handler
        for frame in command.frames:
            if handler is not None:
                self._handler("ws_send_frame", {"frame": frame})
            if type(frame) is CloseFrame:
                self._reupgrade = None  # a close the user sent is final (Gun)
        proto.ws_send(command.frames, command.stream)

    def _refuse(self, command: msg.Command, reason: BaseException) -> None:
        stream: StreamRef | None = getattr(command, "stream", None)
        if isinstance(command, msg.Cancel):
            return
        self._deliver(Error(self._conn, stream, reason))

    def _flush(self) -> None:
        """Write what the protocol produced, deliver its events, act on a close."""
        proto = self._proto
        if proto is None:
            return
        chunks, events, close_reason, failing = proto.drain()
        write_error: OSError | None = None
        if chunks:
            tls, transport = self._tls, self._transport
            # TLS encrypts into new records anyway: join the pieces for it.
            out = chunks if tls is None else tls.send(b"".join(chunks))
            if out and transport is not None:
                try:
                    transport.write(out)
                except OSError as exc:  # WriteTimeout included; events first, then Down
                    write_error = exc
        # Delivering runs no protocol call (commands told meanwhile are
        # queued behind this turn): close_reason and failing still hold.
        if events and not self._deliver_events(events):
            return
        if failing is not None and self._lingering is not failing:
            self._lingering = failing  # answers to the messages before the bad frame go out first
            self._schedule("ws_fail", FAIL_LINGER)
        lost_reason = write_error or close_reason
        if lost_reason is not None:
            self._lost(lost_reason)
        elif self._state == "closing":
            self._shutdown_step(proto)

    def _shutdown_step(self, proto: ClientProtocol) -> None:
        """While shutting down, after each flush: stop once idle, or close a new Websocket."""
        if proto.protocol == "http" and not proto.busy:
            self._stop_now(ClosedByUser("shutdown() completed"))
        elif proto.ws is not None and not proto.ws.closing:
            # Upgraded while shutting down: close the new Websocket as shutdown() does.
            proto.ws_send((CloseFrame(1000),))
            self._flush()

    def _deliver_events(self, events: list[Event]) -> bool:
        """Deliver what one read or command produced; False if the owner is gone."""
        if self._batch_to is not None:
            # One wake-up of the owner for all of them (a response's head
            # and body often arrive in one read): nothing runs between them.
            for event in events:
                if type(event) is Upgrade:
                    self._on_upgraded(event.stream)
            try:
                self._batch_to.tell_all(events)
            except InboxClosedError:
                self._owner_gone()
                return False
            return True
        for event in events:
            if isinstance(event, Upgrade):
                self._on_upgraded(event.stream)
            if self._opts.event_handler is not None:
                self._handler_for(event)
            if not self._deliver(event):
                return False
        return True

    def _on_upgraded(self, stream: StreamRef) -> None:
        self._conn._set_ws_stream(stream)
        self._handler("ws_upgrade", {"stream": stream})
        command = self._upgrades.pop(stream, None)
        self._upgrades.clear()
        self._pong_marks.clear()  # those of an earlier Websocket
        if command is not None:
            self._reupgrade = command if command.opts.reupgrade else None
            if command.opts.keepalive is not None:
                self._schedule("ws_ping", command.opts.keepalive)

    def _ws_ping(self) -> None:
        """Keepalive: ping the server; with a pong_timeout, check the answer came."""
        proto = self._proto
        ws = proto.ws if proto is not None else None
        if proto is None or ws is None or ws.closing or ws.opts.keepalive is None:
            return
        proto.ws_send((PingFrame(b"tether-keepalive"),))
        if ws.opts.pong_timeout is not None:
            self._pong_marks.append(ws.pongs_received)
            self._schedule("pong_deadline", ws.opts.pong_timeout)
        self._schedule("ws_ping", ws.opts.keepalive)
        self._flush()

    def _http_ping(self) -> None:
        """Gun's HTTP keepalive: an empty line every ``keepalive`` seconds while idle."""
        proto = self._proto
        keepalive = self._opts.http_opts.keepalive
        if proto is None or proto.protocol != "http" or keepalive is None:
            return  # upgraded: Websocket keepalive (ws_opts) takes over
        proto.http_keepalive()
        self._schedule("http_ping", keepalive)
        self._flush()

    def _pong_deadline(self) -> None:
        proto = self._proto
        ws = proto.ws if proto is not None else None
        # Deadlines fire in the order of their pings: each checks its own ping's mark.
        mark = self._pong_marks.pop(0) if self._pong_marks else None
        if ws is None or mark is None or ws.pongs_received > mark:
            return
        self._lost(
            PongTimeout(
                f"no pong within {ws.opts.pong_timeout} s of a ping: "
                "the connection is considered dead"
            )
        )

    def _check_owner(self) -> None:
        """Owner monitoring for idle connections, where no ``tell`` would fail."""
        owner = self._conn.owner
        is_alive = getattr(owner, "is_alive", None)
        gone = bool(getattr(owner, "closed", False)) or (callable(is_alive) and not is_alive())
        if gone:
            self._owner_gone()
        else:
            self._schedule("owner_check", OWNER_CHECK_INTERVAL)

    def _schedule(self, kind: str, delay: float) -> TimerHandle:
        epoch = self._epoch
        timer = default_scheduler().call_later(delay, lambda: self._report(msg.Tick(epoch, kind)))
        self._timers = [t for t in self._timers if not t.done]
        self._timers.append(timer)
        return timer

    def _on_closed(self, reason: BaseException | None) -> None:
        """The I/O thread saw the socket close (EOF or error)."""
        proto = self._proto
        if proto is None:
            if self._state == "connecting":  # during the TLS handshake
                self._connection_failed(
                    reason
                    or ConnectionClosed(
                        "the server closed the connection during the TLS handshake"
                    )
                )
            return
        if reason is None:
            proto.receive_data(b"")
            self._flush()
            if self._proto is None:
                return  # handled as a protocol close
        self._lost(reason or ConnectionClosed())

    def _lost(self, reason: BaseException) -> None:
        """The connection ended: Down, then reconnect (or stop if shutting down)."""
        shutting_down = self._state == "closing"
        self._down(reason)
        if self._is_stopped():
            return  # the owner vanished while being told
        if shutting_down:
            self._finish(ClosedByUser("shutdown() completed"), final_error=False)
            return
        self._retry_or_stop(reason)

    def _down(self, reason: BaseException, also_killed: StreamRef | None = None) -> None:
        proto = self._proto
        assert proto is not None
        self._close_transport()
        killed, unprocessed = proto.lost_streams()
        if also_killed is not None and also_killed not in killed + unprocessed:
            killed = (*killed, also_killed)
        protocol = proto.protocol
        self._proto = None
        self._upgrades.clear()
        self._conn._set_ws_stream(None)
        self._handler("disconnect", {"reason": reason})
        self._deliver(Down(self._conn, protocol, reason, killed, unprocessed))

    def _close_transport(self) -> None:
        # A new epoch first: whatever the old socket still reports is stale.
        self._epoch += 1
        self._tls = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    # -- stopping ------------------------------------------------------------------

    def _start_shutdown(self) -> None:
        proto = self._proto
        if self._state != "up" or proto is None:
            self._stop_now(ClosedByUser("shutdown() was called"))
            return
        self._state = "closing"
        if proto.ws is not None:
            timeout = proto.ws.opts.closing_timeout  # ws_upgrade's opts win over open's
            proto.ws_send((CloseFrame(1000),))
        else:
            timeout = self._opts.http_opts.closing_timeout
        self._schedule("closing", timeout)
        self._flush()

    def _stop_now(self, reason: BaseException) -> None:
        if self._proto is not None:
            self._down(reason)
        self._finish(reason, final_error=False)

    def _finish(self, reason: BaseException, *, final_error: bool) -> None:
        """Stop for good: fail pending streams, mark the handle, tell the owner last."""
        self._close_transport()
        self._state = "stopped"
        pending, self._pending = self._pending, []
        for command in pending:
            self._refuse(command, reason)
        self._conn._mark_stopped()
        if final_error:
            self._deliver(Error(self._conn, None, reason))
        self._handler_safe("terminate", {"reason": reason})
        self._stop_actor()

    def _stop_actor(self) -> None:
        # In on_failure pykka has stopped the actor already.
        with contextlib.suppress(pykka.ActorDeadError):
            self.stop()

    # -- the owner -----------------------------------------------------------------

    def _deliver(self, event: Event) -> bool:
        """Tell the owner; if it is gone, stop the connection (owner monitoring)."""
        try:
            self._conn.owner.tell(event)
        except (pykka.ActorDeadError, InboxClosedError):
            self._owner_gone()
            return False
        return True

    def _owner_gone(self) -> None:
        """The owner stopped: close and stop without a word (nobody is listening)."""
        if self._state == "stopped":
            return
        self._close_transport()
        self._proto = None
        self._state = "stopped"
        self._pending = []
        self._conn._mark_stopped()
        self._handler_safe("terminate", {"reason": OwnerDown("the owner stopped")})
        self._stop_actor()

    def _handler(self, name: str, data: dict[str, Any]) -> None:
        # As in Gun, the event handler runs in the connection process: if it
        # raises, the actor crashes and its supervisor takes over.
        handler = self._opts.event_handler
        if handler is not None:
            handler(name, data)

    def _handler_for(self, event: Event) -> None:
        """The event handler phases that an event to the owner marks."""
        match event:
            case Response(stream=stream, status=status, fin=fin):
                self._handler("response_start", {"stream": stream, "status": status})
                if fin:
                    self._handler("response_end", {"stream": stream})
            case Data(stream=stream, fin=True) | Trailers(stream=stream):
                self._handler("response_end", {"stream": stream})
            case Ws(stream=stream, frame=frame):
                self._handler("ws_recv_frame", {"stream": stream, "frame": frame})
            case _:
                pass

    def _handler_safe(self, name: str, data: dict[str, Any]) -> None:
        try:
            self._handler(name, data)
        except Exception:
            log.exception("event handler failed on %r while stopping", name)

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
        )
