"""Typed, validated options for ``tether.open``, with Gun's defaults.

Gun 2.4's manual (``doc/src/manual/gun.asciidoc``) is the reference for
every option tether shares with it; times are seconds here where Gun uses
milliseconds. ``http_opts`` and ``ws_opts`` accept a plain dict (as Gun's
maps) or the dataclass; unknown keys are an error naming the key.
"""

from __future__ import annotations

import dataclasses
import math
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, cast

from tether._proxies import Proxy, parse_proxy

__all__ = [
    "ConnectOpts",
    "ExponentialBackoff",
    "Http2Opts",
    "HttpOpts",
    "WsOpts",
    "check_positive_seconds",
]

RetryBackoff = Callable[[int], float]
"""``(attempt) -> seconds`` before reconnect attempt ``attempt`` (1, 2, ...)."""

EventHandler = Callable[[str, dict[str, Any]], None]


def _check_number(
    name: str,
    value: object,
    *,
    allow_none: bool = False,
    allow_zero: bool = True,
    allow_inf: bool = False,
) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if math.isnan(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, not {value!r}")
    # An option's seconds end up in a timer or a wait, which cannot take inf
    # (Condition.wait overflows); None is how an option says "no limit".
    if value == math.inf and not allow_inf:
        none = " (None: no limit)" if allow_none else ""
        raise ValueError(f"{name} must be finite, not {value!r}{none}")


def check_positive_seconds(
    name: str, value: object, *, allow_none: bool = True, allow_inf: bool = False
) -> None:
    """Validate a number of seconds: positive and finite, or None for no limit.

    Args:
        name: what the value is called in the error message.
        value: the value to check.
        allow_none: whether None ("no limit") is accepted.
        allow_inf: whether ``math.inf`` is accepted, as "no limit" (waits).

    Raises:
        TypeError: not a number (or None where it is allowed).
        ValueError: zero, negative, NaN, or infinite without ``allow_inf``.
    """
    _check_number(name, value, allow_none=allow_none, allow_zero=False, allow_inf=allow_inf)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__}")


def _check_size(name: str, value: object, *, allow_none: bool, what: str = "bytes") -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int number of {what}, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, not {value!r}")


