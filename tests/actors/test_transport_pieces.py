"""Writing a message's pieces with sendmsg: every byte, in order, however the kernel cuts them."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from tether.actors._transport import send_pieces

WAIT = 5.0


class Trickle(socket.socket):
    """A real TCP socket whose ``sendmsg`` sends at most ``cap`` bytes per call.

    A blocking ``sendmsg`` sends less than asked only when ``SO_SNDTIMEO``
    runs out or a signal comes; capping it makes that happen on every call,
    on a real connection, without waiting for a timeout.
    """

    cap = 7
    calls = 0

    def sendmsg(self, buffers, *args):  # type: ignore[no-untyped-def,override]
        self.calls += 1
        taken: list[bytes] = []
        room = self.cap
        for buffer in buffers:
            piece = bytes(buffer[:room])
            taken.append(piece)
            room -= len(piece)
            if not room:
                break
        return super().sendmsg(taken, *args)


def _pair(sender: socket.socket) -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        sender.connect(listener.getsockname())
        receiver, _ = listener.accept()
    receiver.settimeout(WAIT)
    return sender, receiver


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = _pair(socket.socket())
    yield sender, receiver
    sender.close()
    receiver.close()


@pytest.fixture
def trickle() -> Iterator[tuple[Trickle, socket.socket]]:
    sender, receiver = _pair(Trickle(socket.AF_INET, socket.SOCK_STREAM))
    assert isinstance(sender, Trickle)
    yield sender, receiver
    sender.close()
    receiver.close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    received = bytearray()
    while len(received) < size:
        chunk = sock.recv(size - len(received))
        assert chunk, "the connection closed early"
        received += chunk
    return bytes(received)


def _send_while_reading(
    sender: socket.socket, receiver: socket.socket, pieces: list[bytes | bytearray]
) -> bytes:
    expected = sum(len(p) for p in pieces)
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(_read_exactly(receiver, expected)))
    reader.start()
    try:
        send_pieces(sender, pieces)
    finally:
        reader.join(WAIT)
    assert not reader.is_alive()
    return result[0]


def test_a_header_and_a_big_payload_arrive_as_one_stream(tcp):
    sender, receiver = tcp
    header, payload = b"\x82\xff" + bytes(12), os.urandom(4 << 20)  # more than the socket buffers
    assert _send_while_reading(sender, receiver, [header, payload]) == header + payload


def test_more_pieces_than_one_sendmsg_takes_arrive_in_order(tcp):
    sender, receiver = tcp
    pieces: list[bytes | bytearray] = [b"%d," % i for i in range(3000)]  # > IOV_MAX (1024)
    pieces[10] = bytearray(b"from a bytearray,")
    pieces[20] = b""  # an empty piece is skipped, not sent as an empty iovec
    assert _send_while_reading(sender, receiver, pieces) == b"".join(pieces)


def test_partial_sends_resume_where_they_stopped(trickle):
    # Cuts land inside pieces and on their edges (7 bytes per call).
    sender, receiver = trickle
    pieces: list[bytes | bytearray] = [
        b"abc",
        b"defghijklmnop",
        b"",
        b"q",
        bytearray(b"rstuvwxyz"),
    ]
    assert _send_while_reading(sender, receiver, pieces) == b"abcdefghijklmnopqrstuvwxyz"
    assert sender.calls == 4  # 26 bytes, 7 at a time


def test_nothing_to_send_sends_nothing(trickle):
    sender, _ = trickle
    send_pieces(sender, [])
    send_pieces(sender, [b"", bytearray()])
    assert sender.calls == 0


def test_a_peer_that_stops_reading_ends_the_send_instead_of_blocking(tcp):
    # SO_SNDTIMEO bounds each sendmsg as it bounds sendall (TcpTransport sets
    # 15 s and turns this error into WriteTimeout); 64 MiB exceed what the
    # loopback buffers hold while the receiver reads nothing.
    sender, _ = tcp
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 100_000))
    mib = bytes(1 << 20)
    with pytest.raises((BlockingIOError, TimeoutError)):  # what TcpTransport.write catches
        send_pieces(sender, [mib] * 64)
