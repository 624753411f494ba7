"""Response head limits (size and count) and message size limits, in memory.

Every limit is checked as the bytes arrive: a test feeds an over-limit
stream piece by piece and checks the client gave up within one piece of the
limit, with an ``Error`` whose reason is a tether ``RemoteProtocolError``
naming the option, and a close reason (the actor turns it into ``Down``).
"""

from __future__ import annotations

import tracemalloc

import h11
import pytest
import wsproto.events as wse
from wsproto.extensions import PerMessageDeflate

import tether
from tether import Binary, Error, HttpOpts, RemoteProtocolError, Response, StreamRef, WsOpts
from tether.testing import ProtocolPair

PIECE = 256


def sent_pair(http_opts: HttpOpts | None = None) -> tuple[ProtocolPair, StreamRef]:
    pair = ProtocolPair(http_opts=http_opts)
    stream = pair.request(b"GET", b"/")
    pair.client_to_server()
    return pair, stream


def head_with(count: int, *, status: int = 200) -> bytes:
    fields = b"".join(b"x-h%d: v\r\n" % i for i in range(count))
    return b"HTTP/1.1 %d OK\r\n" % status + fields + b"content-length: 0\r\n\r\n"


def feed_until_closed(pair: ProtocolPair, raw: bytes, piece: int = PIECE) -> int:
    """Feed ``raw`` piece by piece until the client gives up; return the bytes fed."""
    fed = 0
    while pair.client.close_reason is None and fed < len(raw):
        pair.server_send_bytes(raw[fed : fed + piece])
        fed += piece
    return fed


def limit_error(pair: ProtocolPair, stream: StreamRef | None, option: str) -> RemoteProtocolError:
    reason = pair.single_error(stream)
    assert type(reason) is RemoteProtocolError, reason
    assert option in str(reason)
    assert pair.client.close_reason is reason
    return reason


# -- header count ------------------------------------------------------------------------


def test_max_headers_defaults_to_100_like_http_client():
    assert HttpOpts().max_headers == 100


def test_a_head_with_max_headers_fields_is_accepted():
    pair, stream = sent_pair()
    pair.server_send_bytes(head_with(99))  # + content-length = 100 fields
    [event] = pair.events()
    assert isinstance(event, Response)
    assert event.stream is stream
    assert len(event.headers) == 100


def test_one_field_over_max_headers_is_an_error_naming_the_option():
    pair, stream = sent_pair()
    pair.server_send_bytes(head_with(100))
    reason = limit_error(pair, stream, "max_headers")
    assert "101 header fields" in str(reason)
    assert pair.client.lost_streams() == ((), ())  # reported by the Error, not again in Down


def test_max_headers_none_allows_any_count_within_the_size_limit():
    pair, stream = sent_pair(HttpOpts(max_headers=None))
    pair.server_send_bytes(head_with(5000))
    [event] = pair.events()
    assert isinstance(event, Response)
    assert event.stream is stream
    assert len(event.headers) == 5001


def test_informational_and_trailer_blocks_are_counted_too():
    pair, stream = sent_pair(HttpOpts(max_headers=2))
    pair.server_send(h11.InformationalResponse(status_code=103, headers=[(b"link", b"a")] * 3))
    limit_error(pair, stream, "max_headers")

    pair, stream = sent_pair(HttpOpts(max_headers=2))
    pair.server_send(
        h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]),
        h11.Data(data=b"body"),
    )
    assert [type(e) for e in pair.events()] == [Response, tether.Data]
    pair.server_send(h11.EndOfMessage(headers=[(b"x-t", b"1")] * 3))
    assert "trailer block" in str(limit_error(pair, stream, "max_headers"))


def test_many_headers_cut_in_pieces_are_refused_at_the_size_limit_first():
    """Tiny fields: the count limit is off, so the size limit must stop the head."""
    pair, stream = sent_pair(HttpOpts(max_headers=None, max_header_block_size=2048))
    fed = feed_until_closed(pair, head_with(100_000))
    assert fed <= 2048 + PIECE
    limit_error(pair, stream, "max_header_block_size")


@pytest.mark.parametrize("value", [0, -1])
def test_max_headers_must_be_positive(value):
    with pytest.raises(ValueError, match="max_headers"):
        HttpOpts(max_headers=value)


@pytest.mark.parametrize("value", ["100", 1.5, True])
def test_max_headers_must_be_an_int(value):
    with pytest.raises(TypeError, match="max_headers"):
        HttpOpts(max_headers=value)


def test_open_validates_max_headers_at_once():
    with pytest.raises(ValueError, match="max_headers"):
        tether.open("127.0.0.1", 9, http_opts={"max_headers": 0})


# -- header block size: what h11 alone would buffer -----------------------------------------


def test_a_head_that_never_ends_stops_at_the_size_limit():
    pair, stream = sent_pair(HttpOpts(max_header_block_size=4096))
    endless = b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"a" * 1_000_000
    fed = feed_until_closed(pair, endless)
    assert fed <= 4096 + PIECE
    reason = limit_error(pair, stream, "max_header_block_size")
    assert "h11" not in type(reason).__module__


def test_an_endless_chunk_size_line_stops_at_the_size_limit():
    pair, stream = sent_pair(HttpOpts(max_header_block_size=4096))
    pair.server_send(h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]))
    assert [type(e) for e in pair.events()] == [Response]
    fed = feed_until_closed(pair, b"1" * 1_000_000)
    assert fed <= 4096 + PIECE
    assert "chunk-size line" in str(limit_error(pair, stream, "max_header_block_size"))


