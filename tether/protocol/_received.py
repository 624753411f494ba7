"""The events of what the server sent, built without their frozen ``__init__``.

Every Websocket message received makes a frame and a ``Ws`` event, every
response a ``Response`` and a ``Data`` event: frozen dataclasses, whose
``__init__`` sets each field through ``object.__setattr__``. Made with
``object.__new__`` and each slot's own setter instead, a five-field event
takes 4.5k instructions instead of 8.7k, and a received message's frame
and event 7k of a small round trip's instructions less
(``docs/performance.md``). The objects are the same: same class, same
fields, still frozen, equal to and hashing like those built the usual
way. Only for classes whose ``__init__`` checks nothing: the events have
no ``__post_init__``, and the checks of ``Text``'s and ``Binary``'s hold
for what a received message is (``str`` or ``bytes``).
"""

from __future__ import annotations

from typing import Any

from tether._events import Data, Headers, Response, StreamRef, Ws
from tether._frames import Binary, Frame, Text

__all__ = ["data", "response", "ws_message"]

_new = object.__new__


def _setters(cls: type, *fields: str) -> list[Any]:
    return [cls.__dict__[name].__set__ for name in fields]


_SET_TEXT, _SET_BINARY = Text.__dict__["data"].__set__, Binary.__dict__["data"].__set__
_SET_WS = _setters(Ws, "conn", "stream", "frame")
_SET_RESPONSE = _setters(Response, "conn", "stream", "fin", "status", "headers")
_SET_DATA = _setters(Data, "conn", "stream", "fin", "data")


def ws_message(conn: Any, stream: StreamRef, payload: str | bytes) -> Ws:
    """The ``Ws`` event of a whole message: ``Text`` for ``str``, else ``Binary`` (``bytes``)."""
    frame: Frame
    if type(payload) is str:
        frame = _new(Text)
        _SET_TEXT(frame, payload)
    else:
        frame = _new(Binary)
        _SET_BINARY(frame, payload)
    event: Ws = _new(Ws)
    conn_, stream_, frame_ = _SET_WS
    conn_(event, conn)
    stream_(event, stream)
    frame_(event, frame)
    return event


def response(conn: Any, stream: StreamRef, fin: bool, status: int, headers: Headers) -> Response:
    """``Response(conn, stream, fin, status, headers)``."""
    event: Response = _new(Response)
    conn_, stream_, fin_, status_, headers_ = _SET_RESPONSE
    conn_(event, conn)
    stream_(event, stream)
    fin_(event, fin)
    status_(event, status)
    headers_(event, headers)
    return event


def data(conn: Any, stream: StreamRef, fin: bool, payload: bytes) -> Data:
    """``Data(conn, stream, fin, payload)``."""
    event: Data = _new(Data)
    conn_, stream_, fin_, data_ = _SET_DATA
    conn_(event, conn)
    stream_(event, stream)
    fin_(event, fin)
    data_(event, payload)
    return event
