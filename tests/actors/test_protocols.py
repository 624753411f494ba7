"""The ``protocols`` option (Gun's): validated at ``open``, and its defaults per transport."""

from __future__ import annotations

from typing import Any

import pytest

import tether


@pytest.mark.parametrize(
    ("options", "speaks"),
    [
        ({}, ("http",)),
        ({"transport": "tls"}, ("http2", "http")),
        ({"transport": "tls", "http_opts": {"version": "HTTP/1.0"}}, ("http",)),
        ({"protocols": ["http2"]}, ("http2",)),
        ({"transport": "tls", "protocols": ("http",)}, ("http",)),
    ],
)
def test_defaults_and_choices(options: dict[str, Any], speaks: tuple[str, ...]) -> None:
    assert tether.ConnectOpts.build(**options).speaks == speaks


@pytest.mark.parametrize(
    ("protocols", "error"),
    [
        ("http2", TypeError),
        (("http2", "spdy"), ValueError),
        ((), ValueError),
        (("http", "http"), ValueError),
    ],
)
def test_bad_protocols_are_refused_at_once(protocols: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="protocols"):
        tether.ConnectOpts.build(protocols=protocols)


def test_http2_and_http10_contradict() -> None:
    with pytest.raises(ValueError, match=r"HTTP/1\.0"):
        tether.ConnectOpts.build(protocols=("http2",), http_opts={"version": "HTTP/1.0"})


def test_http2_opts_take_a_dict_and_refuse_unknown_keys() -> None:
    opts = tether.ConnectOpts.build(http2_opts={"initial_stream_window_size": 262_144})
    assert opts.http2_opts == tether.Http2Opts(initial_stream_window_size=262_144)
    with pytest.raises(ValueError, match="max_frame_size"):
        tether.ConnectOpts.build(http2_opts={"max_frame_size": 1})
