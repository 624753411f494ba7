"""HTTP/2 through Http2Protocol against an h2 *server* connection in memory.

No socket: the protocol layer's own test (bytes in, events out). The
server is h2 in server mode, driven by each test as the scenario needs.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
import wsproto.connection as wsc
import wsproto.events as wse
from hyperframe.frame import GoAwayFrame
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import (
    Binary,
    Close,
    ConnectionClosed,
    Data,
    Error,
    GoAway,
    Http2Opts,
    HttpOpts,
    Inform,
    NotUpgradedError,
    PingAck,
    RemoteProtocolError,
    Response,
    StreamRef,
    StreamReset,
    Text,
    Trailers,
    Upgrade,
    UpgradeError,
    Ws,
    WsOpts,
)
from tether.protocol._h2 import Http2Protocol

STREAM_WINDOW = Http2Opts().initial_stream_window_size
CONNECTION_WINDOW = Http2Opts().initial_connection_window_size

CONN = object()


class Server:
    """An h2 server connection wired to an Http2Protocol client."""

    def __init__(
        self,
        *,
        connect_protocol: bool = True,
        max_streams: int | None = None,
        http_opts: HttpOpts | None = None,
        ws_opts: WsOpts | None = None,
        window: int | None = None,
        http2_opts: Http2Opts | None = None,
    ) -> None:
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        initial: dict[Any, int] = {}
        if connect_protocol:
            initial[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        if max_streams is not None:
            initial[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = max_streams
        if window is not None:
            initial[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = window
        self.h2.local_settings = h2.settings.Settings(client=False, initial_values=initial)
        self.h2.initiate_connection()
        self.client = Http2Protocol(
            CONN,
            authority="example.test",
            scheme="https",
            http_opts=http_opts or HttpOpts(),
            ws_opts=ws_opts or WsOpts(),
            http2_opts=http2_opts,
        )
        self.received: list[Any] = []

    def to_server(self) -> list[Any]:
        """What the client sent, read by the server: the server's h2 events."""
        data = self.client.data_to_send()
        events = self.h2.receive_data(data) if data else []
        self.received += events
        return events

    def to_client(self, data: bytes | None = None) -> list[Any]:
        """What the server sent (or ``data``), read by the client: its events."""
        out = self.h2.data_to_send() if data is None else data
        if out:
            self.client.receive_data(out)
        return self.client.events()

    def exchange(self) -> list[Any]:
        """Both ways until quiet; the client's events."""
        events: list[Any] = []
        for _ in range(4):
            self.to_server()
            events += self.to_client()
        return events

    def requests(self) -> list[h2.events.RequestReceived]:
        return [e for e in self.received if isinstance(e, h2.events.RequestReceived)]

    def respond(
        self, stream_id: int, status: int = 200, body: bytes = b"", trailers: Any = None
    ) -> None:
        bare = not body and trailers is None
        self.h2.send_headers(stream_id, [(b":status", str(status).encode())], end_stream=bare)
        if body:
            self.h2.send_data(stream_id, body, end_stream=trailers is None)
        if trailers is not None:
            self.h2.send_headers(stream_id, trailers, end_stream=True)


def goaway(code: int, last: int) -> bytes:
    """A GOAWAY frame from the server (h2's server could send nothing after its own)."""
    return GoAwayFrame(0, last_stream_id=last, error_code=code).serialize()


def up(**kwargs: Any) -> Server:
    server = Server(**kwargs)
    server.exchange()  # prefaces and SETTINGS both ways
    return server


def test_a_get_is_a_stream_with_response_and_data() -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/path?q=1", [(b"accept", b"*/*")], None)
    server.to_server()
    (req,) = server.requests()
    head = dict(req.headers)
    assert head[b":method"] == b"GET"
    assert head[b":path"] == b"/path?q=1"
    assert head[b":authority"] == b"example.test"
    assert head[b":scheme"] == b"https"
    assert head[b"accept"] == b"*/*"
    server.respond(req.stream_id, body=b"hello")
    events = server.to_client()
    assert events == [
        Response(CONN, ref, False, 200, ()),  # type: ignore[arg-type]
        Data(CONN, ref, True, b"hello"),  # type: ignore[arg-type]
    ]
    assert not server.client.busy


