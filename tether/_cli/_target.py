"""A URL given on the command line, turned into ``tether.open``'s arguments.

``tether get`` takes ``http://`` and ``https://`` URLs, ``tether ws``
``ws://`` and ``wss://`` ones; the ``s`` schemes mean TLS, with the
system's trust store unless ``--cacert FILE`` names another CA bundle or
``--insecure`` turns verification off. With ``--unix-socket PATH`` (curl's)
the connection goes to that Unix domain socket (``tether.open_unix``):
the URL gives the scheme and the path, and the ``host`` header is
``localhost``, as Gun's ``open_unix`` sends (``-H 'host: ...'`` overrides it).
With ``--proxy URL`` (curl's ``-x``) every connect goes through that proxy
(``tether.open``'s ``proxy=``); ``--proxy env`` is ``proxy="env"``, the
environment's ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``.
"""

from __future__ import annotations

import argparse
import dataclasses
import ssl
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import tether
from tether._cli._exit import CliFailure, ExitCode
from tether._proxies import parse_proxy

__all__ = [
    "Target",
    "add_connection_options",
    "parse_headers",
    "parse_proxy_option",
    "parse_url",
    "tls_options",
]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_TLS_SCHEMES = frozenset({"https", "wss"})


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect and what to ask for."""

    url: str
    host: str
    port: int
    tls: bool
    path: str  # the request target: path and query
    unix_socket: str | None = None  # --unix-socket: connect there instead
    # --proxy: a parsed URL, or "env" until open() has read the environment.
    proxy: tether.Proxy | Literal["env"] | None = None

    @property
    def where(self) -> str:
        """``host:port`` (IPv6 in brackets) or ``unix:PATH``, ``via proxy URL``: for messages."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}{self.via}"

    @property
    def via(self) -> str:
        """`` via proxy URL`` (never the password), or ``""`` for a direct connection."""
        match self.proxy:
            case tether.Proxy(url=url):
                return f" via proxy {url}"
            case "env":
                return " via the environment's proxy, if any"
            case _:
                return ""

    def open(self, **options: Any) -> tuple[tether.Connection, Target]:
        """``tether.open`` (``open_unix`` with ``--unix-socket``); the connection and this target.

        The target returned names the proxy the connection goes through:
        with ``--proxy env``, the one the environment gave (or none).
        """
        if self.unix_socket is not None:
            try:
                return tether.open_unix(self.unix_socket, **options), self
            except ValueError as exc:  # a path the kernel would refuse (too long, ...)
                raise CliFailure(ExitCode.USAGE, f"--unix-socket: {exc}") from None
        if self.proxy is not None:
            options["proxy"] = self.proxy
        try:
            conn = tether.open(self.host, self.port, **options)
        except ValueError as exc:
            if self.proxy != "env":
                raise
            # HTTP_PROXY and its kind set to what is not a proxy URL (named in exc).
            raise CliFailure(ExitCode.USAGE, f"--proxy env: {exc}") from None
        return conn, dataclasses.replace(self, proxy=conn.opts.proxy)


def parse_proxy_option(value: str | None) -> tether.Proxy | Literal["env"] | None:
    """``--proxy``'s value: a parsed proxy URL, ``"env"``, or None; a bad URL is a usage error."""
    if value is None:
        return None
    if value == "env":
        return "env"
    try:
        return parse_proxy(value)
    except ValueError as exc:  # the message says why, never with the password
        raise CliFailure(ExitCode.USAGE, f"--proxy: {exc}") from None


def parse_url(
    url: str,
    schemes: tuple[str, ...],
    unix_socket: str | None = None,
    proxy: str | None = None,
) -> Target:
    """Split ``url``; a malformed one, or one of another scheme, is a BAD_URL failure.

    ``unix_socket`` and ``proxy`` are the options' values; both at once, or
    a bad proxy URL, is a USAGE failure.
    """
    if unix_socket is not None and proxy is not None:
        raise CliFailure(
            ExitCode.USAGE, "--unix-socket and --proxy exclude each other (a Unix socket is local)"
        )
    parsed_proxy = parse_proxy_option(proxy)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, a bad IPv6 literal
        raise CliFailure(ExitCode.BAD_URL, f"bad URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        wanted = " or ".join(f"{s}://" for s in schemes)
        raise CliFailure(ExitCode.BAD_URL, f"bad URL {url!r}: expected {wanted}")
    if not parts.hostname:
        raise CliFailure(ExitCode.BAD_URL, f"bad URL {url!r}: no host")
    if any(c.isspace() for c in url):
        raise CliFailure(ExitCode.BAD_URL, f"bad URL {url!r}: contains white space")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(
        url=url,
        host=parts.hostname,
        port=port if port is not None else _DEFAULT_PORTS[scheme],
        tls=scheme in _TLS_SCHEMES,
        path=path,
        unix_socket=unix_socket,
        proxy=parsed_proxy,
    )


def parse_headers(values: list[str]) -> list[tuple[str, str]]:
    """``-H 'name: value'`` options as header pairs; a line without a colon is a usage error."""
    headers = []
    for value in values:
        name, colon, rest = value.partition(":")
        if not colon or not name.strip():
            raise CliFailure(ExitCode.USAGE, f"bad header {value!r}: expected 'name: value'")
        headers.append((name.strip(), rest.strip()))
    return headers


def tls_options(target: Target, cacert: str | None, insecure: bool) -> dict[str, Any]:
    """The TLS keyword arguments of ``tether.open`` for ``target`` (none for plain TCP)."""
    if not target.tls:
        return {}
    try:
        context = ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise CliFailure(ExitCode.USAGE, f"cannot load --cacert {cacert!r}: {exc}") from None
    context.set_alpn_protocols(["http/1.1"])
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return {"transport": "tls", "tls_context": context}


def add_connection_options(p: argparse.ArgumentParser, header_help: str) -> None:
    """The options ``get`` and ``ws`` share: ``-H``, TLS trust and the connect timeout."""
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help=header_help,
    )
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--cacert", metavar="FILE", help="trust the CA certificates in FILE (PEM)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="bound each connect attempt, TLS handshake included (default 30)",
    )
    p.add_argument(
        "--unix-socket",
        metavar="PATH",
        help="connect through this Unix domain socket (the URL gives the path; host: localhost)",
    )
    p.add_argument(
        "-x",
        "--proxy",
        metavar="URL",
        help=(
            "connect through this proxy: http://[USER:PASS@]HOST[:PORT], https://..., "
            "socks5://..., socks5h://...; 'env': HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY"
        ),
    )
