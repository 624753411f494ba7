"""The phases of a connection attempt, as Gun's state machine has them, and their event data.

An attempt is in ``CONNECTING`` (``tether.actors._handle.ConnectionState``)
from its start to its ``Up`` (or its failure), and passes through its
phases (more than one TLS handshake through an ``https://`` proxy, see
:mod:`~tether.actors._chain`), each with an event handler phase at its start and at its
end (``docs/event_handler.md``), and a bound of its own besides
``connect_timeout``, which bounds the whole attempt:

========================  ===================  =========================
phase                     its events           its own bound
========================  ===================  =========================
``DOMAIN_LOOKUP``         ``domain_lookup_*``  ``domain_lookup_timeout``
``CONNECTING`` (TCP)      ``connect_*``        (``connect_timeout``)
``TLS_HANDSHAKE``         ``tls_handshake_*``  ``tls_handshake_timeout``
``PROXY_HANDSHAKE``       ``proxy_handshake_*``  (``connect_timeout``)
========================  ===================  =========================

Through a proxy, the lookup and the TCP connect are the proxy's (their
data name its host and port), and so is the first TLS handshake of an
``https://`` proxy; ``PROXY_HANDSHAKE`` (tether's own phase: Gun has no
proxy option) is the HTTP ``CONNECT`` or SOCKS5 exchange.

An attempt that fails ends its phase with ``error`` in the end event's
data, as Gun's do.
"""

from __future__ import annotations

import enum
import ssl
from typing import Any

from tether._options import ConnectOpts

__all__ = ["ConnectPhase", "init_data", "phase_data"]


class ConnectPhase(enum.StrEnum):
    """Where an attempt is (Gun's ``domain_lookup``, ``connecting``, ``tls_handshake`` states)."""

    DOMAIN_LOOKUP = "domain_lookup"
    CONNECTING = "connecting"
    TLS_HANDSHAKE = "tls_handshake"
    PROXY_HANDSHAKE = "proxy_handshake"

    @property
    def start_event(self) -> str:
        """The event handler phase at its start."""
        return _EVENTS[self][0]

    @property
    def end_event(self) -> str:
        """The event handler phase at its end (``error`` in the data if it failed)."""
        return _EVENTS[self][1]

    @property
    def option(self) -> str:
        """The name of the option that bounds this phase."""
        return _OPTIONS[self]

    def describe(self, host: str, port: int) -> str:
        """This phase of an attempt on ``host:port``, for messages."""
        if self is ConnectPhase.DOMAIN_LOOKUP:
            return f"the domain lookup of {host}"
        if self is ConnectPhase.TLS_HANDSHAKE:
            return f"the TLS handshake with {host}:{port}"
        if self is ConnectPhase.PROXY_HANDSHAKE:
            return f"the proxy handshake with {host}:{port}"
        return f"connecting to {host}:{port}"

    def timeout(self, opts: ConnectOpts) -> float | None:
        """The bound of this phase's own (the TCP connect's is ``connect_timeout``)."""
        if self is ConnectPhase.DOMAIN_LOOKUP:
            return opts.domain_lookup_timeout
        if self is ConnectPhase.TLS_HANDSHAKE:
            return opts.tls_handshake_timeout
        return opts.connect_timeout


_OPTIONS = {
    ConnectPhase.DOMAIN_LOOKUP: "domain_lookup_timeout",
    ConnectPhase.CONNECTING: "connect_timeout",
    ConnectPhase.TLS_HANDSHAKE: "tls_handshake_timeout",
    ConnectPhase.PROXY_HANDSHAKE: "connect_timeout",
}

_EVENTS = {
    ConnectPhase.DOMAIN_LOOKUP: ("domain_lookup_start", "domain_lookup_end"),
    ConnectPhase.CONNECTING: ("connect_start", "connect_end"),
    ConnectPhase.TLS_HANDSHAKE: ("tls_handshake_start", "tls_handshake_end"),
    ConnectPhase.PROXY_HANDSHAKE: ("proxy_handshake_start", "proxy_handshake_end"),
}


def init_data(owner: Any, host: str, port: int, opts: ConnectOpts) -> dict[str, Any]:
    """The data of ``init`` (Gun's init event)."""
    return {
        "owner": owner,
        "transport": opts.transport,
        "origin_scheme": "https" if opts.transport == "tls" else "http",
        "origin_host": host,
        "origin_port": port,
        "opts": opts,
    }


def phase_data(
    phase: ConnectPhase,
    *,
    host: str,
    port: int,
    opts: ConnectOpts,
    addresses: tuple[str, ...],
    tls_context: ssl.SSLContext | None,
    server_hostname: str | None = None,
) -> dict[str, Any]:
    """What the start and end events of ``phase`` carry (the end adds its outcome).

    ``host`` and ``port``: where this phase goes (the proxy's, through one);
    ``addresses``: what the lookup found (for ``CONNECTING``);
    ``tls_context`` and ``server_hostname``: the handshake's (for ``TLS_HANDSHAKE``).
    """
    data: dict[str, Any] = {"host": host, "port": port, "timeout": phase.timeout(opts)}
    if phase is ConnectPhase.CONNECTING:
        data["lookup_info"] = lookup_info(addresses, port)
    elif phase is ConnectPhase.TLS_HANDSHAKE:
        data["server_hostname"] = server_hostname or opts.server_hostname or host
        data["tls_context"] = tls_context
    elif phase is ConnectPhase.PROXY_HANDSHAKE and opts.proxy is not None:
        data["proxy"] = opts.proxy.url
    return data


def lookup_info(addresses: tuple[str, ...], port: int) -> dict[str, Any]:
    """Gun's ``lookup_info``: the addresses the host name resolved to, and the port."""
    return {"ip_addresses": list(addresses), "port": port}