def test_no_body_means_response_fin_and_trailers_end_the_stream() -> None:
    server = up()
    a, b = StreamRef(), StreamRef()
    server.client.request(a, b"HEAD", b"/", [], None)
    server.client.request(b, b"GET", b"/t", [], None)
    server.to_server()
    first, second = server.requests()
    server.respond(first.stream_id, status=204)
    server.respond(second.stream_id, body=b"x", trailers=[(b"grpc-status", b"0")])
    events = server.to_client()
    assert Response(CONN, a, True, 204, ()) in events  # type: ignore[arg-type]
    assert events[-1] == Trailers(CONN, b, (("grpc-status", "0"),))  # type: ignore[arg-type]


def test_informational_and_a_streamed_request_body() -> None:
    server = up()
    ref = StreamRef()
    server.client.headers(ref, b"POST", b"/up", [(b"expect", b"100-continue")])
    server.to_server()
    (req,) = server.requests()
    server.h2.send_headers(req.stream_id, [(b":status", b"100")])
    assert server.to_client() == [Inform(CONN, ref, 100, ())]  # type: ignore[arg-type]
    server.client.data(ref, False, b"abc")
    server.client.data(ref, True, b"def")
    server.to_server()
    body = b"".join(e.data for e in server.received if isinstance(e, h2.events.DataReceived))
    assert body == b"abcdef"
    assert any(isinstance(e, h2.events.StreamEnded) for e in server.received)


def test_cancel_sends_rst_stream_cancel_and_silences_the_stream() -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    (_req,) = server.requests()
    server.client.cancel(ref)
    (reset,) = [e for e in server.to_server() if isinstance(e, h2.events.StreamReset)]
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
    assert server.client.stream_state(ref) is None


