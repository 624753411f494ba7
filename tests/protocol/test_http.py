"""HTTP/1.1 through ClientProtocol: the exact events an owner sees, the bytes on the wire."""

from __future__ import annotations

import h11
import pytest

from tether import (
    ConnectionClosed,
    Data,
    HttpOpts,
    Inform,
    InvalidRequestError,
    RemoteProtocolError,
    Response,
    StreamRef,
    Trailers,
)
from tether.testing import ProtocolPair

HOST = (b"host", b"example.test")


def sent_pair(
    method: bytes = b"GET", target: bytes = b"/", http_opts: HttpOpts | None = None
) -> tuple[ProtocolPair, StreamRef]:
    """A pair whose client has sent one request that the server has read."""
    pair = ProtocolPair(http_opts=http_opts)
    stream = pair.request(method, target)
    pair.client_to_server()
    return pair, stream


def response(
    pair: ProtocolPair,
    stream: StreamRef,
    fin: bool,
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (("content-length", "5"),),
) -> Response:
    return Response(pair.conn, stream, fin, status, headers)


def data(pair: ProtocolPair, stream: StreamRef, fin: bool, payload: bytes) -> Data:
    return Data(pair.conn, stream, fin, payload)


# -- response framing and fin ------------------------------------------------


def test_content_length_response_in_one_read_ends_on_the_data():
    pair, stream = sent_pair()
    pair.server_send_bytes(pair.respond(200, b"hello"))
    assert pair.events() == [response(pair, stream, False), data(pair, stream, True, b"hello")]
    assert not pair.client.busy
    assert pair.client.close_reason is None


def test_received_response_and_data_are_the_frozen_hashable_values_users_build():
    # Built without their frozen __init__ (tether.protocol._received): still
    # equal to, hashing like and as immutable as the public classes' values.
    pair, stream = sent_pair()
    pair.server_send_bytes(pair.respond(200, b"hello"))
    got = pair.events()
    expected = [response(pair, stream, False), data(pair, stream, True, b"hello")]
    assert got == expected
    for event, built in zip(got, expected, strict=True):
        assert type(event) is type(built)
        assert hash(event) == hash(built)
        assert repr(event) == repr(built)
        with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
            event.fin = True  # type: ignore[misc]


def test_body_in_later_reads_ends_on_the_last_piece():
    pair, stream = sent_pair()
    raw = pair.respond(200, b"hello")
    head_end = raw.index(b"\r\n\r\n") + 4
    pair.server_send_bytes(raw[:head_end])
    assert pair.events() == [response(pair, stream, False)]
    pair.server_send_bytes(raw[head_end : head_end + 3])
    assert pair.events() == [data(pair, stream, False, b"hel")]
    pair.server_send_bytes(raw[head_end + 3 :])
    assert pair.events() == [data(pair, stream, True, b"lo")]


@pytest.mark.parametrize(
    ("method", "status", "headers"),
    [
        (b"HEAD", 200, [(b"content-length", b"5")]),
        (b"GET", 204, []),
        (b"GET", 304, [(b"etag", b'"x"')]),
        (b"GET", 200, [(b"content-length", b"0")]),
    ],
)
def test_bodiless_response_is_a_single_fin_response(method, status, headers):
    pair, stream = sent_pair(method)
    pair.server_send(h11.Response(status_code=status, headers=headers), h11.EndOfMessage())
    expected = tuple((n.decode(), v.decode()) for n, v in headers)
    assert pair.events() == [response(pair, stream, True, status, expected)]
    assert pair.client.lost_streams() == ((), ())


def chunked_head(status: int = 200) -> h11.Response:
    return h11.Response(status_code=status, headers=[(b"transfer-encoding", b"chunked")])


CHUNKED = (("transfer-encoding", "chunked"),)


def test_chunked_response_over_several_reads_ends_with_an_empty_fin_data():
    pair, stream = sent_pair()
    pair.server_send(chunked_head(), h11.Data(data=b"ab"))
    assert pair.events() == [
        response(pair, stream, False, headers=CHUNKED),
        data(pair, stream, False, b"ab"),
    ]
    pair.server_send(h11.Data(data=b"cd"))
    assert pair.events() == [data(pair, stream, False, b"cd")]
    pair.server_send(h11.EndOfMessage())
    assert pair.events() == [data(pair, stream, True, b"")]
    assert not pair.client.busy


