"""Argument checks for request calls, run in the caller's thread.

The connection actor works asynchronously, so a bad header found there
could only come back as an ``Error`` event, long after the mistake. These
checks make the call itself raise instead, with the offending value in the
message. They follow RFC 9110 5.1/5.5 (token names, no CR/LF/NUL in values),
the same rules h11 enforces later, so h11 never rejects what passed here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from tether._errors import InvalidRequestError

__all__ = [
    "HeaderList",
    "check_body",
    "check_framing",
    "check_method",
    "check_path",
    "normalize_headers",
]

HeaderList = list[tuple[bytes, bytes]]

# RFC 9110 5.6.2: token = 1*tchar
_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# RFC 9110 5.5: field values are visible characters, spaces and tabs, plus
# obs-text (0x80-0xFF); CR, LF and NUL are the dangerous ones (smuggling).
_FORBIDDEN_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# A request target: no whitespace or control characters.
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")
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
    if not _TOKEN.match(raw):
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
        if not _TOKEN.match(name):
            raise InvalidRequestError(f"invalid header name {pair[0]!r}")
        if _FORBIDDEN_IN_VALUE.search(value):
            raise InvalidRequestError(
                f"invalid value for header {pair[0]!r}: control characters (CR, LF, NUL) "
                "are not allowed"
            )
        result.append((name.lower(), value.strip(b" \t")))
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
        headers: the request's headers, as :func:`normalize_headers` returns them.
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
        if not _CONTENT_LENGTH.fullmatch(length):
            raise InvalidRequestError(
                f"content-length {length.decode('latin-1')!r} is not a non-negative "
                "decimal integer"
            )
        size = 0 if body is None else len(body)
        if not streamed and int(length) != size:
            raise InvalidRequestError(
                f"content-length {int(length)} does not match the body, {size} bytes"
            )