def test_a_server_reset_is_an_error_for_that_stream_only() -> None:
    server = up()
    a, b = StreamRef(), StreamRef()
    server.client.request(a, b"GET", b"/a", [], None)
    server.client.request(b, b"GET", b"/b", [], None)
    server.to_server()
    first, second = server.requests()
    server.h2.reset_stream(first.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
    server.respond(second.stream_id, body=b"ok")
    events = server.to_client()
    (error,) = [e for e in events if isinstance(e, Error)]
    assert error.stream is a
    assert isinstance(error.reason, StreamReset)
    assert error.reason.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
    assert Data(CONN, b, True, b"ok") in events  # type: ignore[arg-type]
    assert server.client.close_reason is None


def test_max_concurrent_streams_queues_the_excess_in_order() -> None:
    server = up(max_streams=2)
    refs = [StreamRef() for _ in range(5)]
    for ref in refs:
        server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    assert len(server.requests()) == 2
    served = 0
    for _ in range(5):
        for req in server.requests()[served:]:
            server.respond(req.stream_id, body=b"x")
            served += 1
        server.exchange()
    assert len(server.requests()) == 5
    assert not server.client.busy


def test_goaway_lists_streams_above_last_id_as_unprocessed() -> None:
    server = up()
    refs = [StreamRef() for _ in range(3)]
    for ref in refs:
        server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    ids = [r.stream_id for r in server.requests()]
    server.to_client(goaway(h2.errors.ErrorCodes.NO_ERROR, ids[0]))
    assert server.client.close_reason is None  # the first stream may still finish
    late = StreamRef()
    server.client.request(late, b"GET", b"/", [], None)  # no new stream after a GOAWAY
    (refused,) = server.client.events()
    assert refused.stream is late
    assert server.client.lost_streams() == ((refs[0],), (refs[1], refs[2]))
    server.respond(ids[0], body=b"done")
    assert server.to_client() == [
        Response(CONN, refs[0], False, 200, ()),  # type: ignore[arg-type]
        Data(CONN, refs[0], True, b"done"),  # type: ignore[arg-type]
    ]
    assert isinstance(server.client.close_reason, GoAway)
    assert server.client.lost_streams() == ((), (refs[1], refs[2]))


def test_goaway_with_an_error_ends_at_once_killing_what_was_processed() -> None:
    server = up()
    a, b = StreamRef(), StreamRef()
    server.client.request(a, b"GET", b"/", [], None)
    server.client.request(b, b"GET", b"/", [], None)
    server.to_server()
    first, _ = server.requests()
    server.h2.close_connection(h2.errors.ErrorCodes.INTERNAL_ERROR, last_stream_id=first.stream_id)
    server.to_client()
    reason = server.client.close_reason
    assert isinstance(reason, GoAway)
    assert reason.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
    assert server.client.lost_streams() == ((a,), (b,))


def test_a_graceful_goaway_and_data_in_one_read() -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    server.respond(1, body=b"after")
    wire = goaway(h2.errors.ErrorCodes.NO_ERROR, 1) + server.h2.data_to_send()
    assert Data(CONN, ref, True, b"after") in server.to_client(wire)  # type: ignore[arg-type]
    assert isinstance(server.client.close_reason, GoAway)


def test_requests_after_goaway_fail_at_once() -> None:
    server = up()
    keep = StreamRef()
    server.client.request(keep, b"GET", b"/", [], None)
    server.to_server()
    server.to_client(goaway(h2.errors.ErrorCodes.NO_ERROR, 1))
    late = StreamRef()
    server.client.request(late, b"GET", b"/", [], None)
    (error,) = server.client.events()
    assert error.stream is late
    assert isinstance(error.reason, ConnectionClosed)


def test_ping_is_answered_by_a_ping_ack_event() -> None:
    server = up()
    ref = StreamRef()
    server.client.ping(ref)
    assert server.exchange() == [PingAck(CONN, ref)]  # type: ignore[arg-type]


def test_server_eof_closes_with_open_streams_killed() -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    server.client.receive_data(b"")
    assert isinstance(server.client.close_reason, ConnectionClosed)
    assert server.client.lost_streams() == ((ref,), ())


def test_requests_wait_for_the_servers_settings() -> None:
    server = Server()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    preface = server.client.data_to_send()
    server.h2.receive_data(preface)
    assert not any(isinstance(e, h2.events.RequestReceived) for e in server.received)
    server.exchange()
    assert len(server.requests()) == 1


# -- flow control ----------------------------------------------------------------


def test_data_is_acknowledged_as_it_is_delivered() -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    (req,) = server.requests()
    server.h2.send_headers(req.stream_id, [(b":status", b"200")])
    chunk = b"x" * 16384
    total = 0
    # Far more than the stream window: it only flows if the client gives the window back.
    for _ in range(100):  # bounded: without the window given back, nothing more flows
        if total >= 3 * STREAM_WINDOW:
            break
        while server.h2.local_flow_control_window(req.stream_id) >= len(chunk):
            server.h2.send_data(req.stream_id, chunk)
            total += len(chunk)
        server.to_client()
        server.to_server()
    assert total >= 3 * STREAM_WINDOW


@pytest.mark.parametrize("streams", [1, 20])
def test_small_frames_on_many_streams_keep_flowing(streams: int) -> None:
    # Windows go back in steps (a sixteenth of a window): whatever is held
    # back must never leave the server waiting, even with the smallest
    # connection window shared by many streams.
    server = up(
        http2_opts=Http2Opts(
            initial_stream_window_size=65_535, initial_connection_window_size=65_535
        )
    )
    refs = [StreamRef() for _ in range(streams)]
    for ref in refs:
        server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    ids = [req.stream_id for req in server.requests()]
    for sid in ids:
        server.h2.send_headers(sid, [(b":status", b"200")])
    told = 0
    for _ in range(2_000):  # bounded: a round that sends nothing means the windows stayed shut
        if told >= 3 * 65_535:
            break
        sent = 0
        for sid in ids:
            if server.h2.local_flow_control_window(sid) >= 100:
                server.h2.send_data(sid, b"x" * 100)
                sent += 100
        assert sent, "the client never gave the windows back"
        told += sum(len(e.data) for e in server.to_client() if isinstance(e, Data))
        server.to_server()
    assert told >= 3 * 65_535


def test_a_stream_without_flow_credit_keeps_its_window_shut() -> None:
    server = up(http_opts=HttpOpts(flow=1))
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    (req,) = server.requests()
    server.h2.send_headers(req.stream_id, [(b":status", b"200")])
    chunk = b"x" * 16384
    sent = 0
    for _ in range(200):
        if server.h2.local_flow_control_window(req.stream_id) < len(chunk):
            server.to_client()
            server.to_server()
            if server.h2.local_flow_control_window(req.stream_id) < len(chunk):
                break
        server.h2.send_data(req.stream_id, chunk)
        sent += len(chunk)
    # One credit: the server could send one window's worth, and no more.
    assert sent <= STREAM_WINDOW
    before = server.h2.local_flow_control_window(req.stream_id)
    server.client.update_flow(ref, 1000)
    server.to_server()
    assert server.h2.local_flow_control_window(req.stream_id) > before


def test_a_body_larger_than_the_servers_window_waits_for_it() -> None:
    server = up(window=1000)
    ref = StreamRef()
    body = b"y" * 5000
    server.client.request(ref, b"POST", b"/", [], body)
    server.to_server()
    assert server.client.held_size == 4000
    for _ in range(20):
        for e in server.received:
            if isinstance(e, h2.events.DataReceived) and e.flow_controlled_length:
                server.h2.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                e.flow_controlled_length = 0
        server.to_client()
        server.to_server()
    data = b"".join(e.data for e in server.received if isinstance(e, h2.events.DataReceived))
    assert data == body
    assert server.client.held_size == 0


# -- Websocket over HTTP/2 (RFC 8441) --------------------------------------------


def ws_up(**kwargs: Any) -> tuple[Server, StreamRef, int]:
    server = up(**kwargs)
    ref = StreamRef()
    server.client.ws_upgrade(ref, b"/chat", [(b"sec-websocket-protocol", b"chat")])
    server.to_server()
    (req,) = server.requests()
    server.h2.send_headers(
        req.stream_id, [(b":status", b"200"), (b"sec-websocket-protocol", b"chat")]
    )
    events = server.to_client()
    assert events == [
        Upgrade(CONN, ref, ("websocket",), (("sec-websocket-protocol", "chat"),))  # type: ignore[arg-type]
    ]
    return server, ref, req.stream_id


def test_ws_upgrade_is_an_extended_connect() -> None:
    server, _, _ = ws_up()
    head = dict(server.requests()[0].headers)
    assert head[b":method"] == b"CONNECT"
    assert head[b":protocol"] == b"websocket"
    assert head[b":path"] == b"/chat"
    assert head[b"sec-websocket-version"] == b"13"
    assert b"sec-websocket-key" not in head
    assert b"upgrade" not in head


def test_ws_frames_travel_as_data_of_the_stream() -> None:
    server, ref, sid = ws_up()
    peer = wsc.Connection(wsc.ConnectionType.SERVER)
    server.client.ws_send((Text("hello"),), ref)
    server.to_server()
    data = b"".join(e.data for e in server.received if isinstance(e, h2.events.DataReceived))
    peer.receive_data(data)
    assert [e.data for e in peer.events()] == ["hello"]
    server.h2.send_data(sid, peer.send(wse.BytesMessage(b"\x01\x02")))
    assert server.to_client() == [Ws(CONN, ref, Binary(b"\x01\x02"))]  # type: ignore[arg-type]
    # A request beside the Websocket, on the same connection.
    other = StreamRef()
    server.client.request(other, b"GET", b"/", [], None)
    server.to_server()
    server.respond(server.requests()[-1].stream_id, body=b"side")
    assert Data(CONN, other, True, b"side") in server.to_client()  # type: ignore[arg-type]
    # The close handshake ends the stream, not the connection.
    server.h2.send_data(sid, peer.send(wse.CloseConnection(1000, "bye")))
    events = server.to_client()
    assert Ws(CONN, ref, Close(1000, "bye")) in events  # type: ignore[arg-type]
    server.to_server()
    assert any(
        isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in server.received
    )
    assert server.client.close_reason is None


def test_ws_upgrade_without_connect_protocol_is_an_error_on_the_stream() -> None:
    server = up(connect_protocol=False)
    ref = StreamRef()
    server.client.ws_upgrade(ref, b"/", [])
    (error,) = server.client.events()
    assert error.stream is ref
    assert isinstance(error.reason, UpgradeError)
    assert "protocols=('http',)" in str(error.reason)
    assert server.client.close_reason is None


def test_a_refused_extended_connect_is_a_response() -> None:
    server = up()
    ref = StreamRef()
    server.client.ws_upgrade(ref, b"/", [])
    server.to_server()
    server.respond(server.requests()[0].stream_id, status=403, body=b"no")
    assert server.to_client() == [
        Response(CONN, ref, False, 403, ()),  # type: ignore[arg-type]
        Data(CONN, ref, True, b"no"),  # type: ignore[arg-type]
    ]


def test_ws_send_to_a_stream_that_is_no_websocket_is_an_error() -> None:
    server = up()
    ref = StreamRef()
    server.client.ws_send((Text("x"),), ref)
    (error,) = server.client.events()
    assert isinstance(error.reason, NotUpgradedError)


# -- bad input from the server ---------------------------------------------------


def test_garbage_ends_the_connection_with_an_error() -> None:
    server = up()
    # A DATA frame on stream 0 (RFC 9113 6.1): PROTOCOL_ERROR.
    server.client.receive_data(b"\x00\x00\x04\x00\x00\x00\x00\x00\x00abcd")
    events = server.client.events()
    assert isinstance(server.client.close_reason, RemoteProtocolError)
    assert any(isinstance(e, Error) and e.stream is None for e in events)
    assert server.client.data_to_send()  # the GOAWAY


def test_a_header_list_over_the_limit_ends_the_connection() -> None:
    server = up(http_opts=HttpOpts(max_header_block_size=1000))
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    # h2's server side does not check the client's MAX_HEADER_LIST_SIZE: a bomb gets through.
    server.h2.send_headers(1, [(b":status", b"200")] + [(b"x-h", b"v" * 100)] * 50)
    server.to_client()
    assert isinstance(server.client.close_reason, RemoteProtocolError)


def test_a_window_overflow_ends_the_connection() -> None:
    server = up()
    # WINDOW_UPDATE on stream 0 past 2**31-1 (RFC 9113 6.9.1): FLOW_CONTROL_ERROR.
    frame = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + (2**31 - 1).to_bytes(4, "big")
    server.client.receive_data(frame)
    assert isinstance(server.client.close_reason, RemoteProtocolError)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50))
