"""Argument checks for request calls, run in the caller's thread.

The connection actor works asynchronously, so a bad header found there
could only come back as an ``Error`` event, long after the mistake. These
checks make the call itself raise instead, with the offending value in the
message. They follow RFC 9110 5.1/5.5 (token names, no CR/LF/NUL in values),
the same rules h11 enforces later, so h11 never rejects what passed here.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from tether._errors import InvalidRequestError

__all__ = [
    "HeaderList",
    "check_body",
    "check_framing",
    "check_host",
    "check_method",
    "check_path",
    "check_server_hostname",
    "host_authority",
    "normalize_headers",
    "transform_names",
]

HeaderList = list[tuple[bytes, bytes]]

# RFC 9110 5.6.2: token = 1*tchar. Always fullmatch: "$" would let a final
# "\n" through, which h11 then refuses in the actor, taking the connection down.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 5.5: field values are visible characters, spaces and tabs, plus
# obs-text (0x80-0xFF); CR, LF and NUL are the dangerous ones (smuggling).
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# A request target: no whitespace or control characters.
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
# A label of a host name (RFC 1123 2.1, leniently: "_" and non-ASCII letters
# pass, as DNS and IDNA may accept them; the resolver has the last word).
_LABEL = re.compile(r"[\w-]{1,63}")
_TLS_SCHEMES = frozenset({"https", "wss"})
_REQUEST_CALL = {"http": "get", "https": "get", "ws": "ws_upgrade", "wss": "ws_upgrade"}
# RFC 9110 8.6: Content-Length = 1*DIGIT. 19 digits are past any body (and
# int() refuses a string of thousands).
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,19}")


def _to_bytes(what: str, value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise InvalidRequestError(
                f"{what} {value!r} has characters outside latin-1; percent-encode it"
            ) from None
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def check_method(method: object) -> bytes:
    """Return the method as bytes, or raise if it is not an HTTP token."""
    raw = _to_bytes("method", method)
    if not _TOKEN.fullmatch(raw):
        raise InvalidRequestError(f"invalid HTTP method {method!r}")
    return raw


def check_path(path: object) -> bytes:
    """Return the request target as bytes, or raise on whitespace/control characters."""
    raw = _to_bytes("path", path)
    if not raw or _BAD_TARGET.search(raw):
        raise InvalidRequestError(f"invalid request path {path!r}")
    return raw


def normalize_headers(headers: object) -> HeaderList:
    """Validate user headers and return them as ``[(lower-case name, value)]`` bytes.

    Accepts ``None``, a mapping, or an iterable of ``(name, value)`` pairs;
    names and values may be ``str`` (latin-1) or ``bytes``.
    """
    if headers is None:
        return []
    pairs: Iterable[object]
    if isinstance(headers, Mapping):
        pairs = headers.items()
    elif isinstance(headers, str | bytes) or not isinstance(headers, Iterable):
        raise TypeError("headers must be a list of (name, value) pairs or a dict")
    else:
        pairs = headers
    result: HeaderList = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise TypeError(f"each header must be a (name, value) pair, not {pair!r}")
        name = _to_bytes("header name", pair[0])
        value = _to_bytes("header value", pair[1])
        if not _TOKEN.fullmatch(name):
            raise InvalidRequestError(f"invalid header name {pair[0]!r}")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise InvalidRequestError(
                f"invalid value for header {pair[0]!r}: control characters (CR, LF, NUL) "
                "are not allowed"
            )
        result.append((name.lower(), value.strip(b" \t")))
    return result


def transform_names(headers: HeaderList, transform: Callable[[str], str]) -> HeaderList:
    """``headers``, each name passed through ``transform`` (``transform_header_name``).

    Names reach ``transform`` as ``str`` (latin-1, as they were given) and
    must come back as a ``str`` that is still a header name (an HTTP token).

    Raises:
        InvalidRequestError: ``transform`` raised (the exception is the
            cause), or returned something that is no header name.
    """
    result: HeaderList = []
    for name, value in headers:
        text = name.decode("latin-1")
        try:
            new = transform(text)
        except Exception as exc:
            raise InvalidRequestError(
                f"http_opts transform_header_name raised on {text!r}: {exc!r}"
            ) from exc
        if not isinstance(new, str):
            raise InvalidRequestError(
                f"http_opts transform_header_name must return a str, not "
                f"{type(new).__name__} (for {text!r})"
            )
        # Outside latin-1 becomes "?", which no token has.
        raw = new.encode("latin-1", errors="replace")
        if not _TOKEN.fullmatch(raw):
            raise InvalidRequestError(
                f"http_opts transform_header_name turned {text!r} into {new!r}, "
                "which is not a valid header name"
            )
        result.append((raw, value))
    return result


def check_body(body: object) -> bytes | None:
    """Return the body as ``bytes`` (or None), or raise ``TypeError`` for anything else."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        raise TypeError("body must be bytes, not str: encode it (e.g. body.encode())")
    raise TypeError(f"body must be bytes, not {type(body).__name__}")


