"""Message frames tether builds next to wsproto: what a wsproto server reads from them."""

from __future__ import annotations

import os
from unittest import mock

import pytest
import wsproto.events as wse
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionType
from wsproto.extensions import PerMessageDeflate

from tether import Binary, Close, Ping, Text, Ws, WsOpts
from tether.protocol import _framing
from tether.protocol._framing import (
    BINARY,
    JOINED_MAX,
    TEXT,
    MaskingKeys,
    frame_header,
    masked_frame,
)
from tether.testing import ProtocolPair, split_at

# RFC 6455 §5.2: the edges of the 7-bit, 16-bit and 64-bit payload lengths.
EDGES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20]


def server_reads(*wire: bytes | bytearray) -> list[wse.Event]:
    """What a fresh wsproto server makes of the bytes (one read each)."""
    server = WsConnection(ConnectionType.SERVER)
    for piece in wire:
        server.receive_data(bytes(piece))
    return list(server.events())


@pytest.mark.parametrize(
    ("length", "second", "extended"),
    [
        (0, 0x80, b""),
        (125, 0x80 | 125, b""),
        (126, 0x80 | 126, (126).to_bytes(2, "big")),
        (65535, 0x80 | 126, (65535).to_bytes(2, "big")),
        (65536, 0x80 | 127, (65536).to_bytes(8, "big")),
        (1 << 20, 0x80 | 127, (1 << 20).to_bytes(8, "big")),
    ],
)
def test_the_header_uses_the_shortest_length_form(length: int, second: int, extended: bytes):
    key = b"\x01\x02\x03\x04"
    assert frame_header(BINARY, length, key) == bytes((0x82, second)) + extended + key
    assert frame_header(TEXT, length, key)[0] == 0x81  # FIN and the text opcode


@pytest.mark.parametrize("length", EDGES)
def test_a_wsproto_server_reads_the_frame_of_every_length_class(length: int):
    payload = os.urandom(length)
    assert server_reads(*masked_frame(BINARY, payload, MaskingKeys())) == [
        wse.BytesMessage(payload)
    ]


@pytest.mark.parametrize(
    ("length", "pieces"), [(1, 1), (JOINED_MAX, 1), (JOINED_MAX + 1, 2), (65536, 2)]
)
def test_a_small_frame_is_one_piece_for_the_writer(length: int, pieces: int):
    # One piece costs the writer (a socket's, or an HTTP/2 DATA frame's) less
    # than two; a large payload is not copied behind its header.
    payload = os.urandom(length)
    frame = masked_frame(BINARY, payload, MaskingKeys())
    assert len(frame) == pieces
    assert server_reads(b"".join(frame)) == [wse.BytesMessage(payload)]


def test_every_frame_has_a_fresh_masking_key():
    keys = MaskingKeys()
    headers = {masked_frame(BINARY, b"x", keys)[0] for _ in range(8)}
    assert len(headers) == 8  # same length and opcode: only the key differs


def test_masking_keys_are_urandom_bytes_each_used_once():
    calls: list[int] = []

    def counting_urandom(size: int) -> bytes:  # distinct bytes on every call, in order
        calls.append(size)
        start = sum(calls[:-1])
        return b"".join((start + i).to_bytes(4, "big") for i in range(0, size, 4))

    keys = MaskingKeys()
    with mock.patch.object(_framing, "urandom", counting_urandom):
        taken = [keys.take() for _ in range(200)]
    assert taken == [(4 * i).to_bytes(4, "big") for i in range(200)]  # in order, none twice
    assert calls == [256] * 4  # 64 keys per call: 200 keys, four calls


@given(text=st.text(max_size=200), cuts=st.lists(st.integers(0, 260), max_size=4))
def test_text_frames_survive_any_split(text: str, cuts: list[int]):
    wire = b"".join(masked_frame(TEXT, text.encode(), MaskingKeys()))
    events = server_reads(*split_at(wire, cuts))
    assert "".join(e.data for e in events if isinstance(e, wse.TextMessage)) == text


def test_message_frames_interleave_with_wsprotos_control_frames():
    # Text/Binary are built by tether, Ping/Close by wsproto: one connection's
    # frames in order, and wsproto's close handshake still completes.
    pair = ProtocolPair()
    pair.upgrade()
    pair.events()
    pair.client.ws_send((Text("a"), Ping(b"p"), Binary(b"\x00" * 70_000), Close(1000, "bye")))
    assert pair.ws_client_to_server() == [
        wse.TextMessage("a"),
        wse.Ping(b"p"),
        wse.BytesMessage(b"\x00" * 70_000),
        wse.CloseConnection(1000, "bye"),
    ]
    pair.ws_server_send(wse.CloseConnection(1000, "bye"))
    assert pair.client.close_reason is not None


def test_a_big_message_goes_out_as_header_and_payload_without_a_join():
    pair = ProtocolPair()
    pair.upgrade()
    pair.events()
    payload = os.urandom(1 << 20)
    pair.client.ws_send((Binary(payload),))
    chunks = pair.client.chunks_to_send()
    assert [len(c) for c in chunks] == [14, 1 << 20]  # 2 + 8 length + 4 key; the payload
    assert pair.client.chunks_to_send() == []
    assert server_reads(*chunks) == [wse.BytesMessage(payload)]


def test_with_deflate_messages_still_go_through_wsproto():
    pair = ProtocolPair()
    pair.upgrade(opts=WsOpts(compress=True), extensions=[PerMessageDeflate()])
    pair.events()
    pair.client.ws_send((Text("zzzz" * 100),))
    wire = pair.client.data_to_send()
    assert wire[0] & 0x40  # RSV1: the message is compressed
    pair.ws_server.receive_data(wire)
    assert list(pair.ws_server.events()) == [wse.TextMessage("zzzz" * 100)]


@given(sizes=st.lists(st.sampled_from([1, 3, 1023, 1024, 5000]), min_size=2, max_size=12))
def test_a_message_in_small_and_large_fragments_arrives_whole(sizes: list[int]):
    pair = ProtocolPair()
    pair.upgrade()
    pair.events()
    message = os.urandom(sum(sizes))
    offset = 0
    for index, size in enumerate(sizes):
        part = message[offset : offset + size]
        offset += size
        last = index == len(sizes) - 1
        pair.ws_server_send(wse.BytesMessage(part, message_finished=last))
    [event] = pair.events()
    assert isinstance(event, Ws)
    assert event.frame == Binary(message)
