"""One readable line per event, for the CLI and for logs.

``repr`` of an event includes the whole ``Connection`` and every header,
which is noise on a terminal; :func:`describe` keeps what a person reading
the output of ``tether demo`` wants: the kind, the stream, and the payload.
"""

from __future__ import annotations

from tether._events import (
    Data,
    Down,
    Error,
    Event,
    Inform,
    Response,
    StreamRef,
    Trailers,
    Up,
    Upgrade,
    Ws,
)
from tether._frames import Binary, Close, Frame, Ping, Pong, Text

__all__ = ["describe", "describe_frame"]

_PREVIEW = 60


def _preview(data: bytes | str) -> str:
    text = repr(data if len(data) <= _PREVIEW else data[:_PREVIEW])
    return text if len(data) <= _PREVIEW else f"{text}... ({len(data)} bytes)"


def _streams(streams: tuple[StreamRef, ...]) -> str:
    return "[" + ", ".join(str(s.id) for s in streams) + "]"


def describe_frame(frame: Frame) -> str:
    """``Text('hi')``, ``Binary(3 bytes)``, ``Close(1000, 'bye')``..."""
    match frame:
        case Text(data=text):
            return f"Text({_preview(text)})"
        case Binary(data=data):
            return f"Binary({_preview(data)})"
        case Ping(payload=payload):
            return f"Ping({payload!r})"
        case Pong(payload=payload):
            return f"Pong({payload!r})"
        case Close(code=code, reason=reason):
            return f"Close({code}, {reason!r})"


def describe(event: Event) -> str:
    """A one-line description of an event."""
    match event:
        case Up(protocol=protocol):
            body = f"protocol={protocol}"
        case Down(protocol=p, reason=r, killed_streams=k, unprocessed_streams=u):
            body = f"protocol={p} reason={r!r} killed={_streams(k)} unprocessed={_streams(u)}"
        case Inform(stream=s, status=status):
            body = f"stream={s.id} status={status}"
        case Response(stream=s, fin=fin, status=status, headers=headers):
            body = f"stream={s.id} status={status} fin={fin} headers={len(headers)}"
        case Data(stream=s, fin=fin, data=data):
            body = f"stream={s.id} fin={fin} {_preview(data)}"
        case Trailers(stream=s, headers=headers):
            body = f"stream={s.id} " + " ".join(f"{n}={v}" for n, v in headers)
        case Upgrade(stream=s, protocols=protocols, headers=headers):
            chosen = dict(headers).get("sec-websocket-protocol", "-")
            body = f"stream={s.id} protocols={','.join(protocols)} subprotocol={chosen}"
        case Ws(stream=s, frame=frame):
            body = f"stream={s.id} {describe_frame(frame)}"
        case Error(stream=s, reason=reason):
            body = f"stream={s.id if s else '-'} reason={reason!r}"
    return f"{type(event).__name__:<9} {body}"
