"""The event handler's phases of one connection, and where a connection attempt is.

The connection actor tells one :class:`Phases` what happens (an attempt
begins, its lookup ends, a stream is cancelled, the connection goes down)
and it calls the user's ``event_handler`` with Gun's phase names and data
(``docs/event_handler.md``; the attempt's phases and their data are
:mod:`~tether.actors._connect_phase`'s). It also keeps the phase of the
attempt under way, which the actor reads whether or not a handler is set
(a phase's own deadline applies only while in it).

With no ``event_handler`` nothing is built or called: each method does
its bookkeeping and returns after one check, and the protocol layer gets
no ``observe`` (see :attr:`Phases.observe`). As in Gun, the handler runs
in the connection's context: if it raises, the actor crashes and its
supervisor takes over (only ``terminate``'s failure is logged instead:
the connection is ending anyway).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from tether._events import StreamRef
from tether.actors._connect_phase import ConnectPhase, init_data, lookup_info, phase_data
from tether.actors._handle import Connection
from tether.actors._handle import ConnectionState as State
from tether.actors._routing import Router
from tether.actors._transport import Transport

__all__ = ["Phases"]

log = logging.getLogger("tether.connection")


class Phases:
    """Calls the ``event_handler`` for one connection actor. Called by its turn only.

    ``attempt`` is the phase of the connection attempt under way (None
    outside one); ``router`` names each stream's ``reply_to`` in the data.
    """

    __slots__ = (
        "_addresses",
        "_conn",
        "_router",
        "_server_hostname",
        "_target",
        "_tls_context",
        "attempt",
        "handler",
    )

    def __init__(self, conn: Connection, router: Router) -> None:
        self._conn = conn
        self._router = router
        self.handler = conn.opts.event_handler
        self.attempt: ConnectPhase | None = None
        # What the lookup of the attempt found, and the context of its handshake.
        self._addresses: tuple[str, ...] = ()
        self._tls_context: ssl.SSLContext | None = None
        self._server_hostname: str | None = None
        # Where the phases under way go: the proxy's host and port through a
        # proxy, until the origin's TLS handshake (see aim).
        self._target = _first_hop(conn)

    @property
    def observe(self) -> Callable[[str, dict[str, Any]], None] | None:
        """What the protocol layer calls for its phases: None (no calls) without a handler."""
        return self.emit if self.handler is not None else None

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Call the handler (if any) for phase ``name``; a stream's data gets its ``reply_to``."""
        handler = self.handler
        if handler is not None:
            stream = data.get("stream")
            if stream is not None:
                data["reply_to"] = self._router.target(stream)
            handler(name, data)

    def emit_safe(self, name: str, data: dict[str, Any]) -> None:
        """:meth:`emit` while stopping: a failing handler is logged, not a crash."""
        try:
            self.emit(name, data)
        except Exception:
            log.exception("event handler failed on %r while stopping", name)

    def init(self) -> None:
        """Gun's ``init``: this generation of the connection begins."""
        if self.handler is not None:
            conn = self._conn
            self.emit("init", init_data(conn.owner, conn.host, conn.port, conn.opts))

    def cancelled(self, stream: StreamRef) -> None:
        """Gun's ``cancel``: the user cancelled ``stream`` (HTTP/1.1 has no remote cancel)."""
        self.emit("cancel", {"stream": stream, "endpoint": "local", "reason": "cancel"})

    def life_state(self, state: State) -> str:
        """Gun's ``terminate`` state: the phase of an attempt under way, else ``state``."""
        attempt = self.attempt
        if state is State.CONNECTING and attempt is not None:
            return attempt.value
        return state.value

    # -- the phases of an attempt --------------------------------------------------

    def aim(self, host: str, port: int) -> None:
        """The phases from now on go to ``host:port`` (the origin, inside a proxy's tunnel)."""
        self._target = (host, port)

    @property
    def target(self) -> tuple[str, int]:
        """Where the phase under way goes (host, port)."""
        return self._target

    def begin(
        self,
        phase: ConnectPhase,
        tls_context: ssl.SSLContext | None = None,
        *,
        server_hostname: str | None = None,
    ) -> None:
        """``phase`` of an attempt begins (a new attempt with ``DOMAIN_LOOKUP``)."""
        if phase is ConnectPhase.DOMAIN_LOOKUP:
            self._addresses = ()
            self._target = _first_hop(self._conn)
        elif phase is ConnectPhase.TLS_HANDSHAKE:
            self._tls_context = tls_context
            self._server_hostname = server_hostname
        self.attempt = phase
        if self.handler is not None:
            self.emit(phase.start_event, self._data(phase))

    def end(self, outcome: dict[str, Any]) -> None:
        """The phase under way ended: its end event, with ``outcome`` (or an ``error``)."""
        phase, self.attempt = self.attempt, None
        if phase is not None and self.handler is not None:
            self.emit(phase.end_event, {**self._data(phase), **outcome})

    def resolved(self, addresses: tuple[str, ...]) -> None:
        """The lookup ended (if it is under way): the TCP connect begins."""
        if self.attempt is not ConnectPhase.DOMAIN_LOOKUP:
            return
        self._addresses = addresses
        self.end({"lookup_info": lookup_info(addresses, self._target[1])})
        self.begin(ConnectPhase.CONNECTING)

    def connected(self, transport: Transport, *, last: bool) -> None:
        """The TCP connect succeeded: its end names the socket's two ends.

        And the protocol if it is the ``last`` hop before ``Up`` (Gun: else
        the protocol comes with the TLS handshake). The socket itself stays tether's.
        """
        if self.handler is None:
            self.attempt = None
            return
        outcome: dict[str, Any] = {"protocol": "http"} if last else {}
        addresses = transport.addresses()
        if addresses is not None:
            outcome["local_address"], outcome["peer_address"] = addresses
        self.end(outcome)

    def _data(self, phase: ConnectPhase) -> dict[str, Any]:
        host, port = self._target
        return phase_data(
            phase,
            host=host,
            port=port,
            opts=self._conn.opts,
            addresses=self._addresses,
            tls_context=self._tls_context,
            server_hostname=self._server_hostname,
        )


def _first_hop(conn: Connection) -> tuple[str, int]:
    """Where an attempt connects first: the proxy, if there is one, else the origin."""
    proxy = conn.opts.proxy
    return (conn.host, conn.port) if proxy is None else (proxy.host, proxy.port)