def test_chunked_end_in_the_same_read_as_the_last_chunk_sets_fin_on_it():
    pair, stream = sent_pair()
    pair.server_send(chunked_head())
    pair.server_send(h11.Data(data=b"ab"), h11.EndOfMessage())
    assert pair.events() == [
        response(pair, stream, False, headers=CHUNKED),
        data(pair, stream, True, b"ab"),
    ]


def test_trailers_end_the_stream_without_a_fin_data():
    pair, stream = sent_pair()
    pair.server_send(
        chunked_head(), h11.Data(data=b"ab"), h11.EndOfMessage(headers=[(b"x-checksum", b"42")])
    )
    assert pair.events() == [
        response(pair, stream, False, headers=CHUNKED),
        data(pair, stream, False, b"ab"),
        Trailers(pair.conn, stream, (("x-checksum", "42"),)),
    ]
    assert not pair.client.busy


def test_header_names_arrive_lower_cased_in_order_with_their_bytes_kept():
    # As the server sent them, names lower-cased (RFC 9110: case-insensitive),
    # repeated names kept apart, values as latin-1 so that no byte is lost.
    pair, stream = sent_pair()
    pair.server_send_bytes(
        b"HTTP/1.1 200 OK\r\nX-Mixed-CASE: A b\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\n"
        b"X-Latin: caf\xe9\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\nX-Checksum: 42\r\n\r\n"
    )
    head, trailers = pair.events()
    assert isinstance(head, Response)
    assert head.headers == (
        ("x-mixed-case", "A b"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("x-latin", "caf\xe9"),
        ("transfer-encoding", "chunked"),
    )
    assert trailers == Trailers(pair.conn, stream, (("x-checksum", "42"),))


def test_informational_responses_come_before_the_response():
    pair, stream = sent_pair()
    pair.server_send(
        h11.InformationalResponse(status_code=100, headers=[]),
        h11.InformationalResponse(status_code=103, headers=[(b"link", b"</a.css>; rel=preload")]),
    )
    assert pair.events() == [
        Inform(pair.conn, stream, 100, ()),
        Inform(pair.conn, stream, 103, (("link", "</a.css>; rel=preload"),)),
    ]
    pair.server_send_bytes(pair.respond(200, b"hello"))
    assert pair.events() == [response(pair, stream, False), data(pair, stream, True, b"hello")]


# -- the request on the wire ---------------------------------------------------


def body_of(server_events: list[object]) -> tuple[bytes, bool]:
    """The request body bytes among the server's events, and whether it ended."""
    body = b"".join(bytes(e.data) for e in server_events if isinstance(e, h11.Data))
    return body, type(server_events[-1]) is h11.EndOfMessage


@pytest.mark.parametrize(
    ("method", "body"),
    [
        (b"GET", None),
        (b"HEAD", None),
        (b"OPTIONS", None),
        (b"DELETE", None),
        (b"POST", b"p=1"),
        (b"PUT", b"put body"),
        (b"PATCH", b"{}"),
        (b"PURGE", None),
    ],
)
def test_every_method_reaches_the_server_with_its_body(method, body):
    pair = ProtocolPair()
    pair.request(method, b"/item?id=7", [(b"accept", b"*/*")], body)
    events = pair.client_to_server()
    request = events[0]
    assert (request.method, request.target, request.http_version) == (
        method,
        b"/item?id=7",
        b"1.1",
    )
    assert body_of(events) == (body or b"", True)
    assert pair.wire.startswith(method + b" /item?id=7 HTTP/1.1\r\nhost: example.test\r\n")


def test_host_header_is_added_first():
    pair = ProtocolPair()
    pair.request(headers=[(b"accept", b"text/plain")])
    [request, _] = pair.client_to_server()
    assert list(request.headers) == [HOST, (b"accept", b"text/plain")]


def test_user_host_header_is_kept_and_not_duplicated():
    pair = ProtocolPair()
    pair.request(headers=[(b"host", b"other.test:8080")])
    [request, _] = pair.client_to_server()
    assert [v for n, v in request.headers if n == b"host"] == [b"other.test:8080"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"abc", [(b"content-length", b"3")]),
        (b"", [(b"content-length", b"0")]),
        (None, []),
    ],
)
def test_content_length_is_added_for_bodies_only(body, expected):
    pair = ProtocolPair()
    pair.request(b"POST", b"/", [], body)
    request = pair.client_to_server()[0]
    framing = [
        (n, v) for n, v in request.headers if n in (b"content-length", b"transfer-encoding")
    ]
    assert framing == expected


