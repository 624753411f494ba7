"""Which handshake opens a tunnel through a given proxy."""

from __future__ import annotations

from tether._proxies import Proxy, ProxyScheme
from tether.protocol._http_connect import HttpConnect
from tether.protocol._proxy_handshake import ProxyHandshake
from tether.protocol._socks5 import Socks5

__all__ = ["handshake_for"]


def handshake_for(proxy: Proxy, host: str, port: int) -> ProxyHandshake:
    """A new handshake that opens a tunnel to ``host:port`` through ``proxy``.

    ``HttpConnect`` for ``http://`` and ``https://`` (TLS to the proxy is
    the caller's), ``Socks5`` for ``socks5://`` and ``socks5h://`` (for
    ``socks5://`` the caller passes the address it resolved). A pure
    function; each connection attempt needs its own handshake.

    Raises:
        ValueError: ``host`` or ``port`` cannot be sent to the proxy.
    """
    match proxy.scheme:
        case ProxyScheme.HTTP | ProxyScheme.HTTPS:
            return HttpConnect(proxy, host, port)
        case ProxyScheme.SOCKS5 | ProxyScheme.SOCKS5H:
            return Socks5(proxy, host, port)
