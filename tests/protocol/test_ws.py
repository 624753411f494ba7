"""Websocket through ClientProtocol: the handshake, frames both ways, closing, failures."""

from __future__ import annotations

import base64

import pytest
import wsproto.events as wse
from wsproto.extensions import PerMessageDeflate
from wsproto.utilities import generate_accept_token

from tether import (
    Binary,
    Close,
    ConnectionClosed,
    Data,
    Error,
    HttpOpts,
    NotUpgradedError,
    Ping,
    Pong,
    RemoteProtocolError,
    Response,
    StreamRef,
    Text,
    Upgrade,
    UpgradedError,
    UpgradeError,
    Ws,
    WsClosed,
    WsOpts,
)
from tether.testing import ProtocolPair


def upgraded(opts: WsOpts | None = None) -> tuple[ProtocolPair, StreamRef]:
    """A pair whose upgrade succeeded; the ``Upgrade`` event has been checked and taken."""
    pair = ProtocolPair()
    stream = pair.upgrade(opts=opts)
    [event] = pair.events()
    assert type(event) is Upgrade
    assert event.stream is stream
    return pair, stream


def ws(pair: ProtocolPair, stream: StreamRef, frame) -> Ws:
    return Ws(pair.conn, stream, frame)


def sent_upgrade(headers=(), opts: WsOpts | None = None) -> tuple[ProtocolPair, StreamRef]:
    """A pair whose upgrade request the server has read (not answered yet)."""
    pair = ProtocolPair()
    stream = pair.ws_upgrade(b"/chat", headers, opts)
    pair.client_to_server()
    return pair, stream


def request_header(pair: ProtocolPair, name: bytes) -> list[bytes]:
    return [v for n, v in pair.requests[-1].headers if n == name]


def close_on_wire(pair: ProtocolPair) -> wse.CloseConnection:
    """The one close frame the client wrote since the last check."""
    [close] = pair.ws_client_to_server()
    assert isinstance(close, wse.CloseConnection)
    return close


def assert_failed_with(pair: ProtocolPair, stream: StreamRef, close_code: int) -> None:
    """The Websocket failed: one Error with ``close_code``, that close frame sent, TCP to close."""
    reason = pair.single_error(stream)
    assert type(reason) is RemoteProtocolError
    assert reason.close_code == close_code
    assert close_on_wire(pair).code == close_code
    assert pair.client.close_reason is reason


# -- the handshake -----------------------------------------------------------------


def test_upgrade_request_has_the_handshake_headers_and_the_user_ones():
    pair, _ = sent_upgrade([(b"sec-websocket-protocol", b"mychat"), (b"origin", b"o.test")])
    request = pair.requests[-1]
    assert (request.method, request.target) == (b"GET", b"/chat")
    for name, value in [
        (b"host", b"example.test"),
        (b"connection", b"upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-protocol", b"mychat"),
        (b"origin", b"o.test"),
    ]:
        assert request_header(pair, name) == [value]
    [key] = request_header(pair, b"sec-websocket-key")
    assert len(base64.b64decode(key, validate=True)) == 16
    assert request_header(pair, b"sec-websocket-extensions") == []


def test_ws_opts_protocols_are_offered():
    pair, _ = sent_upgrade(opts=WsOpts(protocols=("v2.chat", "v1.chat")))
    assert request_header(pair, b"sec-websocket-protocol") == [b"v2.chat, v1.chat"]


def test_upgrade_opts_win_over_the_connection_defaults():
    pair = ProtocolPair(ws_opts=WsOpts(protocols=("default",), compress=True))
    pair.ws_upgrade(opts=WsOpts(protocols=("chosen",)))
    pair.client_to_server()
    assert request_header(pair, b"sec-websocket-protocol") == [b"chosen"]
    assert request_header(pair, b"sec-websocket-extensions") == []


def test_101_gives_upgrade_and_the_connection_speaks_ws():
    pair, stream = sent_upgrade()
    pair.accept_upgrade()
    [event] = pair.events()
    assert event == Upgrade(pair.conn, stream, ("websocket",), event.headers)
    assert dict(event.headers)["upgrade"] == "websocket"
    assert "sec-websocket-accept" in dict(event.headers)
    assert (pair.client.protocol, pair.client.ws_stream) == ("ws", stream)
    assert pair.client.close_reason is None
    assert pair.client.lost_streams() == ((stream,), ())


