"""Errors, events, frames and StreamRefs survive pickle (an owner in another process).

Every class is found by introspection, so a new error or event is covered
(and a new constructor parameter needs a sample below, or the test says so).
"""

from __future__ import annotations

import dataclasses
import inspect
import pickle
import subprocess
import sys
import typing
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tether
from tether import _errors, _events, _frames

pytestmark = pytest.mark.usefixtures("thread_baseline")


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


ERRORS = sorted(
    {c for c in _subclasses(tether.TetherError) if c.__module__ == _errors.__name__}
    | {tether.TetherError},
    key=lambda c: c.__name__,
)

# A sample value per constructor parameter name (keyword-only ones too).
ERROR_SAMPLES: dict[str, Any] = {
    "message": "something went wrong",
    "frames": (tether.Text("a"), tether.Binary(b"b")),
    "close_code": 1002,
    "proxy": "http://proxy.example:3128",
    "status": 407,
    "reply": 5,
    "headers": ((b"proxy-authenticate", b"Basic"),),
    "code": 1001,
    "reason": "going away",
    "by_server": True,
    "attempts": 3,
    "last_reason": ConnectionRefusedError(111, "Connection refused"),
    "exception": RuntimeError("boom"),
    "gave_up": True,
    "max_restarts": 3,
    "period": 5.0,
    "timeout": 2.5,
}


def _sample_error(cls: type[BaseException]) -> BaseException:
    params = inspect.signature(cls.__init__).parameters
    if list(params) == ["self", "args", "kwargs"]:  # Exception's own
        return cls("something went wrong")
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, param in list(params.items())[1:]:
        assert name in ERROR_SAMPLES, f"{cls.__name__}({name}=...): add a sample to ERROR_SAMPLES"
        if param.kind is param.KEYWORD_ONLY:
            kwargs[name] = ERROR_SAMPLES[name]
        else:
            args.append(ERROR_SAMPLES[name])
    return cls(*args, **kwargs)


def _round_trip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))


def test_every_error_class_is_covered():
    names = {c.__name__ for c in ERRORS}
    assert {"WsClosed", "RetriesExhausted", "SupervisorGaveUp", "Crashed", "ProxyError"} <= names
    assert set(_errors.__all__) <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_errors_round_trip_with_type_message_args_and_attributes(cls: type[BaseException]):
    error = _sample_error(cls)
    copy = _round_trip(error)
    assert type(copy) is cls
    assert str(copy) == str(error)  # Crashed's message is not doubled
    assert copy.args == error.args
    assert copy.__dict__.keys() == error.__dict__.keys()
    for name, value in error.__dict__.items():
        copied = getattr(copy, name)
        if isinstance(value, BaseException):
            assert type(copied) is type(value)
            assert copied.args == value.args
        else:
            assert copied == value
    assert copy == error
    assert hash(copy) == hash(error)


def test_errors_compare_as_values_not_as_the_same_message():
    assert tether.WsClosed(1000, "bye", by_server=True) != tether.WsClosed(
        1000, "bye", by_server=False
    )
    first = tether.RetriesExhausted(2, ConnectionRefusedError(111, "refused"))
    other = tether.RetriesExhausted(2, ConnectionResetError(104, "reset"))
    assert first != other
    assert first == _round_trip(first)