def check_framing(headers: HeaderList, body: bytes | None, *, streamed: bool = False) -> None:
    """Raise if the ``content-length``/``transfer-encoding`` headers cannot frame the body.

    h11 would refuse such a request only in the connection actor, once
    part of it may be on the wire; this makes the call raise instead.

    Args:
        headers: the request's headers, as ``normalize_headers`` returns them.
        body: the whole body (``None``: no body); not looked at if ``streamed``.
        streamed: the body follows in pieces (``Connection.headers``/``data``),
            so its length is not known yet.

    Raises:
        InvalidRequestError: more than one ``content-length`` or
            ``transfer-encoding`` header, both of them (RFC 9112 6.2), a
            ``content-length`` that is not a non-negative decimal integer or,
            with a whole body, not its length, or a ``transfer-encoding``
            other than ``chunked`` (the only one h11 can send).
    """
    length, coding = _framing_headers(headers)
    if coding is not None:
        if length is not None:
            raise InvalidRequestError(
                "a request may not have both content-length and transfer-encoding "
                "headers (RFC 9112 6.2)"
            )
        if coding.lower() != b"chunked":
            raise InvalidRequestError(
                f"transfer-encoding {coding.decode('latin-1')!r} cannot be sent: only "
                "'chunked' (without the header, tether frames the body itself)"
            )
    elif length is not None:
        _check_length(length, body, streamed)


def _framing_headers(headers: HeaderList) -> tuple[bytes | None, bytes | None]:
    """The ``content-length`` and ``transfer-encoding`` values; raise if one comes twice."""
    length: bytes | None = None
    coding: bytes | None = None
    for name, value in headers:
        if name == b"content-length":
            if length is not None:
                raise InvalidRequestError("a request may have one content-length header, not two")
            length = value
        elif name == b"transfer-encoding":
            if coding is not None:
                raise InvalidRequestError(
                    "a request may have one transfer-encoding header, not two"
                )
            coding = value
    return length, coding


def _check_length(length: bytes, body: bytes | None, streamed: bool) -> None:
    """``content-length`` is a decimal integer, the whole body's length unless ``streamed``."""
    if not _CONTENT_LENGTH.fullmatch(length):
        raise InvalidRequestError(
            f"content-length {length.decode('latin-1')!r} is not a non-negative decimal integer"
        )
    size = 0 if body is None else len(body)
    if not streamed and int(length) != size:
        raise InvalidRequestError(
            f"content-length {int(length)} does not match the body, {size} bytes"
        )


@functools.lru_cache(maxsize=256)
def ip_version(host: str) -> int | None:
    """4 or 6 for an IP address literal, else None.

    Cached: ``open()`` asks twice per connection (``check_host``, then the
    transport), ipaddress parses in Python (both were ~10 % of the CPU time
    of an open, connect and close), and a program's connections go to a
    few hosts.
    """
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def _is_host(host: str) -> bool:
    """True for an IP address literal or a host name (dot-separated labels, one final dot)."""
    if ip_version(host) is not None:
        return True
    name = host.removesuffix(".")
    return 0 < len(name) <= 253 and all(_LABEL.fullmatch(label) for label in name.split("."))


def _is_ipv6(host: str) -> bool:
    return ip_version(host) == 6


def _is_port(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 65536


def _open_call(host: str, port: int, tls: bool = False) -> str:
    transport = ", transport='tls'" if tls else ""
    return f"tether.open({host!r}, {port}{transport})"


def _url_hint(url: str, port: int) -> str | None:
    """What to pass instead of ``url``, a URL given as the host; None if it is no usable URL."""
    try:
        parts = urlsplit(url)
        port = parts.port or port
    except ValueError:
        return None
    if not parts.hostname or not _is_host(parts.hostname):
        return None
    scheme = parts.scheme.lower()
    hint = _open_call(parts.hostname, port, scheme in _TLS_SCHEMES)
    call = _REQUEST_CALL.get(scheme)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if call is not None and path not in ("", "/"):
        hint += f", then conn.{call}({path!r})"
    return hint


def host_authority(host: str, port: int, *, tls: bool) -> str:
    """The ``host`` header's value (RFC 7230 5.4): the port only if not the scheme's default.

    An IPv6 address goes in brackets (``check_host`` took it without them).
    """
    name = f"[{host}]" if ":" in host else host
    return name if port == (443 if tls else 80) else f"{name}:{port}"


def check_server_hostname(name: str) -> None:
    """Raise ``ValueError`` unless ``server_hostname`` is a host name or an IP address."""
    if not _is_host(name):
        raise ValueError(f"server_hostname {name!r} is not a host name or an IP address")


def check_host(host: str, port: int) -> None:
    """Raise ``ValueError`` unless ``host`` is a host name or an IP address.

    The message says what to pass instead: a URL, a host with its port
    glued on (``"host:80"``), an IPv6 address in brackets, or a host with a
    path or white space would otherwise be tried as a name, and fail only
    once the connection attempts run out.
    """
    if _is_host(host):
        return
    problem = "is not a host name or an IP address"
    hint = f"give one, e.g. {_open_call('example.com', port)} or {_open_call('127.0.0.1', port)}"
    if "://" in host:
        problem = "is a URL; give the host name and the port"
        hint = _url_hint(host, port) or hint
    elif host.startswith("["):
        address, _, rest = host[1:].partition("]")
        glued = rest.removeprefix(":")
        if _is_ipv6(address) and (not rest or (rest.startswith(":") and _is_port(glued))):
            problem = "has brackets; give the IPv6 address without them, and the port apart"
            hint = _open_call(address, int(glued) if glued else port)
    elif host.strip() != host and _is_host(host.strip()):
        problem, hint = "has white space around it", _open_call(host.strip(), port)
    elif "/" in host and _is_host(host.partition("/")[0]):
        name, _, path = host.partition("/")
        problem = "has a path; give the host name alone"
        hint = f"{_open_call(name, port)}, then conn.get({'/' + path!r})"
    elif host.count(":") == 1 and _is_host(host.partition(":")[0]):
        name, _, glued = host.partition(":")
        if _is_port(glued):
            problem = "has a port glued on; give the port apart"
            hint = _open_call(name, int(glued))
    raise ValueError(f"host {host!r} {problem}: {hint}")