def test_any_split_of_the_servers_bytes_gives_the_same_events(cuts: list[int]) -> None:
    server = up()
    a, b = StreamRef(), StreamRef()
    server.client.request(a, b"GET", b"/a", [], None)
    server.client.request(b, b"GET", b"/b", [], None)
    server.to_server()
    first, second = server.requests()
    server.respond(first.stream_id, body=b"first body")
    server.respond(second.stream_id, body=b"second", trailers=[(b"t", b"1")])
    wire = server.h2.data_to_send()
    events: list[Any] = []
    start = 0
    for cut in cuts:
        if start >= len(wire):
            break
        server.client.receive_data(wire[start : start + cut])
        events += server.client.events()
        start += cut
    if start < len(wire):
        server.client.receive_data(wire[start:])
        events += server.client.events()
    assert events == [
        Response(CONN, a, False, 200, ()),  # type: ignore[arg-type]
        Data(CONN, a, True, b"first body"),  # type: ignore[arg-type]
        Response(CONN, b, False, 200, ()),  # type: ignore[arg-type]
        Data(CONN, b, False, b"second"),  # type: ignore[arg-type]
        Trailers(CONN, b, (("t", "1"),)),  # type: ignore[arg-type]
    ]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=300))
def test_corrupted_bytes_never_hang_or_raise(noise: bytes, at: int) -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    server.respond(1, body=b"payload" * 10)
    wire = bytearray(server.h2.data_to_send())
    at = min(at, len(wire))
    wire[at : at + len(noise)] = noise
    server.client.receive_data(bytes(wire))
    events = server.client.events()
    # Either the response came whole, or the connection (or stream) failed: never silence
    # with the connection still claiming to be fine and the stream forgotten.
    ended = any(isinstance(e, Data) and e.fin for e in events) or any(
        isinstance(e, Error) for e in events
    )
    assert ended or server.client.close_reason is not None or server.client.busy


