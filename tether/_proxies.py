"""Proxies: what one is (``Proxy``), parsed from a URL or found in the environment.

A leaf module like ``_options`` and ``_errors``: the options, the protocol
layer's handshakes and the connection actor all import it, it imports none
of them. Nothing here does I/O: ``proxy_from_environment`` reads a mapping
(``os.environ`` unless given one) and resolves no name.

A password never leaves a ``Proxy`` by accident: it is kept out of its
``repr``, its ``url`` and every message written here, so a ``Proxy`` or an
error naming it can be logged.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

__all__ = ["Proxy", "ProxyScheme", "parse_proxy", "proxy_from_environment"]


class ProxyScheme(enum.StrEnum):
    """How tether talks to a proxy: the scheme of its URL."""

    HTTP = "http"
    """An HTTP proxy, asked with ``CONNECT host:port`` for a tunnel."""
    HTTPS = "https"
    """An HTTP proxy reached over TLS (TLS to the proxy itself, then ``CONNECT``)."""
    SOCKS5 = "socks5"
    """A SOCKS5 proxy (RFC 1928); tether resolves the origin's name itself."""
    SOCKS5H = "socks5h"
    """A SOCKS5 proxy that resolves the origin's name (the "h" of curl's name)."""


_DEFAULT_PORTS = {
    ProxyScheme.HTTP: 80,
    ProxyScheme.HTTPS: 443,
    ProxyScheme.SOCKS5: 1080,
    ProxyScheme.SOCKS5H: 1080,
}
# Schemes people write that tether does not speak: named in the message.
_UNSUPPORTED = ("socks4", "socks4a", "socks", "socks5s")
# RFC 1929 2: ULEN and PLEN are one byte each.
_SOCKS_FIELD_MAX = 255
# A label of a host name, leniently (as tether.protocol's check_host: the
# resolver has the last word); this module may not import the protocol layer.
_LABEL = re.compile(r"[\w-]{1,63}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_host_name(host: str) -> bool:
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy to tunnel connections through; immutable, so safe to share between threads.

    Give one to ``tether.open(..., proxy=...)``, or a URL that
    ``parse_proxy`` turns into one. ``host`` is a name or an IP address
    (an IPv6 address without brackets). The password is left out of the
    ``repr`` and of ``url``.

    Attributes:
        scheme: how to talk to the proxy.
        host: the proxy's host name or IP address.
        port: the proxy's port.
        username: the user name to authenticate with (HTTP Basic
            ``Proxy-Authorization``, or SOCKS5 user/password, RFC 1929), or None.
        password: its password, or None.
    """

    scheme: ProxyScheme
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, ProxyScheme):
            raise TypeError(f"scheme must be a ProxyScheme, not {self.scheme!r}")
        if not isinstance(self.host, str):
            raise TypeError(f"host must be a str, not {type(self.host).__name__}")
        if not (_is_ip(self.host) or _is_host_name(self.host)):
            raise ValueError(f"proxy host {self.host!r} is not a host name or an IP address")
        if isinstance(self.port, bool) or not isinstance(self.port, int):
            raise TypeError(f"port must be an int, not {type(self.port).__name__}")
        if not 0 < self.port < 65536:
            raise ValueError(f"proxy port {self.port} is out of range (1-65535)")
        self._check_credentials()

    def _check_credentials(self) -> None:
        for what, value in (("username", self.username), ("password", self.password)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{what} must be a str or None, not {type(value).__name__}")
        if self.password is not None and self.username is None:
            raise ValueError(f"proxy {self.url}: a password needs a user name")
        if self.username == "":
            raise ValueError(f"proxy {self.url}: the user name is empty")
        if self.is_socks:
            for what, value in (("user name", self.username), ("password", self.password)):
                if value is not None and len(value.encode()) > _SOCKS_FIELD_MAX:
                    # The value itself stays out of the message (a password).
                    raise ValueError(
                        f"proxy {self.url}: the {what} is longer than SOCKS5 allows "
                        f"({_SOCKS_FIELD_MAX} bytes in UTF-8, RFC 1929)"
                    )

    @property
    def tls(self) -> bool:
        """True if tether speaks TLS to the proxy itself (``https://``)."""
        return self.scheme is ProxyScheme.HTTPS

    @property
    def is_socks(self) -> bool:
        """True for a SOCKS5 proxy (``socks5://`` or ``socks5h://``)."""
        return self.scheme in (ProxyScheme.SOCKS5, ProxyScheme.SOCKS5H)

    @property
    def remote_dns(self) -> bool:
        """True if the proxy resolves the origin's name; False (``socks5://``) if tether does."""
        return self.scheme is not ProxyScheme.SOCKS5

    @property
    def url(self) -> str:
        """``scheme://user@host:port``, never with the password: for messages and logs."""
        user = "" if self.username is None else quote(self.username, safe="") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"


def _redacted(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages about a bad URL.

    Conservative: everything between the first ``:`` after the scheme and the
    last ``@`` goes, even if a ``/`` (unencoded, so a bad URL) comes between.
    """
    scheme, sep, rest = url.partition("://")
    userinfo, at, after = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user}:***@{after}"


def _split_host_port(hostport: str, shown: str) -> tuple[str, str | None]:
    """``("host", "port" or None)`` from ``host[:port]`` or ``[v6][:port]``."""
    if hostport.startswith("["):
        address, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"proxy URL {shown!r}: a bracket around the IPv6 address is amiss")
        if not (_is_ip(address) and ipaddress.ip_address(address).version == 6):
            raise ValueError(f"proxy URL {shown!r}: {address!r} in brackets is no IPv6 address")
        return address, rest[1:] if rest else None
    host, colon, port = hostport.rpartition(":")
    if not colon:
        return hostport, None
    if ":" in host:
        raise ValueError(f"proxy URL {shown!r}: put an IPv6 address in brackets, e.g. [::1]")
    return host, port


def _parse_port(text: str | None, scheme: ProxyScheme, shown: str) -> int:
    if text is None or text == "":
        return _DEFAULT_PORTS[scheme]
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise ValueError(f"proxy URL {shown!r}: bad port {text!r} (1-65535)")
    return int(text)


def _parse_scheme(text: str, shown: str) -> ProxyScheme:
    scheme = text.lower()
    try:
        return ProxyScheme(scheme)
    except ValueError:
        supported = ", ".join(s.value for s in ProxyScheme)
        what = "is not supported" if scheme in _UNSUPPORTED else "is unknown"
        raise ValueError(
            f"proxy URL {shown!r}: scheme {text!r} {what}; tether speaks {supported}"
        ) from None


def parse_proxy(url: str) -> Proxy:
    """Parse a proxy URL such as ``http://user:pass@proxy:3128`` or ``socks5h://[::1]``.

    The scheme is ``http``, ``https``, ``socks5`` or ``socks5h``; the port
    defaults to 80, 443, 1080 and 1080. The user name and password are
    percent-decoded. Nothing but ``/`` may follow the port. A pure function:
    safe from any thread.

    Raises:
        TypeError: ``url`` is not a str.
        ValueError: the URL is not one of a proxy (the message says why and
            never shows the password).
    """
    if not isinstance(url, str):
        raise TypeError(f"a proxy URL must be a str, not {type(url).__name__}")
    shown = _redacted(url)
    scheme_text, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"proxy URL {shown!r} has no scheme: give e.g. 'http://{shown}'")
    scheme = _parse_scheme(scheme_text, shown)
    authority, _, tail = rest.partition("/")
    if tail or "?" in authority or "#" in authority:
        raise ValueError(
            f"proxy URL {shown!r}: only '/' may follow the host and port "
            "(percent-encode '/', '?', '#' and '@' in a user name or password)"
        )
    userinfo, at, hostport = authority.rpartition("@")
    host, port_text = _split_host_port(hostport, shown)
    if not host:
        raise ValueError(f"proxy URL {shown!r} has no host")
    port = _parse_port(port_text, scheme, shown)
    username: str | None = None
    password: str | None = None
    if at:
        user_text, colon, password_text = userinfo.partition(":")
        try:
            username = unquote(user_text, errors="strict")
            password = unquote(password_text, errors="strict") if colon else None
        except UnicodeDecodeError:
            raise ValueError(
                f"proxy URL {shown!r}: the user name or password is not UTF-8 once decoded"
            ) from None
    host = host.lower() if not _is_ip(host) else host
    if not (_is_ip(host) or _is_host_name(host)):
        raise ValueError(f"proxy URL {shown!r}: {host!r} is not a host name or an IP address")
    return Proxy(scheme, host, port, username, password)


# --- the environment ------------------------------------------------------------------------


def _getenv(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """``(variable, value)`` for ``name`` (lower case first, as curl), empty meaning unset."""
    for variable in (name, name.upper()):
        value = environ.get(variable, "").strip()
        if value:
            return variable, value
    return None


def _no_proxy_entry_matches(entry: str, host: str, port: int) -> bool:
    """One ``no_proxy`` entry against the origin (``host`` lower case, no final dot)."""
    if entry == "*":
        return True
    wanted_port: int | None = None
    if entry.startswith("["):
        address, _, rest = entry[1:].partition("]")
        entry, port_text = address, rest.removeprefix(":")
        wanted_port = int(port_text) if port_text.isdigit() else None
    elif entry.count(":") == 1:
        entry, _, port_text = entry.partition(":")
        if not port_text.isdigit():
            return False
        wanted_port = int(port_text)
    if wanted_port is not None and wanted_port != port:
        return False
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        pass
    else:
        # An address or block matches an origin given as an address; names are
        # not resolved for this (as curl).
        return _is_ip(host) and ipaddress.ip_address(host) in network
    suffix = entry.removeprefix("*").removeprefix(".").removesuffix(".")
    return bool(suffix) and (host == suffix or host.endswith("." + suffix))


def _bypassed(no_proxy: str, host: str, port: int) -> bool:
    host = host.lower().removesuffix(".")
    entries = [e for e in re.split(r"[,\s]+", no_proxy.lower()) if e]
    return any(_no_proxy_entry_matches(entry, host, port) for entry in entries)


def proxy_from_environment(
    *, tls: bool, host: str, port: int, environ: Mapping[str, str] | None = None
) -> Proxy | None:
    """The proxy the environment names for an origin, or None: what ``proxy="env"`` uses.

    ``https_proxy`` for a TLS origin, ``http_proxy`` for a plain one, then
    ``all_proxy``; each in lower case first, then upper case, an empty value
    counting as unset. ``HTTP_PROXY`` is ignored when ``REQUEST_METHOD`` is
    set: in a CGI program a request's ``Proxy:`` header lands there
    ("httpoxy", as Python's ``urllib`` does). A value without a scheme is
    taken as ``http://`` (as curl does). ``no_proxy`` turns the proxy off for
    the origins it matches: ``*``; host names, each matching itself and its
    subdomains (a leading ``.`` or ``*.`` changes nothing); IP addresses and
    CIDR blocks, matching origins given as addresses; any of them with
    ``:port`` to match that port only. Entries are separated by commas or
    white space. Reads ``environ`` (default ``os.environ``) once, resolves
    nothing: safe from any thread.

    Raises:
        ValueError: the variable's value is not a proxy URL (the message
            names the variable, never the password).
    """
    env = os.environ if environ is None else environ
    no_proxy = _getenv(env, "no_proxy")
    if no_proxy is not None and _bypassed(no_proxy[1], host, port):
        return None
    names = ("https_proxy", "all_proxy") if tls else ("http_proxy", "all_proxy")
    for name in names:
        found = _getenv(env, name)
        if found is None:
            continue
        variable, value = found
        if variable == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue  # httpoxy: see above (the lower-case one was unset)
        url = value if "://" in value else f"http://{value}"
        try:
            return parse_proxy(url)
        except ValueError as error:
            raise ValueError(f"${variable}: {error}") from None
    return None