def test_endless_trailers_stop_at_the_size_limit():
    pair, stream = sent_pair(HttpOpts(max_header_block_size=4096, max_headers=None))
    pair.server_send(h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]))
    pair.events()
    fed = feed_until_closed(pair, b"0\r\n" + b"x-t: v\r\n" * 200_000)
    assert fed <= 4096 + PIECE
    limit_error(pair, stream, "max_header_block_size")


def test_a_trailer_block_over_the_size_in_one_read_is_refused():
    pair, stream = sent_pair(HttpOpts(max_header_block_size=1024))
    pair.server_send(
        h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]),
        h11.Data(data=b"x"),
    )
    pair.events()
    pair.server_send(h11.EndOfMessage(headers=[(b"x-t", b"v" * 2000)]))
    assert "trailer block" in str(limit_error(pair, stream, "max_header_block_size"))


def test_bytes_after_a_response_while_the_body_still_goes_out_are_bounded():
    """The server answered early; h11 pauses and would keep whatever follows for ever."""
    pair = ProtocolPair(http_opts=HttpOpts(max_header_block_size=4096))
    stream = StreamRef()
    pair.client.headers(stream, b"POST", b"/upload", [])
    pair.client.data(stream, False, b"first piece")
    pair.client_to_server()
    pair.server_send_bytes(pair.respond(413, b"too big"))
    assert [type(e) for e in pair.events()] == [Response, tether.Data]
    fed = feed_until_closed(pair, b"z" * 1_000_000)
    assert fed <= 4096 + PIECE
    # The stream got its whole response: the error is the connection's.
    limit_error(pair, None, "max_header_block_size")


# -- message size -------------------------------------------------------------------------


def upgraded(opts: WsOpts, *, deflate: bool = False) -> tuple[ProtocolPair, StreamRef]:
    pair = ProtocolPair()
    extensions = [PerMessageDeflate()] if deflate else []
    stream = pair.upgrade(opts=opts, extensions=extensions)
    assert [type(e) for e in pair.events()] == [tether.Upgrade]
    return pair, stream


def assert_too_big(pair: ProtocolPair, stream: StreamRef) -> None:
    [event] = pair.events()
    assert isinstance(event, Error)
    assert event.stream is stream
    assert isinstance(event.reason, RemoteProtocolError)
    assert event.reason.close_code == 1009
    [close] = pair.ws_client_to_server()
    assert isinstance(close, wse.CloseConnection)
    assert close.code == 1009
    assert pair.client.close_reason is event.reason


def test_a_huge_declared_frame_length_fails_once_the_limit_is_passed_not_at_the_end():
    pair, stream = upgraded(WsOpts(max_message_size=4096))
    # A final binary frame announcing 2**62 bytes (64-bit length), then its first bytes.
    header = b"\x82\x7f" + (1 << 62).to_bytes(8, "big")
    fed = feed_until_closed(pair, header + b"\x00" * 1_000_000)
    assert fed <= len(header) + 4096 + PIECE
    assert_too_big(pair, stream)


def test_endless_continuation_fragments_fail_at_the_limit():
    pair, stream = upgraded(WsOpts(max_message_size=4096))
    first = b"\x02\x10" + b"\x01" * 16  # binary, not final, 16 bytes
    continuation = b"\x00\x10" + b"\x01" * 16  # continuation, not final
    fed = feed_until_closed(pair, first + continuation * 100_000)
    assert fed <= 4096 * 18 // 16 + PIECE
    assert_too_big(pair, stream)


def test_a_small_compressed_message_inflating_past_the_limit_is_refused():
    pair, stream = upgraded(WsOpts(compress=True, max_message_size=64 * 1024), deflate=True)
    raw = pair.ws_server_bytes(wse.BytesMessage(b"\x00" * (1 << 20)))
    assert len(raw) < 4096  # 1 MiB of zeros deflates to about 1 KiB
    pair.server_send_bytes(raw)
    assert_too_big(pair, stream)


def test_a_compressed_message_of_exactly_the_limit_is_delivered():
    pair, stream = upgraded(WsOpts(compress=True, max_message_size=64 * 1024), deflate=True)
    pair.ws_server_send(wse.BytesMessage(b"\x00" * (64 * 1024)))
    assert pair.events() == [tether.Ws(pair.conn, stream, Binary(b"\x00" * (64 * 1024)))]


def test_one_read_of_compressed_zeros_is_never_inflated_whole():
    """64 KiB of deflated zeros is 64 MiB inflated; the client must stop near the limit."""
    limit = 64 * 1024
    pair, stream = upgraded(WsOpts(compress=True, max_message_size=limit), deflate=True)
    raw = pair.ws_server_bytes(wse.BytesMessage(b"\x00" * (64 << 20)))
    tracemalloc.start()
    try:
        pair.server_send_bytes(raw[:65536])  # one read
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_too_big(pair, stream)
    assert peak < 32 * limit  # inflating the read whole takes over 64 MiB


def test_compressed_messages_arrive_intact_whatever_the_reads():
    pair, stream = upgraded(WsOpts(compress=True, max_message_size=1 << 20), deflate=True)
    text = "".join(f"{i:08x} tether " for i in range(40_000))  # 640 KB, compressible
    data = bytes(range(256)) * 1024  # 256 KiB, barely compressible
    raw = pair.ws_server_bytes(wse.TextMessage(text), wse.BytesMessage(data))
    pair.server_send_bytes(raw, split=range(0, len(raw), 50_000))
    assert pair.events() == [
        tether.Ws(pair.conn, stream, tether.Text(text)),
        tether.Ws(pair.conn, stream, Binary(data)),
    ]