@pytest.mark.parametrize("code", [0, 2])
def test_goaway_reason_carries_code_and_last_stream(code: int) -> None:
    server = up()
    server.h2.close_connection(code, last_stream_id=0)
    server.to_client()
    reason = server.client.close_reason
    assert isinstance(reason, GoAway)
    assert (reason.error_code, reason.last_stream_id) == (code, 0)


def test_a_finished_close_handshake_frees_the_stream_even_if_the_server_keeps_it_open() -> None:
    server, ref, sid = ws_up()
    peer = wsc.Connection(wsc.ConnectionType.SERVER)
    server.client.ws_send((Close(1000, "done"),), ref)
    received = server.to_server()
    data = b"".join(e.data for e in received if isinstance(e, h2.events.DataReceived))
    # END_STREAM rides on the close frame: nothing may follow it.
    assert any(isinstance(e, h2.events.StreamEnded) for e in received)
    peer.receive_data(data)
    (close,) = peer.events()
    server.h2.send_data(sid, peer.send(close.response()))  # the echo, without END_STREAM
    assert server.to_client() == [Ws(CONN, ref, Close(1000, "done"))]  # type: ignore[arg-type]
    assert server.client.stream_state(ref) is None
    assert not server.client.busy
    (reset,) = [e for e in server.to_server() if isinstance(e, h2.events.StreamReset)]
    assert reset.stream_id == sid
    assert reset.error_code == h2.errors.ErrorCodes.CANCEL


