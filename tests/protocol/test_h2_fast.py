"""H2Client's DATA fast paths agree with h2's own, byte for byte and window for window.

``H2Client.send_data`` and ``receive_data`` frame and read the DATA of an
open stream themselves (``tether/protocol/_h2_streams.py``) and leave the
rest to h2. Every scenario here runs twice against an h2 server in memory:
once as tether runs, once with h2's own methods in their place; what the
client tells, what the server receives and both sides' flow-control
windows must be the same. Then what only the fast path could get wrong:
a frame past the window still ends the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import h2.connection
import h2.events
import pytest
import wsproto.connection as wsc
import wsproto.events as wse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol.test_h2 import Server, up, ws_up
from tether import Http2Opts, HttpOpts, RemoteProtocolError, StreamRef, Text
from tether.protocol._h2_streams import H2Client

# What one scenario saw: the client's events, the server's h2 events, the windows.
Seen = tuple[list[Any], list[Any], tuple[int, ...]]


def _h2_receive_data(client: H2Client, data: bytes, on_data: object = None) -> list[Any]:
    """h2's own receive_data: every DATA frame an event (``on_data`` is never called)."""
    return h2.connection.H2Connection.receive_data(client, data)


def h2_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """H2Client without its fast paths: h2's own send_data and receive_data, always."""
    monkeypatch.setattr(H2Client, "send_data", h2.connection.H2Connection.send_data)
    monkeypatch.setattr(H2Client, "receive_data", _h2_receive_data)
    monkeypatch.setattr(H2Client, "frame_data", lambda *_: False)


def both(scenario: Callable[[], Seen]) -> tuple[Seen, Seen]:
    """``scenario`` as tether runs it, then with h2's own DATA paths."""
    fast = scenario()
    with pytest.MonkeyPatch.context() as patch:
        h2_only(patch)
        plain = scenario()
    return fast, plain


def windows(server: Server, stream_id: int) -> tuple[int | None, ...]:
    """Both sides' windows, each kept apart (the connection's, the stream's, each way)."""
    client: Any = server.client._h2
    stream = client.streams.get(stream_id)  # None once h2 forgot the closed stream
    return (
        server.h2.outbound_flow_control_window,
        server.h2.local_flow_control_window(stream_id),
        client.outbound_flow_control_window,
        None if stream is None else stream.outbound_flow_control_window,
        client._inbound_flow_control_window_manager.current_window_size,
        None if stream is None else stream._inbound_window_manager.current_window_size,
    )


def told(events: list[Any]) -> list[Any]:
    """The client's events without their StreamRef (each run makes its own)."""
    return [
        (type(e).__name__, *(getattr(e, f, None) for f in ("fin", "status", "data", "frame")))
        for e in events
    ]


def server_events(server: Server) -> list[Any]:
    """The server's h2 events, comparable: DATA sizes and what the windows did.

    (Not a Websocket frame's bytes: their masks are random.)
    """
    kept = (h2.events.DataReceived, h2.events.WindowUpdated, h2.events.StreamEnded)
    return [
        (type(e).__name__, e.stream_id, getattr(e, "flow_controlled_length", None),
         getattr(e, "delta", None))
        for e in server.received
        if isinstance(e, kept)
    ]  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=20_000),  # a DATA frame's size
            st.sampled_from(["plain", "padded", "last"]),
        ),
        min_size=1,
        max_size=12,
    ),
    st.lists(st.integers(min_value=1, max_value=9_000), max_size=20),
)
def test_received_data_tells_and_acknowledges_the_same(
    frames: list[tuple[int, str]], cuts: list[int]
) -> None:
    def scenario() -> Seen:
        server = up(http2_opts=Http2Opts(initial_stream_window_size=65_535))
        ref = StreamRef()
        server.client.request(ref, b"GET", b"/", [], None)
        server.to_server()
        (req,) = server.requests()
        sid = req.stream_id
        server.h2.send_headers(sid, [(b":status", b"200")])
        wire = bytearray(server.h2.data_to_send())
        for n, (wanted, kind) in enumerate(frames):
            last = kind == "last" or n == len(frames) - 1
            room = min(server.h2.local_flow_control_window(sid), 16_384)
            pad = 7 if kind == "padded" and room >= 8 else None  # 8 more bytes: 7 and their count
            size = min(wanted, room - 8 if pad is not None else room)
            server.h2.send_data(sid, bytes([n % 256]) * size, end_stream=last, pad_length=pad)
            wire += server.h2.data_to_send()
            if last:
                break
        events: list[Any] = []
        start = 0
        for cut in [*cuts, len(wire)]:
            if start < len(wire):
                server.client.receive_data(bytes(wire[start : start + cut]))
                events += server.client.events()
                start += cut
        server.to_server()
        return told(events), server_events(server), windows(server, sid)

    fast, plain = both(scenario)
    assert fast == plain


def test_websocket_messages_both_ways_are_the_same_bytes_and_windows() -> None:
    def scenario() -> Seen:
        server, ref, sid = ws_up()
        peer = wsc.Connection(wsc.ConnectionType.SERVER)  # the Websocket's server end
        events: list[Any] = []
        for n in range(300):  # past the default 65,535 window: WINDOW_UPDATEs both ways
            server.client.ws_send((Text("x" * (n % 700)),), ref)
            for event in server.to_server():
                if isinstance(event, h2.events.DataReceived):
                    peer.receive_data(event.data)
                    server.h2.acknowledge_received_data(event.flow_controlled_length, sid)
            for message in peer.events():
                assert isinstance(message, wse.TextMessage)
                server.h2.send_data(sid, peer.send(wse.TextMessage(message.data)))
            events += server.to_client()
            server.to_server()
        return told(events), server_events(server), windows(server, sid)

    fast, plain = both(scenario)
    assert fast == plain
    assert len(fast[1]) > 300


def test_data_past_the_window_still_ends_the_connection() -> None:
    # One flow credit: the client acknowledges nothing after the first DATA,
    # so four full frames are one byte past the 65,535 window.
    server = up(
        http_opts=HttpOpts(flow=1), http2_opts=Http2Opts(initial_stream_window_size=65_535)
    )
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    (req,) = server.requests()
    server.h2.send_headers(req.stream_id, [(b":status", b"200")])
    server.to_client()
    head = (16_384).to_bytes(3, "big") + b"\x00\x00" + req.stream_id.to_bytes(4, "big")
    for _ in range(3):
        server.client.receive_data(head + b"x" * 16_384)
    assert server.client.close_reason is None
    server.client.receive_data(head + b"x" * 16_384)  # framed by hand: h2 would refuse it
    assert isinstance(server.client.close_reason, RemoteProtocolError)
    server.to_server()
    assert any(isinstance(e, h2.events.ConnectionTerminated) for e in server.received)