def test_frames_in_the_same_read_as_the_101_follow_the_upgrade():
    pair, stream = sent_upgrade()
    pair.accept_upgrade(then=[wse.TextMessage("first"), wse.BytesMessage(b"\x00second")])
    events = pair.events()
    assert type(events[0]) is Upgrade
    assert events[1:] == [ws(pair, stream, Text("first")), ws(pair, stream, Binary(b"\x00second"))]


def test_chosen_subprotocol_that_was_offered_is_accepted():
    pair, _ = sent_upgrade([(b"sec-websocket-protocol", b"mychat, other")])
    pair.accept_upgrade(subprotocol="other")
    [event] = pair.events()
    assert type(event) is Upgrade
    assert dict(event.headers)["sec-websocket-protocol"] == "other"


def test_refused_upgrade_is_a_response_and_the_connection_stays_http():
    pair, stream = sent_upgrade()
    pair.server_send_bytes(pair.respond(403, b"go away"))
    assert pair.events() == [
        Response(pair.conn, stream, False, 403, (("content-length", "7"),)),
        Data(pair.conn, stream, True, b"go away"),
    ]
    assert (pair.client.protocol, pair.client.close_reason) == ("http", None)
    after = pair.request(b"GET", b"/again")
    pair.client_to_server()
    assert pair.wire.startswith(b"GET /again HTTP/1.1\r\n")
    pair.server_send_bytes(pair.respond(204))
    assert pair.events() == [Response(pair.conn, after, True, 204, (("content-length", "0"),))]


def assert_botched(pair: ProtocolPair, stream: StreamRef) -> None:
    reason = pair.single_error(stream)
    assert type(reason) is UpgradeError
    assert pair.client.close_reason is reason
    assert pair.client.protocol == "http"
    pair.server_send_bytes(b"\x81\x02hi")
    pair.server_close()
    assert pair.events() == []  # reported once, then the connection is over


def test_wrong_accept_token_is_an_upgrade_error():
    pair, stream = sent_upgrade()
    pair.server_send_bytes(pair.upgrade_response(accept=b"dGhlIHNhbXBsZSBub25jZQ=="))
    assert_botched(pair, stream)


def test_subprotocol_that_was_not_offered_is_an_upgrade_error():
    pair, stream = sent_upgrade([(b"sec-websocket-protocol", b"mychat")])
    pair.server_send_bytes(pair.upgrade_response(subprotocol="evil"))
    assert_botched(pair, stream)


def test_extension_that_was_not_offered_is_an_upgrade_error():
    pair, stream = sent_upgrade()
    raw = pair.upgrade_response(extra_headers=[(b"sec-websocket-extensions", b"x-custom")])
    pair.server_send_bytes(raw)
    assert_botched(pair, stream)