def test_a_bad_frame_after_a_message_fails_the_websocket_at_once() -> None:
    # Over HTTP/1.1 a failure right after a message lingers (the owner may be
    # answering it); over HTTP/2 its close frame goes at once, ending the stream.
    server, ref, sid = ws_up()
    server.h2.send_data(sid, b"\x81\x02hi" + b"\xc1\x01x")  # a text message; RSV1 set
    events = server.to_client()
    assert events[0] == Ws(CONN, ref, Text("hi"))  # type: ignore[arg-type]
    (error,) = events[1:]
    assert isinstance(error, Error)
    assert error.stream == ref
    assert isinstance(error.reason, RemoteProtocolError)
    received = server.to_server()
    peer = wsc.Connection(wsc.ConnectionType.SERVER)
    peer.receive_data(b"".join(e.data for e in received if isinstance(e, h2.events.DataReceived)))
    (close,) = peer.events()
    assert isinstance(close, wse.CloseConnection)
    assert close.code == 1002
    assert any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in received)
    assert server.client.close_reason is None  # the connection stays, for other streams


def test_a_head_over_max_headers_fails_its_stream_only() -> None:
    server = up(http_opts=HttpOpts(max_headers=10))
    over, fine = StreamRef(), StreamRef()
    server.client.request(over, b"GET", b"/", [], None)
    server.client.request(fine, b"GET", b"/", [], None)
    server.to_server()
    first, second = server.requests()
    many = [(f"x-{n}".encode(), b"v") for n in range(11)]
    server.h2.send_headers(first.stream_id, [(b":status", b"200"), *many], end_stream=True)
    server.respond(second.stream_id, body=b"ok")
    events = server.to_client()
    (error,) = [e for e in events if isinstance(e, Error)]
    assert error.stream is over
    assert isinstance(error.reason, RemoteProtocolError)
    assert "max_headers" in str(error.reason)
    assert Data(CONN, fine, True, b"ok") in events  # type: ignore[arg-type]
    assert server.client.close_reason is None