FRAMES = [
    tether.Text("héllo"),
    tether.Binary(b"\x00\x01"),
    tether.Ping(b"p"),
    tether.Pong(),
    tether.Close(1001, "bye"),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_frames_round_trip(frame: tether.Frame):
    copy = _round_trip(frame)
    assert type(copy) is type(frame)
    assert copy == frame


def test_every_frame_class_is_covered():
    assert {type(f).__name__ for f in FRAMES} == set(_frames.__all__) - {"Frame", "coerce_frames"}


def _event_classes() -> list[type]:
    """The members of ``tether.Event``, and every dataclass with a ``conn`` in ``_events``."""
    found = set(typing.get_args(tether.Event))
    for name in _events.__all__:
        obj = getattr(_events, name)
        is_event = dataclasses.is_dataclass(obj) and isinstance(obj, type)
        if is_event and "conn" in {f.name for f in dataclasses.fields(obj)}:
            found.add(obj)
    return sorted(found, key=lambda c: c.__name__)


EVENTS = _event_classes()


def test_every_event_class_is_covered():
    names = {c.__name__ for c in EVENTS}
    assert {
        "Up",
        "Down",
        "Inform",
        "Response",
        "Data",
        "Trailers",
        "Upgrade",
        "Ws",
        "Error",
    } <= names


def _event_samples(conn: tether.Connection, stream: tether.StreamRef) -> dict[str, Any]:
    return {
        "conn": conn,
        "stream": stream,
        "protocol": "http",
        "reason": ConnectionResetError(104, "Connection reset by peer"),
        "killed_streams": (stream,),
        "unprocessed_streams": (tether.StreamRef(),),
        "status": 200,
        "fin": True,
        "headers": (("content-type", "text/plain"),),
        "data": b"body",
        "protocols": ("websocket",),
        "frame": tether.Text("hi"),
    }


def _sample_event(cls: type, samples: dict[str, Any]) -> Any:
    fields = [f.name for f in dataclasses.fields(cls)]
    missing = [name for name in fields if name not in samples]
    assert not missing, f"{cls.__name__}: add samples for {missing}"
    return cls(**{name: samples[name] for name in fields})


@pytest.fixture
def conn(connect: Callable[..., tether.Connection]) -> tether.Connection:
    conn = connect(retry=0)
    conn.await_up()
    return conn


@pytest.mark.parametrize("cls", EVENTS, ids=lambda c: c.__name__)
def test_events_round_trip_in_process_to_the_live_connection_and_stream(
    cls: type, conn: tether.Connection
):
    stream = conn.get("/")
    event = _sample_event(cls, _event_samples(conn, stream))
    copy = _round_trip(event)
    assert copy == event
    assert hash(copy) == hash(event)
    assert copy.conn is conn  # the live handle again, not a stand-in
    if hasattr(event, "stream"):
        assert copy.stream is stream


# The other process: unpickles what it is given, checks what it can see there,
# and pickles it back with what it saw.
_CHILD = """
import pickle, sys
import tether
event = pickle.load(sys.stdin.buffer)
again = pickle.loads(pickle.dumps(event))
seen = {
    "conn": type(event.conn).__name__,
    "equal": again == event,
    "stream_interned": getattr(again, "stream", None) is getattr(event, "stream", None),
}
sys.stdout.buffer.write(pickle.dumps((event, seen)))
"""


def _through_another_process(value: Any) -> Any:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=pickle.dumps(value),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    return pickle.loads(done.stdout)


@pytest.mark.parametrize("cls", [tether.Error, tether.Data, tether.Down], ids=lambda c: c.__name__)
def test_events_cross_a_process_and_come_back_as_themselves(cls: type, conn: tether.Connection):
    stream = conn.get("/")
    samples = _event_samples(conn, stream)
    samples["reason"] = tether.RetriesExhausted(2, ConnectionRefusedError(111, "refused"))
    event = _sample_event(cls, samples)
    back, seen = _through_another_process(event)
    # There: the connection is a name (a ConnectionRef), copies are equal,
    # and a stream unpickled twice is one object.
    assert seen == {"conn": "ConnectionRef", "equal": True, "stream_interned": True}
    # Back here: the live connection and the very StreamRef.
    assert back == event
    assert back.conn is conn
    assert getattr(back, "stream", stream) is stream


def test_a_stream_ref_is_itself_after_a_round_trip():
    stream = tether.StreamRef()
    assert _round_trip(stream) is stream
    assert _round_trip([stream, stream]) == [stream, stream]
    assert _round_trip(stream) != tether.StreamRef()


def test_a_connection_pickles_as_its_wire_stand_in(conn: tether.Connection):
    ref = conn.wire
    assert isinstance(ref, tether.ConnectionRef)
    assert conn.wire is ref  # one identity per handle
    assert _round_trip(conn) is conn
    assert _round_trip(ref) is conn  # a ConnectionRef resolves here
    conn.set_wire(("fleet", "key-1"))
    copy = _round_trip(tether.Up(conn, "http"))
    assert copy.conn == ("fleet", "key-1")  # what a fleet would route with


def test_set_wire_refuses_what_cannot_be_pickled(conn: tether.Connection):
    with pytest.raises(TypeError, match="cannot be pickled"):
        conn.set_wire(lambda: None)
    with pytest.raises(TypeError):
        conn.set_wire(None)


class _Picky(Exception):
    """An exception whose __init__ takes other parameters than its args: it fails to load."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def test_an_error_carried_that_would_not_load_travels_as_a_runtime_error():
    crashed = tether.Crashed(_Picky(1, 2))
    copy = _round_trip(crashed)
    assert str(copy) == str(crashed)
    assert type(copy.exception) is RuntimeError
    assert str(copy.exception) == f"{__name__}._Picky: 1/2"
    assert crashed.exception.args == ("1/2",)  # the original keeps its own
