"""The public names of the contract (API.md) exist, are documented and behave as promised."""

from __future__ import annotations

import dataclasses
import inspect
import re

import pytest

import tether
from tether import _errors

CONTRACT = [
    # functions and classes of API.md
    "open", "open_unix", "Connection", "ConnectionInfo", "Inbox", "StreamRef",
    "Up", "Down", "Inform", "Response", "Data", "Trailers", "Upgrade", "Ws", "TunnelUp", "Error",
    "Text", "Binary", "Ping", "Pong", "Close",
    "ConnectOpts", "HttpOpts", "WsOpts", "ExponentialBackoff",
    "Supervisor", "ChildSpec", "ChildInfo",
    "TetherError", "CallError", "ReportedError", "OwnerError", "UpgradedError",
    "RetriesExhausted",
]  # fmt: skip

EVENTS = [tether.Up, tether.Down, tether.Inform, tether.Response, tether.Data,
          tether.Trailers, tether.Upgrade, tether.Ws, tether.TunnelUp, tether.Error]  # fmt: skip
FRAMES = [tether.Text, tether.Binary, tether.Ping, tether.Pong, tether.Close]


@pytest.mark.parametrize("name", CONTRACT)
def test_contract_name_is_exported_and_documented(name: str) -> None:
    assert name in tether.__all__
    obj = getattr(tether, name)
    assert inspect.getdoc(obj), f"tether.{name} has no docstring"


def test_every_name_is_re_exported_explicitly() -> None:
    # "import X as X": an explicit re-export for type checkers (mypy --strict, pyright).
    source = inspect.getsource(tether)
    missing = [n for n in tether.__all__ if f" import {n} as {n}\n" not in source]
    assert not missing


def test_the_option_types_are_exported_alike() -> None:
    for name in ("ConnectOpts", "HttpOpts", "WsOpts"):
        assert name in tether.__all__
        cls = getattr(tether, name)
        assert cls.__module__ == "tether._options"
        assert dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    opts = tether.ConnectOpts.build(retry=0, http_opts={"flow": 2}, ws_opts={"compress": True})
    assert isinstance(opts, tether.ConnectOpts)
    assert opts.http_opts == tether.HttpOpts(flow=2)
    assert opts.ws_opts == tether.WsOpts(compress=True)


def test_all_lists_only_real_names() -> None:
    assert len(set(tether.__all__)) == len(tether.__all__)
    for name in tether.__all__:
        assert hasattr(tether, name), name


@pytest.mark.parametrize("cls", EVENTS + FRAMES, ids=lambda c: c.__name__)
def test_events_and_frames_are_frozen_slotted_dataclasses(cls: type) -> None:
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__slots__" in cls.__dict__
    assert cls.__match_args__ == tuple(f.name for f in dataclasses.fields(cls))


def test_event_fields_follow_gun_messages() -> None:
    fields = {cls.__name__: cls.__match_args__ for cls in EVENTS}
    assert fields == {
        "Up": ("conn", "protocol"),
        "Down": ("conn", "protocol", "reason", "killed_streams", "unprocessed_streams"),
        "Inform": ("conn", "stream", "status", "headers"),
        "Response": ("conn", "stream", "fin", "status", "headers"),
        "Data": ("conn", "stream", "fin", "data"),
        "Trailers": ("conn", "stream", "headers"),
        "Upgrade": ("conn", "stream", "protocols", "headers"),
        "Ws": ("conn", "stream", "frame"),
        "TunnelUp": ("conn", "stream", "protocol"),
        "Error": ("conn", "stream", "reason"),
    }


def test_frame_defaults_match_the_contract() -> None:
    assert tether.Close() == tether.Close(1000, "")
    assert tether.Ping().payload == b""
    assert tether.Pong().payload == b""


def test_errors_form_one_tree() -> None:
    errors = [getattr(tether, n) for n in tether.__all__ if n.endswith(("Error", "Timeout"))]
    for err in errors:
        if inspect.isclass(err) and issubclass(err, BaseException):
            assert issubclass(err, tether.TetherError), err
    assert issubclass(tether.ReceiveTimeout, TimeoutError)
    assert issubclass(tether.InvalidRequestError, ValueError)


def documented_tree() -> dict[str, tuple[set[str], set[str]]]:
    """The error tree of ``tether._errors``' docstring (rendered in the reference).

    For each class: the tether classes above it in the tree, plus ``ReportedError``
    if it is marked "+ Reported"; and the built-in bases of its "(also ...)".
    """
    doc = inspect.getdoc(_errors)
    assert doc is not None
    block = doc.split("```text\n", 1)[1].split("```", 1)[0]
    tree: dict[str, tuple[set[str], set[str]]] = {}
    path: list[str] = []
    for line in block.splitlines():
        found = re.fullmatch(r"(?P<indent>[│├└─ ]*)(?P<name>\w+)(?P<rest>.*)", line)
        assert found, line
        depth = len(found["indent"]) // 4
        path[depth:] = [found["name"]]
        rest = found["rest"]
        bases = set(path[:-1]) | ({"ReportedError"} if "+ Reported" in rest else set())
        also = re.match(r"\s*\(also (\w+)", rest)
        tree[found["name"]] = (bases, {also[1]} if also else set())
    return tree


TREE = documented_tree()
ERRORS = sorted(
    name
    for name in tether.__all__
    if inspect.isclass(getattr(tether, name)) and issubclass(getattr(tether, name), Exception)
)


def test_the_documented_tree_names_every_exported_error() -> None:
    assert sorted(TREE) == ERRORS
    # The parse itself: the two that are raised and reported, a nested one.
    assert TREE["NotUpgradedError"] == ({"TetherError", "CallError", "ReportedError"}, set())
    assert TREE["InvalidRequestError"] == (
        {"TetherError", "CallError", "ReportedError"},
        {"ValueError"},
    )
    assert TREE["UpgradeError"] == ({"TetherError", "ReportedError", "ProtocolError"}, set())


@pytest.mark.parametrize("name", ERRORS)
def test_each_error_has_exactly_the_documented_bases(name: str) -> None:
    cls = getattr(tether, name)
    tether_bases, builtin_bases = TREE[name]
    for base in ("TetherError", "CallError", "ReportedError"):
        assert issubclass(cls, getattr(tether, base)) == (base in tether_bases or name == base)
    for builtin in (TimeoutError, ValueError, TypeError, OSError):
        expected = builtin.__name__ in builtin_bases or (
            builtin is OSError and "TimeoutError" in builtin_bases
        )
        assert issubclass(cls, builtin) == expected, builtin
    if name not in ("TetherError", "CallError", "ReportedError", "ProtocolError"):
        # Concrete: raised or reported, at least one.
        assert issubclass(cls, (tether.CallError, tether.ReportedError))
