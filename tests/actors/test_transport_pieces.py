"""A message written as pieces (sendmsg): every byte in order, however much the socket takes."""

from __future__ import annotations

import os

import pytest

from tests.actors.test_transport import _connected_pair, _flush_while_reading, _Reports
from tether.actors._transport import unsent

PIECES = [b"abc", b"", b"defgh", bytearray(b"ij"), b"k"]


@pytest.mark.parametrize("sent", range(len(b"abcdefghijk") + 1))
def test_what_is_left_after_a_partial_send(sent: int):
    rest = unsent(PIECES, sent)
    assert b"".join(rest) == b"abcdefghijk"[sent:]
    assert all(len(view) for view in rest)  # no empty piece waits in the backlog


def test_a_header_and_a_payload_larger_than_the_socket_buffers_go_out_in_order():
    # The socket takes part of the payload at once (sendmsg cuts inside it);
    # the rest waits, and a later write queues behind it.
    reports = _Reports()
    transport, accepted, listener = _connected_pair(reports)
    header, payload = b"\x82\xff" + bytes(12), os.urandom(8 << 20)
    with accepted, listener:
        transport.write([header, payload, b"", bytearray(b"tail")])
        transport.write([b"after"])
        expected = header + payload + b"tail" + b"after"
        assert _flush_while_reading(transport, reports, accepted, len(expected)) == expected
        transport.close()


def test_more_pieces_than_one_sendmsg_takes_go_out_in_order():
    # Linux takes at most IOV_MAX (1024) buffers per call: the rest waits.
    reports = _Reports()
    transport, accepted, listener = _connected_pair(reports)
    pieces: list[bytes | bytearray] = [b"%d," % i for i in range(3000)]
    with accepted, listener:
        transport.write(pieces)
        expected = b"".join(pieces)
        assert _flush_while_reading(transport, reports, accepted, len(expected)) == expected
        transport.close()