def check_flow(name: str, value: object, *, allow_none: bool = True) -> None:
    """Validate a ``flow`` value (Gun: an integer > 0; None: no flow control, if allowed)."""
    _check_size(name, value, allow_none=allow_none, what="messages")


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpOpts:
    """HTTP options (Gun's ``http_opts``).

    Attributes:
        version: ``"HTTP/1.1"`` (default) or ``"HTTP/1.0"``. A Websocket upgrade
            needs HTTP/1.1.
        keepalive: seconds between keepalive empty lines sent while the
            connection is idle (Gun's behaviour; ``None``: off, Gun's default).
            Servers built on h11 reject the empty line, hence off by default.
        closing_timeout: seconds ``shutdown()`` waits for in-flight streams
            (and, on HTTP/2, a server's graceful GOAWAY for the streams it
            may still answer).
        max_header_block_size: largest response head (status line and
            headers) accepted, in bytes; it also bounds a chunk-size line, a
            trailer block and what the server may send before the next request.
            It is checked as bytes arrive, so at most one read more is ever
            buffered; past it the response fails with a ``RemoteProtocolError``
            (``Error``, then ``Down``).
        max_headers: most header fields accepted in one response head (or
            trailer block); ``None``: no limit but the size. Python's
            ``http.client`` allows 100. More fail the response the same way.
        flow: Gun's flow control for every request (a request's own ``flow``
            wins): how many ``Data`` events a response may deliver before
            tether stops reading the connection, until ``update_flow`` gives
            more. ``None`` (Gun's default): no flow control.
        response_timeout: seconds from a request going out (all of it: a
            streamed body counts from its last piece) to its response head
            (status line and headers) arriving; past it the stream gets
            an ``Error`` with [`ResponseTimeout`][tether.ResponseTimeout] and the
            connection is closed (HTTP/1.1 cannot skip a response; ``Down``,
            then a reconnect). ``None`` (the default, as Gun): no limit.
        transform_header_name: a callable ``(name: str) -> str`` applied to
            every request header name just before it is sent (Gun's), for
            servers that wrongly treat header names as case-sensitive: names
            reach it lower-case, as tether keeps them, and go out as it
            returns them (``str.title`` gives ``Content-Type``). All of a
            request's headers go through it, those tether adds (``host``,
            ``content-length``, ``transfer-encoding``, the Websocket
            handshake's) included. Meant for re-casing: a name it turns into
            another header's leaves the request without that one. If it
            raises or returns no valid header name, that request fails with
            an ``Error`` (an [`InvalidRequestError`][tether.InvalidRequestError])
            and is not sent; the connection goes on. ``None`` (the default):
            names go out lower-case.
    """

    version: Literal["HTTP/1.1", "HTTP/1.0"] = "HTTP/1.1"
    keepalive: float | None = None
    closing_timeout: float = 15.0
    max_header_block_size: int = 100_000
    max_headers: int | None = 100
    flow: int | None = None
    response_timeout: float | None = None
    transform_header_name: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        if self.version not in ("HTTP/1.1", "HTTP/1.0"):
            raise ValueError(
                f"http_opts version must be 'HTTP/1.1' or 'HTTP/1.0', not {self.version!r}"
            )
        check_positive_seconds("http_opts keepalive", self.keepalive)
        check_positive_seconds("http_opts closing_timeout", self.closing_timeout, allow_none=False)
        _check_size(
            "http_opts max_header_block_size", self.max_header_block_size, allow_none=False
        )
        count: object = self.max_headers
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)):
            raise TypeError(
                f"http_opts max_headers must be an int or None, not {type(count).__name__}"
            )
        if count is not None and count <= 0:
            raise ValueError(f"http_opts max_headers must be > 0, not {count!r}")
        check_flow("http_opts flow", self.flow)
        check_positive_seconds("http_opts response_timeout", self.response_timeout)
        if self.transform_header_name is not None and not callable(self.transform_header_name):
            raise TypeError(
                "http_opts transform_header_name must be a callable (name: str) -> str, not "
                f"{type(self.transform_header_name).__name__}"
            )