def test_streamed_body_goes_chunked_and_arrives_intact():
    pair = ProtocolPair()
    stream = StreamRef()
    pair.client.headers(stream, b"POST", b"/upload", [(b"content-type", b"text/plain")])
    first = pair.client_to_server()
    assert [type(e) for e in first] == [h11.Request]
    assert (b"transfer-encoding", b"chunked") in list(first[0].headers)
    pair.client.data(stream, False, b"hello ")
    assert body_of(pair.client_to_server()) == (b"hello ", False)
    assert pair.wire == b"6\r\nhello \r\n"
    pair.client.data(stream, True, b"world")
    assert body_of(pair.client_to_server()) == (b"world", True)
    assert pair.wire == b"5\r\nworld\r\n0\r\n\r\n"
    assert pair.events() == []


def test_data_for_an_unknown_stream_is_an_error_event():
    pair = ProtocolPair()
    unknown = StreamRef()
    pair.client.data(unknown, True, b"x")
    assert type(pair.single_error(unknown)) is InvalidRequestError
    assert pair.client.data_to_send() == b""


def test_data_after_fin_is_an_error_event():
    pair = ProtocolPair()
    stream = pair.request(b"POST", b"/", [], b"whole")
    pair.client.data(stream, True, b"more")
    assert type(pair.single_error(stream)) is InvalidRequestError


@pytest.mark.parametrize(
    ("pieces", "wire_body"),
    [
        ([b"0123456789"], b""),  # too much: h11 refuses the piece, nothing of it is sent
        ([b"01", b""], b"01"),  # too little: h11 refuses to end the body
    ],
    ids=["too-much", "too-little"],
)
def test_a_streamed_body_that_misses_its_content_length_fails_the_stream_and_closes(
    pieces, wire_body
):
    pair = ProtocolPair()
    stream, queued = StreamRef(), StreamRef()
    pair.client.headers(stream, b"POST", b"/", [(b"content-length", b"5")])
    pair.client.request(queued, b"GET", b"/next", [], None)
    [request] = pair.client_to_server()
    assert (b"content-length", b"5") in list(request.headers)
    for index, piece in enumerate(pieces):
        pair.client.data(stream, index == len(pieces) - 1, piece)
    reason = pair.single_error(stream)
    assert type(reason) is InvalidRequestError
    assert "Content-Length" in str(reason)
    # Half a request cannot be taken back: the connection closes, for that reason.
    assert pair.client.close_reason is reason
    assert pair.client.data_to_send() == wire_body
    assert pair.client.lost_streams() == ((), (queued,))  # the Error reported this stream


def test_http10_mode_sends_an_http10_request_line():
    pair, _ = sent_pair(http_opts=HttpOpts(version="HTTP/1.0"))
    assert pair.wire.startswith(b"GET / HTTP/1.0\r\n")
    assert pair.requests[0].http_version == b"1.0"


def test_http10_streamed_body_without_content_length_is_an_error_not_chunked():
    pair = ProtocolPair(http_opts=HttpOpts(version="HTTP/1.0"))
    stream = StreamRef()
    pair.client.headers(stream, b"POST", b"/", [])
    assert type(pair.single_error(stream)) is InvalidRequestError
    assert pair.client.data_to_send() == b""


