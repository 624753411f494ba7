"""The moments only the protocol sees, told to an observer: the event handler's phases.

A driver that wants them (the connection actor, when the user gave an
``event_handler``) passes ``observe`` to
[`ClientProtocol`][tether.protocol.ClientProtocol]: a callable
``(name, data)`` that the protocol calls synchronously, during the call
that reaches the moment, with Gun's phase name and a fresh dict. Without
one, each such place costs a test of ``None`` and nothing else.

The phases and their data (``docs/event_handler.md`` has the table):

- ``request_start`` and ``request_headers`` when a request's head is
  written, ``request_end`` when its last byte is (its body's end, or the
  head of a request without a body);
- ``response_start`` with each head (informational or final),
  ``response_inform`` (a 1xx, the 101 of an upgrade among them) or
  ``response_headers``, ``response_trailers``, ``response_end``; for a
  cancelled stream too, as Gun does (its response still comes);
- ``protocol_changed`` once a 101 completed the Websocket handshake;
- ``ws_recv_frame_start``, ``ws_recv_frame_header``, ``ws_recv_frame_end``
  and tether's ``ws_recv_frame``, all four once a whole frame has been
  read: a message in several fragments once, as a whole (the frame layer
  reads messages, not frames, see ``received``);
- ``ws_send_frame_start``, ``ws_send_frame_end`` and tether's
  ``ws_send_frame`` around each frame written, the automatic ones (pong
  replies, a close echo) among them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether._events import StreamRef
from tether._frames import Binary, Close, Frame, Ping, Pong, Text

__all__ = ["Observer", "frame_type", "received", "sending", "sent"]

Observer = Callable[[str, dict[str, Any]], None]
"""What the protocol tells its phases to: ``observe(name, data)``."""

# RFC 6455 7.4.1: 1005 says a close frame had no status code (none on the wire).
_NO_STATUS = 1005


def frame_type(frame: Frame) -> str:
    """Gun's frame type: ``"text"``, ``"binary"``, ``"ping"``, ``"pong"`` or ``"close"``."""
    kind = type(frame)
    if kind is Text:
        return "text"
    if kind is Binary:
        return "binary"
    if kind is Ping:
        return "ping"
    if kind is Pong:
        return "pong"
    return "close"


def _payload(frame: Frame) -> tuple[str | bytes, int, int | None]:
    """``(payload, its length in bytes, close code)``: what the frame carried."""
    match frame:
        case Text(data=text):
            return text, len(text.encode()), None
        case Binary(data=data):
            return data, len(data), None
        case Ping(payload=payload) | Pong(payload=payload):
            return payload, len(payload), None
        case Close(code=code, reason=reason):
            size = 0 if code == _NO_STATUS else 2 + len(reason.encode())
            return reason, size, code
    raise TypeError(f"not a frame: {frame!r}")  # pragma: no cover - Frame is closed


def received(
    observe: Observer,
    stream: StreamRef,
    extensions: tuple[str, ...],
    rsv: int | None,
    frame: Frame,
) -> None:
    """The four phases of one frame (or whole message) received, in Gun's order.

    The frame layer learns of a frame once it is whole (wsproto's events,
    or tether's reader), so start, header and end come together, and a
    message the server fragmented comes once: ``frag_state`` is always
    ``None`` and ``len`` is the whole payload's (decompressed) length.
    ``rsv`` is ``0`` where no extension is in use, ``None`` where one is
    (the bits of each frame are wsproto's). Server frames are never
    masked: ``mask_key`` is ``None``.
    """
    payload, size, close_code = _payload(frame)
    start = {"stream": stream, "frag_state": None, "extensions": extensions}
    observe("ws_recv_frame_start", start)
    observe(
        "ws_recv_frame_header",
        {
            "stream": stream,
            "frag_state": None,
            "extensions": extensions,
            "type": frame_type(frame),
            "rsv": rsv,
            "len": size,
            "mask_key": None,
        },
    )
    observe(
        "ws_recv_frame_end",
        {
            "stream": stream,
            "extensions": extensions,
            "close_code": close_code,
            "payload": payload,
        },
    )
    observe("ws_recv_frame", {"stream": stream, "frame": frame})


def sending(
    observe: Observer, stream: StreamRef, extensions: tuple[str, ...], frame: Frame
) -> None:
    """``ws_send_frame_start``: ``frame`` is about to be written."""
    observe("ws_send_frame_start", {"stream": stream, "extensions": extensions, "frame": frame})


def sent(observe: Observer, stream: StreamRef, extensions: tuple[str, ...], frame: Frame) -> None:
    """``ws_send_frame_end`` and tether's ``ws_send_frame``: ``frame`` was written."""
    observe("ws_send_frame_end", {"stream": stream, "extensions": extensions, "frame": frame})
    observe("ws_send_frame", {"stream": stream, "frame": frame})
