"""SOCKS5 CONNECT (RFC 1928), with user/password authentication (RFC 1929).

Three exchanges, one step each: the method selection, the user/password
sub-negotiation (only when the proxy has a user name), the CONNECT reply.
tether offers "no authentication" alone without credentials, and
user/password first (then "no authentication") with them, so a proxy that
needs none may still choose none.

Bounded by construction: the proxy may not speak before it is asked, so
bytes past one step's answer before the last are a ``ProxyError``, and the
longest answer is the CONNECT reply with a 255-byte name (262 bytes).
A failure is reported as soon as its byte arrives: a reply code, a version,
a method; the rest of the answer is not waited for.
"""

from __future__ import annotations

import enum
import ipaddress

from tether._proxies import Proxy
from tether.protocol._proxy_handshake import ProxyHandshake
from tether.protocol._validate import check_host

__all__ = ["REPLY_MEANINGS", "Socks5", "Socks5Step"]

_VERSION = 0x05
_AUTH_VERSION = 0x01  # RFC 1929 2: the sub-negotiation's own version
_NO_AUTH = 0x00
_USER_PASSWORD = 0x02
_NO_ACCEPTABLE = 0xFF
_CONNECT = 0x01
_IPV4, _NAME, _IPV6 = 0x01, 0x03, 0x04
_FIXED_ADDRESS = {_IPV4: 4, _IPV6: 16}

REPLY_MEANINGS = {
    0x01: "general SOCKS server failure",
    0x02: "connection not allowed by ruleset",
    0x03: "network unreachable",
    0x04: "host unreachable",
    0x05: "connection refused",
    0x06: "TTL expired",
    0x07: "command not supported",
    0x08: "address type not supported",
}
"""RFC 1928 6: what a non-zero reply code means."""


class Socks5Step(enum.Enum):
    """Which answer a waiting [`Socks5`][tether.protocol.Socks5] handshake expects next."""

    METHOD = "the method selection"
    AUTH = "the user/password verdict"
    REPLY = "the reply to CONNECT"


def _address(host: str) -> bytes:
    """ATYP and DST.ADDR for ``host``: an IP literal as itself, anything else as a name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            name = host.encode("ascii") if host.isascii() else host.encode("idna")
        except UnicodeError as error:
            raise ValueError(f"host {host!r} has no IDNA form for SOCKS5 ({error})") from None
        if not 0 < len(name) <= 255:
            raise ValueError(f"host {host!r} is too long for SOCKS5 (255 bytes)") from None
        return bytes([_NAME, len(name)]) + name
    return bytes([_IPV4 if ip.version == 4 else _IPV6]) + ip.packed


class Socks5(ProxyHandshake):
    """A SOCKS5 CONNECT to ``host:port`` (RFC 1928, RFC 1929 user/password).

    ``host`` is sent as given: an IP address as one (ATYP 1 or 4), a name
    as a name (ATYP 3) for the proxy to resolve. For ``socks5://`` (not
    ``socks5h``) the caller resolves the name first and passes the address.
    A refusal raises a ``ProxyError`` whose ``reply`` is the reply code
    and whose message gives its RFC meaning. Not thread-safe (see the base).
    """

    def __init__(self, proxy: Proxy, host: str, port: int) -> None:
        super().__init__(proxy, host, port)
        check_host(host, port)
        self._request = (
            bytes([_VERSION, _CONNECT, 0x00]) + _address(host) + port.to_bytes(2, "big")
        )
        self._step = Socks5Step.METHOD
        self._buffer = bytearray()

    @property
    def step(self) -> Socks5Step:
        """Which answer is expected next (meaningful while ``state`` is ``WAITING``)."""
        return self._step

    def _first_bytes(self) -> bytes:
        if self.proxy.username is None:
            return bytes([_VERSION, 1, _NO_AUTH])
        return bytes([_VERSION, 2, _USER_PASSWORD, _NO_AUTH])

    def _on_data(self, data: bytes) -> bytes:
        self._buffer += data
        match self._step:
            case Socks5Step.METHOD:
                return self._on_method()
            case Socks5Step.AUTH:
                return self._on_auth()
            case Socks5Step.REPLY:
                return self._on_reply()

    def _check_version(self, expected: int) -> None:
        if self._buffer and self._buffer[0] != expected:
            http = self._buffer[:1] == b"H"  # "HTTP/1.1 400 ...": an HTTP proxy
            hint = " (it looks like an HTTP proxy: use http://)" if http else ""
            raise self._error(
                f"answered {self._step.value} with version {self._buffer[0]:#04x}, "
                f"not {expected:#04x}: not SOCKS5{hint}"
            )

    def _take_pair(self) -> tuple[int, int] | None:
        """The two bytes of a method or auth answer, or None until both came."""
        if len(self._buffer) < 2:
            return None
        if len(self._buffer) > 2:
            raise self._error(f"sent {len(self._buffer)} bytes for {self._step.value}, not 2")
        first, second = self._buffer
        self._buffer.clear()
        return first, second

    def _on_method(self) -> bytes:
        self._check_version(_VERSION)
        pair = self._take_pair()
        if pair is None:
            return b""
        method = pair[1]
        if method == _NO_AUTH:
            self._step = Socks5Step.REPLY
            return self._request
        if method == _USER_PASSWORD and self.proxy.username is not None:
            self._step = Socks5Step.AUTH
            return self._auth_request()
        if method == _NO_ACCEPTABLE:
            anonymous = self.proxy.username is None
            hint = "; give a user name and password in the URL" if anonymous else ""
            raise self._error(f"accepts none of the authentication methods offered{hint}")
        raise self._error(f"chose authentication method {method:#04x}, which was not offered")

    def _auth_request(self) -> bytes:
        user = (self.proxy.username or "").encode()
        password = (self.proxy.password or "").encode()
        return bytes([_AUTH_VERSION, len(user)]) + user + bytes([len(password)]) + password

    def _on_auth(self) -> bytes:
        self._check_version(_AUTH_VERSION)
        pair = self._take_pair()
        if pair is None:
            return b""
        if pair[1] != 0x00:
            raise self._error(
                f"refused the user name and password of {self.proxy.username!r} "
                f"(RFC 1929 status {pair[1]:#04x})"
            )
        self._step = Socks5Step.REPLY
        return self._request

    def _on_reply(self) -> bytes:
        # VER REP RSV ATYP BND.ADDR BND.PORT
        self._check_version(_VERSION)
        if len(self._buffer) >= 2 and self._buffer[1] != 0x00:
            code = self._buffer[1]
            meaning = REPLY_MEANINGS.get(code, "an unassigned code")
            raise self._error(
                f"refused CONNECT {self.target}: {meaning} (reply {code:#04x})", reply=code
            )
        size = self._reply_size()
        if size is None or len(self._buffer) < size:
            return b""
        self._finish(bytes(self._buffer[size:]))
        self._buffer.clear()
        return b""

    def _reply_size(self) -> int | None:
        """The length of the whole reply, or None until its ATYP (and name length) came."""
        if len(self._buffer) < 4:
            return None
        atyp = self._buffer[3]
        if atyp in _FIXED_ADDRESS:
            return 4 + _FIXED_ADDRESS[atyp] + 2
        if atyp != _NAME:
            raise self._error(f"sent a reply with an unknown address type {atyp:#04x}")
        if len(self._buffer) < 5:
            return None
        return 5 + self._buffer[4] + 2