# RFC 9113 6.5.2 and 6.9.1: a flow-control window is at least the initial
# 65,535 bytes here (smaller would only slow the server) and at most 2**31 - 1.
_MIN_WINDOW = 65_535
_MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Http2Opts:
    """HTTP/2 options (Gun's ``http2_opts``); the rest of HTTP/2 follows ``http_opts``.

    The receive windows bound what a server may send before tether gives
    the window back (as the data becomes events; not while a stream's
    ``flow`` credit is spent): memory per connection, and per stream.
    ``http_opts`` ``max_header_block_size``, ``max_headers``, ``flow``,
    ``response_timeout``, ``closing_timeout`` and ``keepalive`` (a PING on
    HTTP/2) apply to HTTP/2 too.

    Attributes:
        initial_stream_window_size: each stream's receive window, in bytes
            (Gun's name; 1 MiB).
        initial_connection_window_size: the connection's receive window, all
            streams together, in bytes (Gun's name; 4 MiB).
    """

    initial_stream_window_size: int = 1024 * 1024
    initial_connection_window_size: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("initial_stream_window_size", "initial_connection_window_size"):
            value = getattr(self, name)
            _check_size(f"http2_opts {name}", value, allow_none=False)
            if not _MIN_WINDOW <= value <= _MAX_WINDOW:
                raise ValueError(
                    f"http2_opts {name} must be within {_MIN_WINDOW:,} and {_MAX_WINDOW:,} "
                    f"bytes, not {value!r}"
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class WsOpts:
    """Websocket options (Gun's ``ws_opts``, plus tether's ``reupgrade``).

    Attributes:
        compress: offer permessage-deflate (RFC 7692). The four options below
            tune the offer and need ``compress=True``; the server may accept
            the offer, decline it (messages then go uncompressed) or narrow
            it, and tether honours what it agreed to.
        client_max_window_bits: the largest LZ77 window (``2**bits`` bytes,
            9..15) tether compresses with; a smaller one uses less memory and
            compresses less. The server may lower it further. 8, which RFC 7692
            allows, is refused: zlib cannot compress with a 256-byte window.
        server_max_window_bits: the largest window (9..15) the server may
            compress with, so the memory tether needs to decompress; a server
            that accepts the offer without honouring it fails the upgrade.
        client_no_context_takeover: compress each message on its own (less
            memory kept between messages, worse compression).
        server_no_context_takeover: ask the server to compress each message on
            its own; a server that accepts without agreeing fails the upgrade.
        protocols: subprotocols to offer in ``sec-websocket-protocol`` (in
            addition to one given as an upgrade header).
        keepalive: seconds between automatic pings (``None``: off).
        pong_timeout: seconds to wait for a pong before the connection counts
            as lost (used with ``keepalive``).
        silence_pings: don't tell the owner about ping and pong frames (the
            pong reply to a ping is always sent).
        closing_timeout: seconds to wait for the close handshake.
        max_message_size: largest message accepted, in bytes (``None``: no
            limit); a larger one closes with 1009 and an ``Error``.
        max_fragments: most frames one message may arrive in (``None``: no
            limit); more close with 1009 and an ``Error``, as a message too
            large does: a server sending empty fragments for ever would
            otherwise keep the connection busy for ever without growing it.
        reupgrade: repeat the last successful upgrade after a reconnect.
        flow: Gun's flow control for the Websocket (and its upgrade
            request): how many ``Ws`` events it may deliver before tether
            stops reading the connection, until ``update_flow`` gives more.
            A read's frames are all delivered, so the credit may go below
            zero (as in Gun). ``None`` (Gun's default): no flow control.
        upgrade_timeout: seconds from the upgrade request going out to the
            server's answer (the ``101``, or a refusal's head); past it the
            stream gets an ``Error`` with [`UpgradeTimeout`][tether.UpgradeTimeout] and
            the connection is closed (``Down``, then a reconnect). ``None``
            (the default, as Gun): no limit.
    """

    compress: bool = False
    client_max_window_bits: int = 15
    server_max_window_bits: int = 15
    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    protocols: tuple[str, ...] = ()
    keepalive: float | None = None
    pong_timeout: float | None = None
    silence_pings: bool = True
    closing_timeout: float = 15.0
    max_message_size: int | None = 1 << 20
    max_fragments: int | None = 4096
    reupgrade: bool = False
    flow: int | None = None
    upgrade_timeout: float | None = None

    def __post_init__(self) -> None:
        _check_bool("ws_opts compress", self.compress)
        self._check_deflate()
        protocols: object = self.protocols  # users pass lists, or a str by mistake
        if isinstance(protocols, str | bytes) or not all(
            isinstance(p, str) and p for p in self.protocols
        ):
            raise TypeError("ws_opts protocols must be a sequence of non-empty str")
        object.__setattr__(self, "protocols", tuple(self.protocols))
        check_positive_seconds("ws_opts keepalive", self.keepalive)
        check_positive_seconds("ws_opts pong_timeout", self.pong_timeout)
        _check_bool("ws_opts silence_pings", self.silence_pings)
        check_positive_seconds("ws_opts closing_timeout", self.closing_timeout, allow_none=False)
        _check_size("ws_opts max_message_size", self.max_message_size, allow_none=True)
        _check_size("ws_opts max_fragments", self.max_fragments, allow_none=True, what="frames")
        _check_bool("ws_opts reupgrade", self.reupgrade)
        check_flow("ws_opts flow", self.flow)
        check_positive_seconds("ws_opts upgrade_timeout", self.upgrade_timeout)

    def _check_deflate(self) -> None:
        defaults = {
            "client_max_window_bits": 15,
            "server_max_window_bits": 15,
            "client_no_context_takeover": False,
            "server_no_context_takeover": False,
        }
        for name, default in defaults.items():
            value = getattr(self, name)
            if isinstance(default, bool):
                _check_bool(f"ws_opts {name}", value)
            elif isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ws_opts {name} must be an int, not {type(value).__name__}")
            elif not 9 <= value <= 15:
                raise ValueError(
                    f"ws_opts {name} must be 9..15, not {value!r} "
                    "(zlib cannot compress with an 8-bit window)"
                )
            if value != default and not self.compress:
                raise ValueError(f"ws_opts {name} needs compress=True")


_O = TypeVar("_O", HttpOpts, Http2Opts, WsOpts)


# One default instance per options class, shared: they are frozen, and a
# copy per connection was ~400 B of it (and a validation per open()).
_defaults: dict[type, Any] = {}


def _default_of(cls: type[_O]) -> _O:
    default = _defaults.get(cls)
    if default is None:  # two threads may both build one: either will do
        default = _defaults[cls] = cls()
    return cast(_O, default)


def coerce_opts(name: str, cls: type[_O], value: object) -> _O:
    """Accept ``None``, an instance of ``cls`` or a mapping of its field names."""
    if value is None:
        return _default_of(cls)
    if isinstance(value, cls):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in value if k not in known)
        if unknown:
            raise ValueError(
                f"unknown {name} option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**value)
    raise TypeError(f"{name} must be a dict or tether.{cls.__name__}, not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """Exponential backoff with full jitter: a random delay in ``[0, min(cap, base * 2**(n-1))]``.

    "Full jitter" spreads the reconnects of many clients that lost the same
    server, instead of having them all retry in lock-step.

    Args:
        base: the upper bound of the first delay, in seconds.
        cap: the largest delay, in seconds.
    """

    base: float = 0.5
    cap: float = 30.0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_positive_seconds("ExponentialBackoff base", self.base, allow_none=False)
        check_positive_seconds("ExponentialBackoff cap", self.cap, allow_none=False)

    def __call__(self, attempt: int) -> float:
        """Return the delay before reconnect attempt ``attempt`` (1-based)."""
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), 64))
        return self._rng.uniform(0.0, ceiling)


#: Events a connection may have told its owner and the owner not taken yet
#: (``max_queue``), and their payload bytes (``max_queue_bytes``), before
#: it stops reading: websockets' ``max_queue`` (16 messages of at most 1 MiB)
#: in spirit, counted in events since an HTTP body arrives in many.
DEFAULT_MAX_QUEUE = 128
DEFAULT_MAX_QUEUE_BYTES = 16 * 1024 * 1024
#: Bytes a connection may hold for the wire before senders wait.
DEFAULT_SEND_BUFFER = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectOpts:
    """All options of ``tether.open``, validated. Gun's defaults: retry 5, retry_timeout 5 s.

    [`tether.open`][tether.open] takes them as keyword arguments and builds
    this (``ConnectOpts.build``); a connection's are ``conn.opts``.

    The backpressure options (``docs/connection.md``): ``max_queue`` events
    and ``max_queue_bytes`` bytes told to the owner and not yet taken stop
    reading (``max_queue=None`` turns the receive bound off: Gun's unbounded
    mailbox); ``send_buffer`` bytes held for the wire make senders wait (for
    at most ``send_timeout`` seconds), and no byte waits to be sent longer
    than ``send_timeout`` (Gun's ``send_timeout``, 15 s) before the
    connection counts as lost (``WriteTimeout``).

    Attributes:
        transport: ``"tcp"`` (default) or ``"tls"``.
        tls_context: the ``ssl.SSLContext`` for ``"tls"`` (Gun's ``tls_opts``);
            ``None``: the system's trust store, verification on.
        server_hostname: for ``"tls"``, the name sent as SNI and checked
            against the certificate, instead of the host connected to (Gun's
            ``tls_opts`` ``server_name_indication``); ``None``: the host.
        connect_timeout: seconds each connection attempt may take, DNS, TCP
            and the TLS handshake included; ``None``: no limit but the
            system's own on a TCP connect.
        domain_lookup_timeout: seconds the DNS lookup of an attempt may take
            (Gun's ``domain_lookup_timeout``); ``None``: no limit of its own
            (``connect_timeout`` still bounds the attempt).
        tls_handshake_timeout: seconds the TLS handshake of an attempt may
            take, from the TCP connect on (Gun's ``tls_handshake_timeout``);
            ``None``: no limit of its own.
        retry: reconnect attempts after a failed attempt or a lost
            connection; ``0``: none.
        retry_timeout: seconds between reconnect attempts (the first
            reconnect is immediate).
        retry_backoff: a callable ``(attempt) -> seconds`` that replaces the
            fixed delay, e.g. [`ExponentialBackoff`][tether.ExponentialBackoff].
        http_opts: the [`HttpOpts`][tether.HttpOpts] (``open`` takes a dict too).
        http2_opts: the [`Http2Opts`][tether.Http2Opts] (a dict too): HTTP/2's
            receive windows.
        ws_opts: the [`WsOpts`][tether.WsOpts] (``open`` takes a dict too).
        event_handler: a callable ``(name, data)`` called at each phase of the
            connection's life (``docs/event_handler.md``).
        max_queue: events told to the owner and not yet taken past which
            reading stops; ``None``: no bound.
        max_queue_bytes: the same, counted in payload bytes.
        send_buffer: bytes held for the wire past which senders wait;
            ``None``: no bound.
        send_timeout: how long a sender waits for room, and any byte to be
            sent, in seconds.
        proxy: the [`Proxy`][tether.Proxy] every attempt goes through
            (``open`` takes its URL: ``"http://user:pass@host:3128"``,
            ``"https://..."``, ``"socks5://..."``, ``"socks5h://..."``, or
            ``"env"``); ``None``: connect directly (``docs/proxies.md``).
        proxy_tls_context: the ``ssl.SSLContext`` of the TLS with an
            ``https://`` proxy; ``None``: the system's trust store,
            verification on (``tls_context`` is the origin's). With no
            ``https://`` proxy it is refused, except with ``proxy="env"``:
            there it is dropped when the environment names no such proxy.
        protocols: the protocols to speak, in order of preference: ``"http2"``
            and ``"http"`` (HTTP/1.1) (Gun's ``protocols``). ``None`` (the
            default): ``("http2", "http")`` over TLS, where ALPN chooses, and
            ``("http",)`` over TCP. Over TCP, ``("http2",)`` is HTTP/2 with
            prior knowledge (h2c). Over TLS they are the ALPN offer
            (``"h2"``, ``"http/1.1"``) of tether's default context; a
            ``tls_context`` of your own offers what you set on it.
    """

    transport: Literal["tcp", "tls"] = "tcp"
    tls_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    connect_timeout: float | None = None
    domain_lookup_timeout: float | None = None
    tls_handshake_timeout: float | None = None
    retry: int = 5
    retry_timeout: float = 5.0
    retry_backoff: RetryBackoff | None = None
    http_opts: HttpOpts = field(default_factory=HttpOpts)
    ws_opts: WsOpts = field(default_factory=WsOpts)
    http2_opts: Http2Opts = field(default_factory=Http2Opts)
    event_handler: EventHandler | None = None
    max_queue: int | None = DEFAULT_MAX_QUEUE
    max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES
    send_buffer: int | None = DEFAULT_SEND_BUFFER
    send_timeout: float = 15.0
    proxy: Proxy | None = None
    proxy_tls_context: ssl.SSLContext | None = None
    protocols: tuple[Literal["http2", "http"], ...] | None = None

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "tls"):
            raise ValueError(f"transport must be 'tcp' or 'tls', not {self.transport!r}")
        if self.tls_context is not None and not isinstance(self.tls_context, ssl.SSLContext):
            raise TypeError("tls_context must be an ssl.SSLContext")
        if self.server_hostname is not None:
            if not isinstance(self.server_hostname, str) or not self.server_hostname:
                raise TypeError("server_hostname must be a non-empty str (a host name)")
            if self.transport != "tls":
                raise ValueError("server_hostname is a TLS server name: it needs transport='tls'")
        check_positive_seconds("connect_timeout", self.connect_timeout)
        check_positive_seconds("domain_lookup_timeout", self.domain_lookup_timeout)
        check_positive_seconds("tls_handshake_timeout", self.tls_handshake_timeout)
        if isinstance(self.retry, bool) or not isinstance(self.retry, int):
            raise TypeError(f"retry must be an int, not {type(self.retry).__name__}")
        if self.retry < 0:
            raise ValueError(f"retry must be >= 0, not {self.retry}")
        _check_number("retry_timeout", self.retry_timeout)
        if self.retry_backoff is not None and not callable(self.retry_backoff):
            raise TypeError("retry_backoff must be a callable (attempt) -> seconds")
        if self.event_handler is not None and not callable(self.event_handler):
            raise TypeError("event_handler must be a callable (name, data) -> None")
        _check_size("max_queue", self.max_queue, allow_none=True, what="events")
        _check_size("max_queue_bytes", self.max_queue_bytes, allow_none=True)
        _check_size("send_buffer", self.send_buffer, allow_none=True)
        check_positive_seconds("send_timeout", self.send_timeout, allow_none=False)
        self._check_proxy()
        self._check_protocols()

    def _check_protocols(self) -> None:
        protocols: object = self.protocols
        if protocols is None:
            return
        if isinstance(protocols, str | bytes) or not isinstance(protocols, list | tuple):
            raise TypeError("protocols must be a sequence such as ('http2', 'http')")
        if not protocols or len(set(protocols)) != len(protocols):
            raise ValueError(f"protocols must name each protocol once, not {protocols!r}")
        unknown = [p for p in protocols if p not in ("http2", "http")]
        if unknown:
            raise ValueError(f"protocols: unknown {unknown!r} (known: 'http2', 'http')")
        if "http2" in protocols and self.http_opts.version == "HTTP/1.0":
            raise ValueError("protocols with 'http2' and http_opts version HTTP/1.0 contradict")
        object.__setattr__(self, "protocols", tuple(protocols))

    @property
    def speaks(self) -> tuple[Literal["http2", "http"], ...]:
        """``protocols``, or its default for the transport (see the class docstring)."""
        if self.protocols is not None:
            return self.protocols
        if self.transport == "tls" and self.http_opts.version == "HTTP/1.1":
            return ("http2", "http")
        return ("http",)

    def _check_proxy(self) -> None:
        if self.proxy is not None and not isinstance(self.proxy, Proxy):
            raise TypeError(
                f"proxy must be a URL str, 'env', a tether.Proxy or None, not "
                f"{type(self.proxy).__name__}"
            )
        if self.proxy_tls_context is not None:
            if not isinstance(self.proxy_tls_context, ssl.SSLContext):
                raise TypeError("proxy_tls_context must be an ssl.SSLContext")
            if self.proxy is None or not self.proxy.tls:
                raise ValueError("proxy_tls_context is for an https:// proxy: proxy= has none")

    @classmethod
    def build(cls, **kwargs: Any) -> ConnectOpts:
        """Build from ``open()``'s keyword arguments, coercing the two option maps."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(k for k in kwargs if k not in known)
        if unknown:
            raise TypeError(f"unknown option(s) for tether.open: {', '.join(unknown)}")
        kwargs["http_opts"] = coerce_opts("http_opts", HttpOpts, kwargs.get("http_opts"))
        kwargs["ws_opts"] = coerce_opts("ws_opts", WsOpts, kwargs.get("ws_opts"))
        kwargs["http2_opts"] = coerce_opts("http2_opts", Http2Opts, kwargs.get("http2_opts"))
        proxy = kwargs.get("proxy")
        if isinstance(proxy, str):
            if proxy == "env":  # needs the origin: open() resolves it
                raise ValueError("proxy='env' is resolved by tether.open, not ConnectOpts")
            kwargs["proxy"] = parse_proxy(proxy)
        return cls(**kwargs)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (1-based).

        As Gun's default ``retry_fun``: the first attempt after a lost
        connection is immediate, the next ones ``retry_timeout`` apart, unless
        a ``retry_backoff`` policy says otherwise. A policy that raises or
        returns a bad value is the caller's problem (see the connection actor).
        """
        if self.retry_backoff is not None:
            return float(self.retry_backoff(attempt))
        return 0.0 if attempt == 1 else float(self.retry_timeout)