def test_http10_response_is_framed_by_close_and_a_second_request_fails_at_once():
    # An HTTP/1.0 request ends its connection: the one behind it cannot go out
    # on it, and fails at once (Gun's closing) rather than in the Down.
    pair = ProtocolPair(http_opts=HttpOpts(version="HTTP/1.0"))
    first, second = pair.request(b"GET", b"/1"), pair.request(b"GET", b"/2")
    [refused] = pair.events()
    assert (refused.stream, type(refused.reason)) == (second, ConnectionClosed)
    pair.client_to_server()
    pair.server_send(h11.Response(status_code=200, headers=[]), h11.Data(data=b"old"))
    assert pair.events() == [
        response(pair, first, False, headers=(("connection", "close"),)),
        data(pair, first, False, b"old"),
    ]
    pair.server_send(h11.EndOfMessage())  # the h11 server ends a 1.0 body by closing
    pair.server_close()
    assert pair.events() == [data(pair, first, True, b"")]
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.lost_streams() == ((), ())
    assert pair.client.data_to_send() == b""


# -- keep-alive queueing and cancel ------------------------------------------------


def request_line(target: bytes) -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nhost: example.test\r\n\r\n"


def queue_three(pair: ProtocolPair) -> list[StreamRef]:
    return [pair.request(b"GET", b"/%d" % i) for i in (1, 2, 3)]


def answer(pair: ProtocolPair, stream: StreamRef, body: bytes = b"hello") -> None:
    """Send a content-length response and check the owner sees exactly it."""
    pair.server_send_bytes(pair.respond(200, body))
    assert pair.events() == [response(pair, stream, False), data(pair, stream, True, body)]


def test_queued_requests_go_out_one_cycle_at_a_time():
    pair = ProtocolPair()
    streams = queue_three(pair)
    assert len(set(streams)) == 3
    assert pair.client.busy
    for index, stream in enumerate(streams, 1):
        pair.client_to_server()
        assert pair.wire == request_line(b"/%d" % index)
        assert pair.client.data_to_send() == b""
        answer(pair, stream)
    pair.client_to_server()
    assert pair.wire == b""
    assert not pair.client.busy


def test_a_connection_close_response_fails_the_queue_at_once():
    # Gun's http1_response_connection_close_pipeline: the requests behind a
    # response that closes the connection can never go out; each fails right
    # after that head, not in the Down after the body.
    pair = ProtocolPair()
    first, *queued = queue_three(pair)
    pair.client_to_server()
    pair.server_send_bytes(pair.respond(200, b"hello", [(b"connection", b"close")]))
    headers = (("content-length", "5"), ("connection", "close"))
    head, *errors, body = pair.events()
    assert head == response(pair, first, False, headers=headers)
    assert [(e.stream, type(e.reason)) for e in errors] == [
        (stream, ConnectionClosed) for stream in queued
    ]
    assert body == data(pair, first, True, b"hello")
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.data_to_send() == b""
    assert pair.client.lost_streams() == ((), ())


def test_cancelled_queued_request_is_never_sent():
    pair = ProtocolPair()
    first, second, third = queue_three(pair)
    pair.client.cancel(second)
    pair.client_to_server()
    answer(pair, first)
    pair.client_to_server()
    assert pair.wire == request_line(b"/3")
    answer(pair, third)
    assert pair.client.lost_streams() == ((), ())


def test_cancelled_inflight_request_goes_silent_and_the_queue_moves_on():
    pair = ProtocolPair()
    first, second, _ = queue_three(pair)
    pair.client_to_server()
    pair.client.cancel(first)
    pair.server_send_bytes(pair.respond(200, b"ignored"))
    assert pair.events() == []
    pair.client_to_server()
    assert pair.wire == request_line(b"/2")
    answer(pair, second)


def test_cancelled_inflight_request_is_not_reported_as_killed():
    pair, stream = sent_pair()
    pair.client.cancel(stream)
    pair.server_close()
    assert pair.events() == []
    assert pair.client.lost_streams() == ((), ())


def test_cancel_during_a_streamed_body_closes_the_connection():
    pair = ProtocolPair()
    stream = StreamRef()
    pair.client.headers(stream, b"PUT", b"/big", [])
    pair.client.data(stream, False, b"part")
    pair.client.cancel(stream)
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.events() == []


# -- broken servers and lost connections ---------------------------------------------


