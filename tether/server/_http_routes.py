"""The HTTP routes: one per behaviour a client library has to get right.

Each route answers an :class:`Exchange` and says what happens to the
connection afterwards (:class:`After`), or returns a :class:`WsAccept` to
switch to the Websocket echo. Any method is accepted unless a route says
otherwise; HEAD gets the GET headers without a body.

- ``/``              200 ``hello from tether``
- ``/echo``          200, the request body, ``x-method: <METHOD>``
- ``/headers``       200, the request headers, one ``name: value`` per line
- ``/headers/<N>``   200 with N response headers ``x-header-<i>: <i>`` (N <= 100,000)
- ``/header-bytes/<N>``  200 with one ``x-filler`` header of N bytes (N <= 16 MiB)
- ``/endless-head``  a status line, then header lines for ever (until the client
  goes away, or 256 MiB): a head that never ends
- ``/chunked``       200 chunked, the body in three pieces
- ``/trailers``      200 chunked with a ``x-checksum: 42`` trailer
- ``/inform``        103 Early Hints, then 200 ``informed``
- ``/status/<NNN>``  status NNN (200-599), body ``status NNN``
- ``/delay/<MS>``    200 ``delayed`` after MS milliseconds
- ``/close``         200 ``bye``, then the server closes the connection
- ``/drop``          the server closes the connection without responding
- ``/big/<N>``       200 with N bytes of ``x``, written in 64 KiB pieces
- ``/forbidden-ws``  403 ``no websocket for you``, upgrade request or not
- ``/websocket``, ``/ws``  the Websocket echo; 426 for a plain request
- anything else      404 ``not found``
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence

from tether.server._exchange import Exchange
from tether.server._ws_handshake import WsAccept, negotiate, upgrade_problem, wants_websocket

__all__ = ["After", "Outcome", "dispatch"]

_PIECE = 64 * 1024
_STATUS_RE = re.compile(r"/status/(\d{3})")
_DELAY_RE = re.compile(r"/delay/(\d{1,9})")
_BIG_RE = re.compile(r"/big/(\d{1,12})")
_HEADERS_RE = re.compile(r"/headers/(\d{1,6})")
_HEADER_BYTES_RE = re.compile(r"/header-bytes/(\d{1,8})")
_MAX_HEADERS = 100_000
_MAX_HEADER_BYTES = 16 << 20
# /endless-head: one header line of 1 KiB at a time, 64 lines per write.
_ENDLESS_LINE = b"x-filler: " + b"a" * 1012 + b"\r\n"
_ENDLESS_WRITE = _ENDLESS_LINE * 64
_ENDLESS_CAP = 256 << 20


class After(enum.Enum):
    """What the connection does once a route has answered."""

    #: Serve the next request if HTTP allows (keep-alive), else close.
    CONTINUE = "continue"
    #: Close the connection gracefully (FIN after the response).
    CLOSE = "close"
    #: Close the connection abruptly, whatever was (not) sent.
    DROP = "drop"


Outcome = After | WsAccept
Route = Callable[[Exchange], Outcome]


def _ok(exchange: Exchange, body: bytes) -> Outcome:
    exchange.respond(200, body)
    return After.CONTINUE


def _root(exchange: Exchange) -> Outcome:
    return _ok(exchange, b"hello from tether\n")


def _echo(exchange: Exchange) -> Outcome:
    content_type = (exchange.header("content-type") or ["application/octet-stream"])[0]
    exchange.respond(
        200, exchange.body, headers=[("x-method", exchange.method)], content_type=content_type
    )
    return After.CONTINUE


def _headers(exchange: Exchange) -> Outcome:
    lines = [name + b": " + value + b"\n" for name, value in exchange.request.headers]
    return _ok(exchange, b"".join(lines))


def _chunked(exchange: Exchange) -> Outcome:
    exchange.start(200, [("content-type", "text/plain"), ("transfer-encoding", "chunked")])
    for piece in (b"one ", b"two ", b"three"):
        if not exchange.data(piece):
            return After.DROP
    exchange.end()
    return After.CONTINUE


def _trailers(exchange: Exchange) -> Outcome:
    exchange.start(
        200,
        [
            ("content-type", "text/plain"),
            ("transfer-encoding", "chunked"),
            ("trailer", "x-checksum"),
        ],
    )
    exchange.data(b"body")
    exchange.end(trailers=[("x-checksum", "42")])
    return After.CONTINUE


def _inform(exchange: Exchange) -> Outcome:
    exchange.inform(103, [("link", "</style.css>; rel=preload")])
    return _ok(exchange, b"informed")


def _status(exchange: Exchange, status: int) -> Outcome:
    exchange.respond(status, f"status {status}".encode("ascii"))
    return After.CONTINUE


def _delay(exchange: Exchange, milliseconds: int) -> Outcome:
    if not exchange.client.wait(milliseconds / 1000):
        return After.DROP  # the server is stopping or dropped the connection
    return _ok(exchange, b"delayed")


def _close(exchange: Exchange) -> Outcome:
    exchange.respond(200, b"bye", headers=[("connection", "close")])
    return After.CLOSE


def _drop(exchange: Exchange) -> Outcome:
    return After.DROP


def _big(exchange: Exchange, size: int) -> Outcome:
    exchange.start(
        200, [("content-type", "application/octet-stream"), ("content-length", str(size))]
    )
    piece = b"x" * min(size, _PIECE)
    remaining = size
    while remaining > 0 and not exchange.head:
        if not exchange.data(piece[:remaining]):
            return After.DROP
        remaining -= len(piece)
    exchange.end()
    return After.CONTINUE


def _many_headers(exchange: Exchange, count: int) -> Outcome:
    headers = [(f"x-header-{i}", str(i)) for i in range(count)]
    exchange.respond(200, b"many headers", headers=headers)
    return After.CONTINUE


def _header_bytes(exchange: Exchange, size: int) -> Outcome:
    exchange.respond(200, b"one big header", headers=[("x-filler", "a" * size)])
    return After.CONTINUE


def _endless_head(exchange: Exchange) -> Outcome:
    # Raw bytes, past h11: h11 would (rightly) never send a head without its end.
    if not exchange.client.send(b"HTTP/1.1 200 OK\r\n"):
        return After.DROP
    sent = 0
    while sent < _ENDLESS_CAP and exchange.client.send(_ENDLESS_WRITE):
        sent += len(_ENDLESS_WRITE)
    return After.DROP


def _forbidden_ws(exchange: Exchange) -> Outcome:
    exchange.respond(403, b"no websocket for you")
    return After.CONTINUE


def _not_found(exchange: Exchange) -> Outcome:
    exchange.respond(404, b"not found")
    return After.CONTINUE


def _websocket(exchange: Exchange, subprotocols: Sequence[str]) -> Outcome:
    problem = upgrade_problem(exchange)
    if problem is None:
        return negotiate(exchange, subprotocols)
    if not wants_websocket(exchange):
        exchange.respond(426, b"websocket only", headers=[("upgrade", "websocket")])
    elif exchange.header("sec-websocket-version") != ["13"]:
        exchange.respond(
            426,
            problem.encode("ascii"),
            headers=[("upgrade", "websocket"), ("sec-websocket-version", "13")],
        )
    else:
        exchange.respond(400, problem.encode("ascii"))
    return After.CONTINUE


_EXACT: dict[str, Route] = {
    "/": _root,
    "/echo": _echo,
    "/headers": _headers,
    "/chunked": _chunked,
    "/trailers": _trailers,
    "/inform": _inform,
    "/close": _close,
    "/drop": _drop,
    "/forbidden-ws": _forbidden_ws,
    "/endless-head": _endless_head,
}


def dispatch(exchange: Exchange, subprotocols: Sequence[str]) -> Outcome:
    """Answer ``exchange`` with the route its path names; say what happens next."""
    path = exchange.path
    route = _EXACT.get(path)
    if route is not None:
        return route(exchange)
    if path in ("/websocket", "/ws"):
        return _websocket(exchange, subprotocols)
    if (match := _STATUS_RE.fullmatch(path)) and 200 <= int(match[1]) <= 599:
        return _status(exchange, int(match[1]))
    if match := _DELAY_RE.fullmatch(path):
        return _delay(exchange, int(match[1]))
    if match := _BIG_RE.fullmatch(path):
        return _big(exchange, int(match[1]))
    if (match := _HEADERS_RE.fullmatch(path)) and int(match[1]) <= _MAX_HEADERS:
        return _many_headers(exchange, int(match[1]))
    if (match := _HEADER_BYTES_RE.fullmatch(path)) and int(match[1]) <= _MAX_HEADER_BYTES:
        return _header_bytes(exchange, int(match[1]))
    return _not_found(exchange)
