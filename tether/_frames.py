"""Websocket frames, as sent with ``ws_send`` and received in ``Ws.frame``.

They mirror Gun's frame terms (``{text, Data}``, ``{binary, Data}``, ``ping``,
``{ping, Payload}``, ``pong``, ``close``, ``{close, Code, Reason}``) and check
their arguments when built, so a bad frame fails in the caller's thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = ["Binary", "Close", "Frame", "Ping", "Pong", "Text", "coerce_frames"]

# RFC 6455 5.5: control frame payloads are at most 125 bytes.
_MAX_CONTROL_PAYLOAD = 125


def _check_control_payload(kind: str, payload: object) -> None:
    if not isinstance(payload, bytes | bytearray):
        raise TypeError(f"{kind} payload must be bytes, not {type(payload).__name__}")
    if len(payload) > _MAX_CONTROL_PAYLOAD:
        raise ValueError(f"{kind} payload is {len(payload)} bytes; at most 125 allowed")


def _check_utf8(kind: str, text: str) -> None:
    # Only a lone surrogate ("\ud800") cannot be encoded; found here, in the
    # caller's thread, it does not crash the connection that encodes it.
    if text.isascii():  # the usual case, a C scan: no trial encode
        return
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{kind} cannot be sent as UTF-8: {text[exc.start : exc.end]!r} at index "
            f"{exc.start} is a lone surrogate"
        ) from exc


@dataclass(frozen=True, slots=True)
class Text:
    """A text message (``str``; sent as UTF-8).

    Raises:
        TypeError: ``data`` is not a ``str``.
        ValueError: ``data`` cannot be encoded as UTF-8 (a lone surrogate).
    """

    data: str

    def __post_init__(self) -> None:
        if not isinstance(self.data, str):
            raise TypeError(f"Text data must be str, not {type(self.data).__name__}")
        _check_utf8("Text data", self.data)


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary message."""

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise TypeError(f"Binary data must be bytes, not {type(self.data).__name__}")


@dataclass(frozen=True, slots=True)
class Ping:
    """A ping control frame (payload at most 125 bytes)."""

    payload: bytes = b""

    def __post_init__(self) -> None:
        _check_control_payload("Ping", self.payload)


@dataclass(frozen=True, slots=True)
class Pong:
    """A pong control frame (payload at most 125 bytes)."""

    payload: bytes = b""

    def __post_init__(self) -> None:
        _check_control_payload("Pong", self.payload)


# Close codes an endpoint may send (RFC 6455 7.4.1/7.4.2): 1004-1006 and
# 1015 are reserved for reporting, never for the wire.
_SENDABLE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


@dataclass(frozen=True, slots=True)
class Close:
    """A close frame. Sending one closes the Websocket cleanly; tether then reconnects."""

    code: int = 1000
    reason: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.code, int) or isinstance(self.code, bool):
            raise TypeError(f"Close code must be int, not {type(self.code).__name__}")
        if not isinstance(self.reason, str):
            raise TypeError(f"Close reason must be str, not {type(self.reason).__name__}")

    def check_sendable(self) -> None:
        """Raise ``ValueError`` if this frame may be received but not sent.

        Received close frames can carry codes (1005, 1006) that an endpoint
        must never put on the wire, so the check runs at ``ws_send`` only.
        """
        if self.code not in _SENDABLE_CLOSE_CODES and not 3000 <= self.code <= 4999:
            raise ValueError(f"close code {self.code} may not be sent (RFC 6455 7.4)")
        _check_utf8("close reason", self.reason)
        if len(self.reason.encode()) > _MAX_CONTROL_PAYLOAD - 2:
            raise ValueError("close reason is longer than 123 bytes of UTF-8")


Frame: TypeAlias = Text | Binary | Ping | Pong | Close

_FRAME_TYPES = (Text, Binary, Ping, Pong, Close)


# Frame types that ws_send takes as they are (a Close is checked first).
_NEED_NO_CHECK = frozenset({Text, Binary, Ping, Pong})


def _coerce_one(item: object) -> Frame:
    if isinstance(item, _FRAME_TYPES):
        if isinstance(item, Close):
            item.check_sendable()
        return item
    if isinstance(item, str):
        return Text(item)
    if isinstance(item, bytes | bytearray | memoryview):
        return Binary(bytes(item))
    raise TypeError(
        "a frame must be tether.Text/Binary/Ping/Pong/Close, str or bytes, "
        f"not {type(item).__name__}"
    )


def coerce_frames(frames: object) -> tuple[Frame, ...]:
    """Turn what ``ws_send`` accepts into a tuple of frames, or raise.

    Accepts one frame, a ``str`` (a Text frame), ``bytes`` (a Binary frame),
    or a list/tuple of any of these. An empty list is an error: it would
    silently send nothing.
    """
    if type(frames) in _NEED_NO_CHECK:  # one frame, the usual case: no more calls
        return (frames,)  # type: ignore[return-value]
    if isinstance(frames, list | tuple):
        if not frames:
            raise ValueError("ws_send needs at least one frame")
        return tuple(_coerce_one(f) for f in frames)
    return (_coerce_one(frames),)
