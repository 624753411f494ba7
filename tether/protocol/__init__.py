"""The sans-I/O protocol layer: bytes in, events out.

HTTP/1.1 client streams over h11, HTTP/2 over h2 and Websocket over
wsproto, with no socket, thread, clock or actor anywhere
(``tests/test_layering.py`` walks the imports to keep it so).
``ClientProtocol`` (HTTP/1.1) and ``Http2Protocol`` are what the
connection actor drives, both a ``ProtocolEngine``; they are public for
users who bring their own I/O. The proxy
handshakes (``handshake_for``: ``HttpConnect``, ``Socks5``) open the tunnel
the connection then runs through.
"""

from tether.protocol._client import ClientProtocol as ClientProtocol
from tether.protocol._engine import ProtocolEngine as ProtocolEngine
from tether.protocol._h2 import Http2Protocol as Http2Protocol
from tether.protocol._handshake_for import handshake_for as handshake_for
from tether.protocol._http_connect import HttpConnect as HttpConnect
from tether.protocol._proxy_handshake import HandshakeState as HandshakeState
from tether.protocol._proxy_handshake import ProxyHandshake as ProxyHandshake
from tether.protocol._socks5 import Socks5 as Socks5
from tether.protocol._socks5 import Socks5Step as Socks5Step
from tether.protocol._validate import check_body as check_body
from tether.protocol._validate import check_framing as check_framing
from tether.protocol._validate import check_host as check_host
from tether.protocol._validate import check_method as check_method
from tether.protocol._validate import check_path as check_path
from tether.protocol._validate import host_authority as host_authority
from tether.protocol._validate import normalize_headers as normalize_headers

__all__ = [
    "ClientProtocol",
    "HandshakeState",
    "Http2Protocol",
    "HttpConnect",
    "ProtocolEngine",
    "ProxyHandshake",
    "Socks5",
    "Socks5Step",
    "check_body",
    "check_framing",
    "check_host",
    "check_method",
    "check_path",
    "handshake_for",
    "host_authority",
    "normalize_headers",
]