@pytest.mark.parametrize(
    "header",
    [
        (b"connection", b"upgrade, caf\xe9"),  # obs-text: h11 lets it through
        (b"sec-websocket-extensions", b"permessage-deflate; server_max_window_bits=abc"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits"),
        (b"sec-websocket-extensions", b"permessage-deflate; server_max_window_bits=99"),
        (b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits=8"),
    ],
)
def test_malformed_handshake_header_is_an_upgrade_error_not_a_crash(header):
    pair, stream = sent_upgrade(opts=WsOpts(compress=True))
    pair.server_send_bytes(pair.upgrade_response(extra_headers=[header]))
    assert_botched(pair, stream)


def test_upgrade_on_http10_fails_at_once_with_nothing_on_the_wire():
    pair = ProtocolPair(http_opts=HttpOpts(version="HTTP/1.0"))
    stream = pair.ws_upgrade()
    assert type(pair.single_error(stream)) is UpgradeError
    assert pair.client.data_to_send() == b""
    assert not pair.client.busy


def test_requests_queued_behind_an_upgrade_fail_after_the_upgrade():
    pair = ProtocolPair()
    stream = pair.ws_upgrade()
    queued = [pair.request(b"GET", b"/a"), pair.request(b"POST", b"/b", [], b"x")]
    pair.client_to_server()
    pair.accept_upgrade(then=[wse.TextMessage("hi")])
    events = pair.events()
    assert [type(e) for e in events] == [Upgrade, Error, Error, Ws]
    for event, expected in zip(events[1:3], queued, strict=True):
        assert (event.stream, type(event.reason)) == (expected, UpgradedError)
    assert events[3] == ws(pair, stream, Text("hi"))
    assert pair.client.lost_streams() == ((stream,), ())


@pytest.mark.parametrize("call", ["request", "headers", "data", "ws_upgrade"])
def test_http_calls_after_the_upgrade_are_upgraded_errors(call):
    pair, _ = upgraded()
    stream = StreamRef()
    match call:
        case "request":
            pair.client.request(stream, b"GET", b"/", [], None)
        case "headers":
            pair.client.headers(stream, b"POST", b"/", [])
        case "data":
            pair.client.data(stream, True, b"x")
        case "ws_upgrade":
            pair.client.ws_upgrade(stream, b"/ws", [])
    assert type(pair.single_error(stream)) is UpgradedError
    assert pair.ws_client_to_server() == []


# -- frames ---------------------------------------------------------------------------


def test_client_frames_arrive_masked_and_intact():
    pair, _ = upgraded()
    pair.client.ws_send((Text("héllo"),))
    assert pair.client.data_to_send()[1] & 0x80  # the MASK bit
    pair.client.ws_send((Text("héllo"), Binary(b"\x00\xff")))
    assert pair.ws_client_to_server() == [wse.TextMessage("héllo"), wse.BytesMessage(b"\x00\xff")]


def test_a_list_of_frames_goes_out_in_order():
    pair, _ = upgraded()
    pair.client.ws_send((Text("1"), Ping(b"p"), Binary(b"2"), Pong(b"q"), Text("3")))
    assert pair.ws_client_to_server() == [
        wse.TextMessage("1"),
        wse.Ping(b"p"),
        wse.BytesMessage(b"2"),
        wse.Pong(b"q"),
        wse.TextMessage("3"),
    ]


def test_server_text_and_binary_messages_reach_the_owner():
    pair, stream = upgraded()
    pair.ws_server_send(wse.TextMessage("ünïcode"), wse.BytesMessage(b"\x01\x02"))
    assert pair.events() == [
        ws(pair, stream, Text("ünïcode")),
        ws(pair, stream, Binary(b"\x01\x02")),
    ]


def test_received_frames_and_events_are_the_frozen_hashable_values_users_build():
    # Whole, fragmented, text and binary: what arrives equals, hashes like
    # and is as immutable as the same values built with the public classes.
    pair, stream = upgraded()
    pair.ws_server_send(
        wse.TextMessage("t"),
        wse.BytesMessage(b"b"),
        wse.TextMessage("fr", message_finished=False),
        wse.TextMessage("ag", message_finished=True),
        wse.BytesMessage(b"fr", message_finished=False),
        wse.BytesMessage(b"ag", message_finished=True),
    )
    expected = [Text("t"), Binary(b"b"), Text("frag"), Binary(b"frag")]
    events = pair.events()
    assert events == [ws(pair, stream, frame) for frame in expected]
    for event, frame in zip(events, expected, strict=True):
        assert type(event) is Ws
        assert type(event.frame) is type(frame)
        assert type(event.frame.data) is type(frame.data)
        assert hash(event.frame) == hash(frame)
        with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
            event.frame.data = frame.data  # type: ignore[misc]
        with pytest.raises(AttributeError):
            event.stream = stream  # type: ignore[misc]


def test_fragmented_messages_arrive_whole():
    pair, stream = upgraded()
    pair.ws_server_send(
        wse.TextMessage("hel", message_finished=False),
        wse.Ping(b"between"),
        wse.TextMessage("lo", message_finished=True),
    )
    assert pair.events() == [ws(pair, stream, Text("hello"))]
    pair.ws_server_send(wse.BytesMessage(b"ab", message_finished=False))
    assert pair.events() == []
    pair.ws_server_send(wse.BytesMessage(b"cd"))
    assert pair.events() == [ws(pair, stream, Binary(b"abcd"))]


def test_message_of_exactly_max_message_size_is_delivered():
    pair, stream = upgraded(WsOpts(max_message_size=10))
    pair.ws_server_send(wse.BytesMessage(b"x" * 10))
    assert pair.events() == [ws(pair, stream, Binary(b"x" * 10))]


@pytest.mark.parametrize("pieces", [[b"y" * 11], [b"y" * 6, b"y" * 5]])
def test_message_over_max_message_size_fails_with_1009(pieces):
    pair, stream = upgraded(WsOpts(max_message_size=10))
    *first, last = pieces
    pair.ws_server_send(
        *(wse.BytesMessage(p, message_finished=False) for p in first), wse.BytesMessage(last)
    )
    assert_failed_with(pair, stream, 1009)
    pair.server_send_bytes(b"\x81\x07ignored")  # a text frame the server sent anyway
    assert pair.events() == []


def test_ping_is_answered_and_silenced_by_default():
    pair, _ = upgraded()
    pair.ws_server_send(wse.Ping(b"are you there"))
    assert pair.events() == []
    assert pair.ws_client_to_server() == [wse.Pong(b"are you there")]


def test_pings_and_pongs_are_delivered_when_not_silenced():
    pair, stream = upgraded(WsOpts(silence_pings=False))
    pair.ws_server_send(wse.Ping(b"p1"), wse.Pong(b"p2"))
    assert pair.events() == [ws(pair, stream, Ping(b"p1")), ws(pair, stream, Pong(b"p2"))]
    assert pair.ws_client_to_server() == [wse.Pong(b"p1")]
    assert pair.client.ws is not None
    assert pair.client.ws.pongs_received == 1


def test_ws_send_on_http_is_not_upgraded_error_naming_the_frames():
    pair = ProtocolPair()
    frames = (Text("a"), Binary(b"b"))
    pair.client.ws_send(frames)
    reason = pair.single_error(None)
    assert type(reason) is NotUpgradedError
    assert reason.frames == frames
    assert pair.client.data_to_send() == b""


def test_ws_send_to_another_stream_is_not_upgraded_error():
    pair, _ = upgraded()
    other = StreamRef()
    pair.client.ws_send((Text("a"),), other)
    assert type(pair.single_error(other)) is NotUpgradedError
    assert pair.ws_client_to_server() == []


# -- closing ------------------------------------------------------------------------


def test_server_initiated_close_is_echoed():
    pair, stream = upgraded()
    pair.ws_server_send(wse.CloseConnection(1001, "going away"))
    assert pair.events() == [ws(pair, stream, Close(1001, "going away"))]
    assert close_on_wire(pair).code == 1001
    reason = pair.client.close_reason
    assert type(reason) is WsClosed
    assert (reason.code, reason.reason, reason.by_server) == (1001, "going away", True)


def test_close_codes_reach_the_user_as_plain_ints():
    pair, _ = upgraded()
    pair.ws_server_send(wse.CloseConnection(1000, "done"))
    (event,) = pair.events()
    assert type(event.frame.code) is int
    assert repr(event.frame) == "Close(code=1000, reason='done')"
    reason = pair.client.close_reason
    assert type(reason.code) is int


def test_client_initiated_close_completes_on_the_server_reply():
    pair, stream = upgraded()
    pair.client.ws_send((Close(1000, "bye"),))
    close = close_on_wire(pair)
    assert (close.code, close.reason) == (1000, "bye")
    assert pair.client.close_reason is None
    pair.ws_server_send(close.response())
    assert pair.events() == [ws(pair, stream, Close(1000, "bye"))]
    reason = pair.client.close_reason
    assert type(reason) is WsClosed
    assert (reason.code, reason.by_server) == (1000, False)


def test_frames_after_close_are_reported_unsent():
    pair, stream = upgraded()
    pair.client.ws_send((Text("before"), Close(), Text("after"), Binary(b"late")))
    reason = pair.single_error(stream)
    assert type(reason) is NotUpgradedError
    assert reason.frames == (Text("after"), Binary(b"late"))
    assert [type(e) for e in pair.ws_client_to_server()] == [wse.TextMessage, wse.CloseConnection]
    pair.client.ws_send((Text("later"),))
    assert pair.single_error(stream).frames == (Text("later"),)


def test_ping_racing_our_close_does_not_break_the_close():
    pair, stream = upgraded()
    pair.client.ws_send((Close(),))
    pair.ws_server_send(wse.Ping(b"late ping"))  # sent before the server read our close
    assert pair.events() == []
    assert pair.client.close_reason is None
    close = close_on_wire(pair)
    pair.ws_server_send(close.response())
    assert pair.events() == [ws(pair, stream, Close(1000, ""))]
    assert type(pair.client.close_reason) is WsClosed


def test_bad_frame_while_closing_is_an_error_not_a_close_from_the_server():
    pair, stream = upgraded()
    pair.client.ws_send((Close(),))
    pair.server_send_bytes(b"\x81\x02\xc3\x28")
    reason = pair.single_error(stream)
    assert (type(reason), reason.close_code) == (RemoteProtocolError, 1007)
    assert pair.client.close_reason is reason


def test_eof_without_close_kills_the_ws_stream():
    pair, stream = upgraded()
    pair.server_close()
    assert pair.events() == []
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.lost_streams() == ((stream,), ())
    assert pair.client.protocol == "ws"


# -- broken servers --------------------------------------------------------------------


def test_invalid_utf8_text_fails_with_1007():
    pair, stream = upgraded()
    pair.server_send_bytes(b"\x81\x02\xc3\x28")
    assert_failed_with(pair, stream, 1007)


def test_masked_frame_from_the_server_fails_with_1002():
    pair, stream = upgraded()
    mask = b"\x01\x02\x03\x04"
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hi"))
    pair.server_send_bytes(b"\x81\x82" + mask + payload)
    assert_failed_with(pair, stream, 1002)


@pytest.mark.parametrize(
    "bad",
    [
        b"\xa1\x02hi",  # RSV2 set, no extension gives it a meaning (Autobahn 3.2)
        b"\x83\x00",  # reserved opcode 3 (Autobahn 4.1.3)
        b"\x00\x02hi",  # a continuation with no message to continue (Autobahn 5.15)
    ],
)
def test_a_bad_frame_after_a_message_lets_the_owner_answer_it_first(bad: bytes):
    # Message and bad frame in one read: the owner has not even seen the
    # message when the bad frame is parsed; its answer must still go out.
    pair, stream = upgraded()
    pair.server_send_bytes(pair.ws_server_bytes(wse.TextMessage("hello")) + bad + b"\x89\x00")
    [message, error] = pair.events()
    assert message == ws(pair, stream, Text("hello"))
    assert type(error) is Error
    assert error.reason.close_code == 1002
    assert pair.client.data_to_send() == b""  # no pong for the ping after the bad frame
    assert pair.client.ws.failing
    pair.client.ws_send((Text("hello"),))
    assert pair.ws_client_to_server() == [wse.TextMessage("hello")]
    pair.client.ws.fail_now()  # the connection actor's timer
    assert close_on_wire(pair).code == 1002
    assert pair.client.close_reason is error.reason
    assert pair.events() == []


def test_a_bad_frame_in_a_later_read_still_lets_the_owner_answer():
    # Autobahn 3.4: the server sends octet by octet, so the message and the
    # bad frame come in different reads; the owner still has not answered.
    pair, stream = upgraded()
    pair.server_send_bytes(pair.ws_server_bytes(wse.TextMessage("hello")))
    assert pair.events() == [ws(pair, stream, Text("hello"))]
    for octet in b"\xc1\x00":  # RSV set, no extension negotiated
        pair.server_send_bytes(bytes([octet]))
    [error] = pair.events()
    assert error.reason.close_code == 1002
    assert pair.client.ws.failing
    pair.client.ws_send((Text("hello"),))
    assert pair.ws_client_to_server() == [wse.TextMessage("hello")]
    pair.client.ws.fail_now()
    assert close_on_wire(pair).code == 1002


def test_a_bad_frame_after_the_owner_answered_fails_at_once():
    pair, _ = upgraded()
    pair.server_send_bytes(pair.ws_server_bytes(wse.TextMessage("hello")))
    pair.events()
    pair.client.ws_send((Text("hello"),))
    pair.ws_client_to_server()
    pair.server_send_bytes(b"\xc1\x00")
    [error] = pair.events()
    assert not pair.client.ws.failing  # nothing left to wait for
    assert close_on_wire(pair).code == 1002
    assert pair.client.close_reason is error.reason


def test_a_lingering_failure_ends_when_the_server_closes_tcp():
    pair, _ = upgraded()
    pair.server_send_bytes(pair.ws_server_bytes(wse.TextMessage("hello")) + b"\xa1\x00")
    [_, error] = pair.events()
    pair.server_close()
    assert pair.client.close_reason is error.reason
    assert pair.events() == []


# -- permessage-deflate ------------------------------------------------------------------


def test_permessage_deflate_round_trip():
    pair = ProtocolPair()
    stream = pair.ws_upgrade(opts=WsOpts(compress=True))
    pair.client_to_server()
    [offer] = request_header(pair, b"sec-websocket-extensions")
    assert offer.startswith(b"permessage-deflate")
    pair.accept_upgrade(extensions=[PerMessageDeflate()])
    [upgrade] = pair.events()
    assert dict(upgrade.headers)["sec-websocket-extensions"].startswith("permessage-deflate")
    text = "compress me " * 200
    pair.client.ws_send((Text(text),))
    raw = pair.client.data_to_send()
    assert raw[0] & 0x40  # RSV1: the frame is compressed
    assert len(raw) < len(text) // 4
    pair.ws_server.receive_data(raw)
    assert list(pair.ws_server.events()) == [wse.TextMessage(text)]
    pair.ws_server_send(wse.BytesMessage(b"\x00" * 5000))
    assert pair.events() == [ws(pair, stream, Binary(b"\x00" * 5000))]


def test_compression_not_offered_by_default_cannot_be_accepted():
    pair, stream = sent_upgrade()
    raw = pair.upgrade_response(
        extra_headers=[(b"sec-websocket-extensions", b"permessage-deflate")]
    )
    pair.server_send_bytes(raw)
    assert_botched(pair, stream)


def test_handshake_tokens_are_case_insensitive():
    pair, _ = sent_upgrade()
    [key] = request_header(pair, b"sec-websocket-key")
    pair.server_send_bytes(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n"
        b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: "
        + generate_accept_token(key)
        + b"\r\n\r\n"
    )
    [event] = pair.events()
    assert type(event) is Upgrade
    assert pair.client.protocol == "ws"


def test_drain_returns_what_the_separate_calls_would_in_one():
    # What the connection actor reads after every message: the bytes to send,
    # the events (both removed), the close reason and a lingering failure.
    pair, stream = upgraded()
    pair.client.ws_send((Text("hi"),))
    pair.server_send_bytes(pair.ws_server_bytes(wse.TextMessage("hello")))
    chunks, events, close_reason, failing = pair.client.drain()
    assert b"".join(chunks)  # the masked "hi" frame
    assert events == [ws(pair, stream, Text("hello"))]
    assert (close_reason, failing) == (None, None)
    assert pair.client.drain() == ([], [], None, None)  # all of it was removed

    pair.server_send_bytes(pair.ws_server_bytes(wse.TextMessage("more")) + b"\x83\x00")
    _, [message, error], close_reason, failing = pair.client.drain()
    assert message == ws(pair, stream, Text("more"))
    assert error.reason.close_code == 1002
    assert close_reason is None
    assert failing is pair.client.ws  # the close frame lingers: the actor's timer is due

    pair.client.ws.fail_now()
    chunks, _, close_reason, failing = pair.client.drain()
    assert b"".join(chunks)[:1] == b"\x88"  # the close frame went out
    assert close_reason is error.reason
    assert failing is None


def test_drain_before_the_upgrade_reports_the_http_side():
    pair = ProtocolPair()
    pair.client.request(StreamRef(), b"GET", b"/", [], None)
    chunks, events, close_reason, failing = pair.client.drain()
    assert b"".join(chunks).startswith(b"GET / HTTP/1.1\r\n")
    assert (events, close_reason, failing) == ([], None, None)
    pair.server_close()
    *_, close_reason, failing = pair.client.drain()
    assert type(close_reason) is ConnectionClosed
    assert failing is None
