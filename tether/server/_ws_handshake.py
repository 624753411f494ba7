"""The server side of the Websocket opening handshake (RFC 6455 section 4.2).

h11 parses the upgrade request and sends the 101; this module decides
whether the request is a valid upgrade, which subprotocol to choose and
whether to accept permessage-deflate, and builds the 101's headers. wsproto
takes over afterwards with the extensions negotiated here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.utilities import generate_accept_token

from tether.server._exchange import Exchange

__all__ = ["WsAccept", "negotiate", "upgrade_problem", "wants_websocket"]

_KEY_BYTES = 16


@dataclass(frozen=True)
class WsAccept:
    """A Websocket upgrade the server accepts: the 101's headers and the extensions."""

    headers: list[tuple[str, str]]
    extensions: list[Extension] = field(default_factory=list)
    subprotocol: str | None = None


def _tokens(exchange: Exchange, name: str) -> list[str]:
    """The comma-separated values of every ``name`` header line, stripped, in order."""
    return [
        token.strip()
        for line in exchange.header(name)
        for token in line.split(",")
        if token.strip()
    ]


def wants_websocket(exchange: Exchange) -> bool:
    """True if the request asks to upgrade to Websocket at all (``upgrade: websocket``)."""
    return any(token.lower() == "websocket" for token in _tokens(exchange, "upgrade"))


def upgrade_problem(exchange: Exchange) -> str | None:
    """Why the request is not a valid Websocket upgrade, or None if it is."""
    if not wants_websocket(exchange):
        return "not a websocket upgrade"
    if exchange.method != "GET":
        return "a websocket upgrade must be a GET"
    if exchange.http10:
        return "a websocket upgrade needs HTTP/1.1"
    if not any(token.lower() == "upgrade" for token in _tokens(exchange, "connection")):
        return "connection header lacks upgrade"
    if exchange.header("sec-websocket-version") != ["13"]:
        return "unsupported sec-websocket-version"
    keys = exchange.header("sec-websocket-key")
    if len(keys) != 1:
        return "missing sec-websocket-key"
    try:
        decoded = base64.b64decode(keys[0].strip(), validate=True)
    except binascii.Error:
        return "sec-websocket-key is not base64"
    if len(decoded) != _KEY_BYTES:
        return "sec-websocket-key is not 16 bytes"
    return None


def _choose_subprotocol(exchange: Exchange, supported: Sequence[str]) -> str | None:
    return next(
        (offer for offer in _tokens(exchange, "sec-websocket-protocol") if offer in supported),
        None,
    )


def _accept_deflate(exchange: Exchange) -> tuple[PerMessageDeflate, str] | None:
    """The first permessage-deflate offer wsproto accepts, with the response value."""
    for offer in _tokens(exchange, "sec-websocket-extensions"):
        if offer.split(";", 1)[0].strip().lower() != PerMessageDeflate.name:
            continue
        extension = PerMessageDeflate()
        accepted = extension.accept(offer)
        if accepted is None or accepted is False:
            continue
        if accepted is True or not accepted:
            return extension, PerMessageDeflate.name
        return extension, f"{PerMessageDeflate.name}; {accepted}"
    return None


def negotiate(exchange: Exchange, subprotocols: Sequence[str]) -> WsAccept:
    """Build the acceptance of a valid upgrade (check :func:`upgrade_problem` first)."""
    key = exchange.header("sec-websocket-key")[0].strip().encode("ascii")
    headers = [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", generate_accept_token(key).decode("ascii")),
    ]
    subprotocol = _choose_subprotocol(exchange, subprotocols)
    if subprotocol is not None:
        headers.append(("sec-websocket-protocol", subprotocol))
    extensions: list[Extension] = []
    deflate = _accept_deflate(exchange)
    if deflate is not None:
        extension, value = deflate
        extensions.append(extension)
        headers.append(("sec-websocket-extensions", value))
    return WsAccept(headers=headers, extensions=extensions, subprotocol=subprotocol)
