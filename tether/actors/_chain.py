"""The hops of a connection attempt between its TCP connect and its ``Up``.

A direct ``http://`` connection has none: it is up once TCP connects. A
direct ``https://`` one has one, the TLS handshake with the origin.
Through a proxy (``proxy=``) the chain is longer, and every attempt (every
reconnect) walks all of it again::

    TCP to the proxy -> [PROXY_TLS] -> PROXY_HANDSHAKE -> [ORIGIN_TLS] -> Up

``PROXY_TLS`` for an ``https://`` proxy (TLS with the proxy itself),
``PROXY_HANDSHAKE`` the HTTP ``CONNECT`` or the SOCKS5 exchange that opens
the tunnel, ``ORIGIN_TLS`` for ``transport="tls"`` (TLS with the origin,
inside the tunnel: verified against the origin's name, never the proxy's).
The connection actor walks the chain (``ConnectionActor._next_hop``); a
:class:`Chain` is what it keeps of the attempt meanwhile, and is dropped
once the connection is up.
"""

from __future__ import annotations

import enum

from tether._options import ConnectOpts
from tether.actors._scheduler import TimerHandle
from tether.protocol import ProxyHandshake

__all__ = ["Chain", "Hop"]


class Hop(enum.Enum):
    """One step of an attempt after its TCP connect (see the module docstring)."""

    PROXY_TLS = "proxy_tls"
    PROXY_HANDSHAKE = "proxy_handshake"
    ORIGIN_TLS = "origin_tls"


class Chain:
    """The hops of one attempt still to walk, and the one under way. Its actor's turn only.

    Attributes:
        hop: the hop under way (None before the first one starts).
        handshake: the proxy handshake, while ``hop`` is ``PROXY_HANDSHAKE``.
        timer: the bound of the hop under way (its phase's own timeout), if any.
        origin_address: for a ``socks5://`` proxy, the origin's address as
            tether looked it up (the proxy is given the address, not the name).
    """

    __slots__ = ("_left", "handshake", "hop", "origin_address", "timer")

    def __init__(self, opts: ConnectOpts) -> None:
        left: list[Hop] = []
        proxy = opts.proxy
        if proxy is not None:
            if proxy.tls:
                left.append(Hop.PROXY_TLS)
            left.append(Hop.PROXY_HANDSHAKE)
        if opts.transport == "tls":
            left.append(Hop.ORIGIN_TLS)
        left.reverse()  # popped from the end
        self._left = left
        self.hop: Hop | None = None
        self.handshake: ProxyHandshake | None = None
        self.timer: TimerHandle | None = None
        self.origin_address: str | None = None

    @property
    def last(self) -> bool:
        """True if no hop follows the one under way: its end is the connection's ``Up``."""
        return not self._left

    def advance(self) -> Hop | None:
        """The next hop (now under way), or None: the chain is walked, the connection is up."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.handshake = None
        self.hop = self._left.pop() if self._left else None
        return self.hop
