"""permessage-deflate in the protocol layer: the offer, what the server may answer, the frames."""

from __future__ import annotations

import zlib

import pytest
import wsproto.events as wse
from wsproto.extensions import PerMessageDeflate

from tether import (
    Binary,
    Error,
    RemoteProtocolError,
    StreamRef,
    Text,
    Upgrade,
    UpgradeError,
    Ws,
    WsOpts,
)
from tether.testing import ProtocolPair

TEXT = "the same words, again and again; " * 40


def offered(opts: WsOpts) -> tuple[ProtocolPair, StreamRef, str]:
    """A pair whose upgrade request (with ``opts``) the server read, and the offer in it."""
    pair = ProtocolPair()
    stream = pair.ws_upgrade(opts=opts)
    pair.client_to_server()
    [offer] = [v for n, v in pair.requests[-1].headers if n == b"sec-websocket-extensions"]
    return pair, stream, offer.decode()


def compressed_frames(opts: WsOpts, count: int) -> list[bytes]:
    """The wire bytes of ``count`` sends of TEXT after the server accepted ``opts``' offer."""
    pair, _, _ = offered(opts)
    pair.accept_upgrade(extensions=[PerMessageDeflate()])
    assert [type(e) for e in pair.events()] == [Upgrade]
    frames = []
    for _ in range(count):
        pair.client.ws_send((Text(TEXT),))
        frames.append(pair.client.data_to_send())
        pair.ws_server.receive_data(frames[-1])  # the server can read every one of them
        assert list(pair.ws_server.events()) == [wse.TextMessage(TEXT)]
    return frames


def test_the_offer_carries_the_options():
    _, _, offer = offered(
        WsOpts(
            compress=True,
            client_max_window_bits=10,
            server_max_window_bits=11,
            client_no_context_takeover=True,
            server_no_context_takeover=True,
        )
    )
    params = {p.strip() for p in offer.split(";")}
    assert params == {
        "permessage-deflate",
        "client_max_window_bits=10",
        "server_max_window_bits=11",
        "client_no_context_takeover",
        "server_no_context_takeover",
    }


def test_client_no_context_takeover_compresses_each_message_alone():
    # With context takeover the second copy is a back-reference to the first.
    shared = compressed_frames(WsOpts(compress=True), 2)
    assert len(shared[1]) < len(shared[0]) // 2
    alone = compressed_frames(WsOpts(compress=True, client_no_context_takeover=True), 2)
    assert len(alone[0]) == len(alone[1])  # (the frames differ only by their mask)


def test_server_limits_are_honoured_when_the_server_agrees():
    opts = WsOpts(compress=True, server_max_window_bits=9, server_no_context_takeover=True)
    pair, stream, _ = offered(opts)
    pair.accept_upgrade(extensions=[PerMessageDeflate()])
    [upgrade] = pair.events()
    assert type(upgrade) is Upgrade
    extensions = dict(upgrade.headers)["sec-websocket-extensions"]
    assert "server_max_window_bits=9" in extensions
    assert "server_no_context_takeover" in extensions
    pair.ws_server_send(wse.TextMessage(TEXT), wse.TextMessage(TEXT))
    assert pair.events() == [Ws(pair.conn, stream, Text(TEXT))] * 2


@pytest.mark.parametrize(
    ("opts", "answer"),
    [
        # asked for server_no_context_takeover, the server did not agree
        (WsOpts(compress=True, server_no_context_takeover=True), b"permessage-deflate"),
        # asked for a 2**10 window at most, the server keeps a larger one
        (
            WsOpts(compress=True, server_max_window_bits=10),
            b"permessage-deflate; server_max_window_bits=12",
        ),
        (WsOpts(compress=True, server_max_window_bits=10), b"permessage-deflate"),
        # the same extension accepted twice
        (WsOpts(compress=True), b"permessage-deflate, permessage-deflate"),
    ],
)
def test_a_server_that_ignores_the_offer_fails_the_upgrade(opts: WsOpts, answer: bytes):
    pair, stream, _ = offered(opts)
    raw = pair.upgrade_response(extra_headers=[(b"sec-websocket-extensions", answer)])
    pair.server_send_bytes(raw)
    reason = pair.single_error(stream)
    assert type(reason) is UpgradeError
    assert pair.client.protocol == "http"


def inflate_client_frame(raw: bytes, wbits: int) -> bytes:
    """Unmask one compressed client frame and inflate it with a ``2**wbits`` window."""
    length, offset = raw[1] & 0x7F, 2
    if length == 126:
        length, offset = int.from_bytes(raw[2:4], "big"), 4
    mask, payload = raw[offset : offset + 4], raw[offset + 4 : offset + 4 + length]
    data = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return zlib.decompressobj(-wbits).decompress(data + b"\x00\x00\xff\xff")


@pytest.mark.parametrize("bits", [9, 12])
def test_client_compresses_within_its_window(bits: int):
    # Repeats 700 bytes apart: a 2**15 window refers back 700 bytes, which a
    # 9-bit (512 bytes) window cannot; 12 bits can.
    block = "".join(chr(0x41 + (i * 7919) % 26) for i in range(700)).encode()
    pair, _, _ = offered(WsOpts(compress=True, client_max_window_bits=bits))
    pair.accept_upgrade(extensions=[PerMessageDeflate()])
    assert [type(e) for e in pair.events()] == [Upgrade]
    pair.client.ws_send((Binary(block * 4),))
    assert inflate_client_frame(pair.client.data_to_send(), bits) == block * 4


def test_a_compressed_frame_without_negotiated_deflate_fails_with_1002():
    pair = ProtocolPair()
    stream = pair.upgrade(opts=WsOpts(compress=True))  # offered, the server declined
    assert [type(e) for e in pair.events()] == [Upgrade]
    pair.server_send_bytes(b"\xc1\x02hi")  # FIN + RSV1 + text
    [event] = pair.events()
    assert type(event) is Error
    assert event.stream is stream
    assert type(event.reason) is RemoteProtocolError
    assert event.reason.close_code == 1002
    [close] = pair.ws_client_to_server()
    assert isinstance(close, wse.CloseConnection)
    assert close.code == 1002
