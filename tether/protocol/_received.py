"""The events of what the server sent, built without their frozen ``__init__``.

Every Websocket message received makes a frame and a ``Ws`` event, every
response a ``Response`` and a ``Data`` event: frozen dataclasses, whose
``__init__`` sets each field through ``object.__setattr__``. They are made
with ``object.__new__`` and each slot's own setter instead (hot-path
ledger: ``object.__new__`` events). The objects are the same: same class, same
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


# Each slot's setter, looked up once (a module global is one load per call).
_SET_TEXT = Text.__dict__["data"].__set__
_SET_BINARY = Binary.__dict__["data"].__set__
_SET_WS_CONN = Ws.__dict__["conn"].__set__
_SET_WS_STREAM = Ws.__dict__["stream"].__set__
_SET_WS_FRAME = Ws.__dict__["frame"].__set__
_SET_RESPONSE_CONN = Response.__dict__["conn"].__set__
_SET_RESPONSE_STREAM = Response.__dict__["stream"].__set__
_SET_RESPONSE_FIN = Response.__dict__["fin"].__set__
_SET_RESPONSE_STATUS = Response.__dict__["status"].__set__
_SET_RESPONSE_HEADERS = Response.__dict__["headers"].__set__
_SET_DATA_CONN = Data.__dict__["conn"].__set__
_SET_DATA_STREAM = Data.__dict__["stream"].__set__
_SET_DATA_FIN = Data.__dict__["fin"].__set__
_SET_DATA_DATA = Data.__dict__["data"].__set__


def ws_message(conn: Any, stream: StreamRef, payload: str | bytes) -> Ws:
    """The ``Ws`` event of a whole message: ``Text`` for ``str``, else ``Binary`` (``bytes``)."""
    frame: Frame
    if isinstance(payload, str):
        frame = _new(Text)
        _SET_TEXT(frame, payload)
    else:
        frame = _new(Binary)
        _SET_BINARY(frame, payload)
    event: Ws = _new(Ws)
    _SET_WS_CONN(event, conn)
    _SET_WS_STREAM(event, stream)
    _SET_WS_FRAME(event, frame)
    return event


def response(conn: Any, stream: StreamRef, fin: bool, status: int, headers: Headers) -> Response:
    """``Response(conn, stream, fin, status, headers)``."""
    event: Response = _new(Response)
    _SET_RESPONSE_CONN(event, conn)
    _SET_RESPONSE_STREAM(event, stream)
    _SET_RESPONSE_FIN(event, fin)
    _SET_RESPONSE_STATUS(event, status)
    _SET_RESPONSE_HEADERS(event, headers)
    return event


def data(conn: Any, stream: StreamRef, fin: bool, payload: bytes) -> Data:
    """``Data(conn, stream, fin, payload)``."""
    event: Data = _new(Data)
    _SET_DATA_CONN(event, conn)
    _SET_DATA_STREAM(event, stream)
    _SET_DATA_FIN(event, fin)
    _SET_DATA_DATA(event, payload)
    return event