def test_a_stream_ending_without_flow_credit_gives_the_connection_window_back() -> None:
    server = up(http_opts=HttpOpts(flow=1))
    chunk = b"z" * 16384
    for _ in range(6):  # 6 x ~1 MiB through a 4 MiB connection window
        ref = StreamRef()
        server.client.request(ref, b"GET", b"/", [], None)
        server.to_server()
        stream_id = server.requests()[-1].stream_id
        server.h2.send_headers(stream_id, [(b":status", b"200")])
        for _ in range(STREAM_WINDOW // len(chunk) - 2):
            server.h2.send_data(stream_id, chunk)
        server.h2.end_stream(stream_id)
        events = server.to_client()
        assert events[-1] == Data(CONN, ref, True, b"")  # type: ignore[arg-type]
        server.to_server()
    assert server.h2.outbound_flow_control_window >= CONNECTION_WINDOW // 2


def test_held_bytes_are_counted_until_sent_or_dropped() -> None:
    server = up(window=1000)
    sent, queued = StreamRef(), StreamRef()
    server.client.request(sent, b"POST", b"/", [], b"a" * 3000)
    assert server.client.held_size == 2000  # the server's window took 1000
    server.client.headers(queued, b"POST", b"/", [])
    server.client.data(queued, False, b"b" * 500)
    assert server.client.held_size == 2000  # the second opened too: 500 sent in its window
    server.client.cancel(sent)
    assert server.client.held_size == 0


def test_a_status_that_is_no_status_code_fails_its_stream() -> None:
    server = up()
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    # h2's server side checks nothing of its own :status: it goes out as given.
    server.h2.send_headers(1, [(b":status", b"2x0")], end_stream=True)
    (error,) = server.to_client()
    assert error.stream is ref
    assert isinstance(error.reason, RemoteProtocolError)
    assert server.client.close_reason is None


def test_connect_through_http2_is_an_error_for_its_stream() -> None:
    server = up()
    ref = StreamRef()
    assert server.client.connect(ref, "example.test:443", []) is False
    (error,) = server.client.events()
    assert error.stream is ref
    assert "protocols=('http',)" in str(error.reason)
    assert server.client.tunnel is None
    assert server.client.close_reason is None


def test_http2_opts_set_the_receive_windows() -> None:
    small = 100_000
    server = up(
        http2_opts=Http2Opts(
            initial_stream_window_size=small, initial_connection_window_size=300_000
        )
    )
    ref = StreamRef()
    server.client.request(ref, b"GET", b"/", [], None)
    server.to_server()
    assert server.h2.local_flow_control_window(1) == small
    assert server.h2.outbound_flow_control_window == 300_000


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"initial_stream_window_size": 1000}, ValueError),
        ({"initial_connection_window_size": 2**31}, ValueError),
        ({"initial_stream_window_size": 1.5}, TypeError),
    ],
)
def test_bad_http2_opts_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match="http2_opts"):
        Http2Opts(**options)