def test_garbage_response_is_a_remote_protocol_error():
    pair, stream = sent_pair()
    queued = pair.request(b"GET", b"/next")
    pair.server_send_bytes(b"NOT HTTP AT ALL\r\n\r\n")
    reason = pair.single_error(stream)
    assert type(reason) is RemoteProtocolError
    assert pair.client.close_reason is reason
    assert reason.close_code is None
    assert pair.client.lost_streams() == ((), (queued,))
    pair.server_send_bytes(pair.respond(200, b"late"))
    assert pair.events() == []


def test_eof_mid_body_kills_the_stream_without_an_error():
    pair, stream = sent_pair()
    raw = pair.respond(200, b"hello")
    pair.server_send_bytes(raw[:-2])
    assert pair.events() == [response(pair, stream, False), data(pair, stream, False, b"hel")]
    pair.server_close()
    assert pair.events() == []
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.lost_streams() == ((stream,), ())


def test_eof_before_any_response_kills_the_stream():
    pair, stream = sent_pair()
    pair.server_close()
    assert pair.events() == []
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.lost_streams() == ((stream,), ())


def test_eof_when_idle_is_connection_closed():
    pair = ProtocolPair()
    pair.server_close()
    assert pair.events() == []
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.lost_streams() == ((), ())


def test_body_framed_by_connection_close_ends_at_eof():
    pair, stream = sent_pair()
    pair.server_send_bytes(b"HTTP/1.0 200 OK\r\nserver: old\r\n\r\nhello")
    assert pair.events() == [
        response(pair, stream, False, headers=(("server", "old"),)),
        data(pair, stream, False, b"hello"),
    ]
    assert pair.client.close_reason is None
    pair.server_close()
    assert pair.events() == [data(pair, stream, True, b"")]
    assert type(pair.client.close_reason) is ConnectionClosed
    assert pair.client.lost_streams() == ((), ())


def huge_head(size: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * size + b"\r\ncontent-length: 0\r\n\r\n"


def test_header_block_over_the_limit_is_an_error_not_unbounded_buffering():
    pair, stream = sent_pair(http_opts=HttpOpts(max_header_block_size=1024))
    raw = huge_head(64 * 1024)
    fed = 0
    while pair.client.close_reason is None and fed < len(raw):
        pair.server_send_bytes(raw[fed : fed + 256])
        fed += 256
    assert fed <= 1024 + 256
    reason = pair.single_error(stream)
    assert type(reason) is RemoteProtocolError
    assert pair.client.close_reason is reason


def test_header_block_under_the_limit_is_accepted_in_pieces():
    pair, stream = sent_pair(http_opts=HttpOpts(max_header_block_size=1024))
    pair.server_send_bytes(huge_head(900), split=range(0, 1000, 100))
    assert pair.events() == [
        response(pair, stream, True, headers=(("x-big", "a" * 900), ("content-length", "0")))
    ]


def test_header_block_over_the_limit_in_one_read_is_an_error_too():
    pair, stream = sent_pair(http_opts=HttpOpts(max_header_block_size=1024))
    pair.server_send_bytes(huge_head(2000) + b"next")
    assert type(pair.single_error(stream)) is RemoteProtocolError
    assert pair.client.close_reason is not None


def test_informational_head_over_the_limit_is_an_error():
    pair, stream = sent_pair(http_opts=HttpOpts(max_header_block_size=1024))
    pair.server_send(h11.InformationalResponse(status_code=103, headers=[(b"link", b"x" * 2000)]))
    assert type(pair.single_error(stream)) is RemoteProtocolError


def test_http_keepalive_sends_an_empty_line_only_while_idle():
    pair = ProtocolPair()
    assert pair.client.http_keepalive() is True
    assert pair.client.data_to_send() == b"\r\n"
    pair.request(b"GET", b"/")
    pair.client.data_to_send()  # the request
    # Busy: an empty line in the middle of a cycle would corrupt it.
    assert pair.client.http_keepalive() is False
    assert pair.client.data_to_send() == b""
    pair.server_send_bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
    assert [type(e) for e in pair.events()] == [Response]
    assert pair.client.http_keepalive() is True
    assert pair.client.data_to_send() == b"\r\n"
