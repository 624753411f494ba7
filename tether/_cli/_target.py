"""A URL given on the command line, turned into ``tether.open``'s arguments.

``tether get`` takes ``http://`` and ``https://`` URLs, ``tether ws``
``ws://`` and ``wss://`` ones; the ``s`` schemes mean TLS, with the
system's trust store unless ``--cacert FILE`` names another CA bundle or
``--insecure`` turns verification off. With ``--unix-socket PATH`` (curl's)
the connection goes to that Unix domain socket (``tether.open_unix``):
the URL gives the scheme and the path, and the ``host`` header is
``localhost``, as Gun's ``open_unix`` sends (``-H 'host: ...'`` overrides it).
"""

from __future__ import annotations

import argparse
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import tether
from tether._cli._exit import CliFailure, ExitCode

__all__ = ["Target", "add_connection_options", "parse_headers", "parse_url", "tls_options"]

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

    @property
    def where(self) -> str:
        """``host:port`` (IPv6 addresses in brackets), or ``unix:PATH``, for messages."""
        if self.unix_socket is not None:
            return f"unix:{self.unix_socket}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def open(self, **options: Any) -> tether.Connection:
        """``tether.open`` to host and port, or ``tether.open_unix`` with ``--unix-socket``."""
        if self.unix_socket is None:
            return tether.open(self.host, self.port, **options)
        try:
            return tether.open_unix(self.unix_socket, **options)
        except ValueError as exc:  # a path the kernel would refuse (too long, ...)
            raise CliFailure(ExitCode.USAGE, f"--unix-socket: {exc}") from None


def parse_url(url: str, schemes: tuple[str, ...], unix_socket: str | None = None) -> Target:
    """Split ``url``; a malformed one, or one of another scheme, is a BAD_URL failure."""
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


def tls_options(
    target: Target, cacert: str | None, insecure: bool, *, http2: bool = False
) -> dict[str, Any]:
    """The TLS keyword arguments of ``tether.open`` for ``target`` (none for plain TCP).

    ALPN offers ``http/1.1``, or with ``http2`` ``h2`` first (the server chooses).
    """
    if not target.tls:
        return {}
    try:
        context = ssl.create_default_context(cafile=cacert)
    except (OSError, ssl.SSLError) as exc:
        raise CliFailure(ExitCode.USAGE, f"cannot load --cacert {cacert!r}: {exc}") from None
    context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
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
