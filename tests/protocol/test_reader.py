"""tether's frame reader against wsproto: the same events and errors, read by read.

On a connection without extensions tether reads whole message frames
itself (``tether/protocol/_reader.py``) and gives wsproto everything else.
Each test here plays the same server bytes, cut into the same reads, to two
clients: one with the reader (the default), one whose every byte goes
through wsproto, and compares after every read what the owner got, what the
client wrote back (pongs, close frames, as a wsproto server reads them),
its close reason and whether a failure lingers. Tests with a single client
check what the reader must do on its own (errors found as data arrives, one
copy of a big message).
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from unittest import mock

import pytest
import wsproto.events as wse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol._corrupt import corrupt
from tether import Binary, Close, Error, Frame, Ping, Pong, Text, Upgrade, Ws, WsClosed, WsOpts
from tether.protocol import _ws
from tether.testing import ProtocolPair, split_at

# RFC 6455 §5.2 opcodes.
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK_KEY = b"\x37\xfa\x21\x3d"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = False,
    length: int | None = None,
) -> bytes:
    """A server frame, as sent: ``length`` forces the 7-, 16- or 64-bit length form."""
    size = len(payload)
    form = length or (7 if size <= 125 else 16 if size <= 0xFFFF else 64)
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    mask_bit = 0x80 if masked else 0
    if form == 7:
        header = bytes((first, mask_bit | size))
    elif form == 16:
        header = bytes((first, mask_bit | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, mask_bit | 127)) + size.to_bytes(8, "big")
    if masked:
        payload = bytes(b ^ MASK_KEY[i % 4] for i, b in enumerate(payload))
        header += MASK_KEY
    return header + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@contextmanager
def wsproto_only() -> Iterator[None]:
    """Clients built in the block give every byte to wsproto (no frame reader)."""
    with mock.patch.object(_ws, "wsproto_is_idle", return_value=None):
        yield


def upgraded(*, reader: bool, opts: WsOpts, first_read: bytes = b"") -> ProtocolPair:
    """A client whose upgrade succeeded; ``first_read`` came in the 101's read."""
    with nullcontext() if reader else wsproto_only():
        pair = ProtocolPair(ws_opts=opts)
        pair.ws_upgrade()
        pair.client_to_server()
        pair.server_send_bytes(pair.upgrade_response() + first_read)
    ws = pair.client.ws
    assert ws is not None
    # With the installed wsproto the reader is on: if a wsproto release keeps
    # its parser state elsewhere, this fails instead of tether going slow.
    assert (ws._reader is not None) == reader
    return pair


class FailNow:
    """A step: the connection actor's linger timer fires (``WsClient.fail_now``)."""

    def __repr__(self) -> str:
        return "FAIL_NOW"


FAIL_NOW = FailNow()
Step = bytes | Frame | FailNow
"""A read (``b""``: the server closed TCP), a frame the owner sends, or the linger timer."""


def label(event: object) -> object:
    """An event without its stream (each client has its own stream refs)."""
    match event:
        case Ws(frame=frame):
            return frame
        case Error(reason=reason):
            return ("Error", type(reason).__name__, str(reason), getattr(reason, "close_code", 0))
        case Upgrade():
            return "Upgrade"
    raise AssertionError(f"unexpected event {event!r}")


def snapshot(pair: ProtocolPair) -> tuple[object, ...]:
    ws = pair.client.ws
    assert ws is not None
    reason = pair.client.close_reason
    return (
        [label(e) for e in pair.events()],
        pair.ws_client_to_server(),
        None if reason is None else (type(reason).__name__, str(reason)),
        ws.failing,
        ws.closing,
        ws.pongs_received,
    )


def play(*, reader: bool, opts: WsOpts, steps: Sequence[Step], first_read: bytes = b"") -> list:
    """What one client shows after the upgrade and after each step."""
    pair = upgraded(reader=reader, opts=opts, first_read=first_read)
    seen = [snapshot(pair)]
    for step in steps:
        ws = pair.client.ws
        assert ws is not None
        if isinstance(step, bytes):
            pair.client.receive_data(step)
        elif isinstance(step, FailNow):
            ws.fail_now()
        else:
            pair.client.ws_send((step,))
        seen.append(snapshot(pair))
    return seen


def assert_same(
    steps: Sequence[Step], opts: WsOpts | None = None, first_read: bytes = b""
) -> list:
    """Both clients show the same after every step; return what they showed."""
    opts = opts or WsOpts(silence_pings=False)
    with_reader = play(reader=True, opts=opts, steps=steps, first_read=first_read)
    wsproto = play(reader=False, opts=opts, steps=steps, first_read=first_read)
    for index, (got, expected) in enumerate(zip(with_reader, wsproto, strict=True)):
        assert got == expected, (index, steps[index - 1] if index else first_read)
    return with_reader


def reads(raw: bytes, cuts: Sequence[int] = ()) -> list[Step]:
    """``raw`` cut at ``cuts``, then the linger timer and the server's TCP close."""
    return [*split_at(raw, cuts), FAIL_NOW, b""]


def events_of(seen: list) -> list[object]:
    return [event for step in seen for event in step[0]]


def first_read_with_events(seen: list) -> int:
    """Which step (0: the upgrade) first gave the owner an event, after the upgrade's."""
    return next(index for index, step in enumerate(seen) if index and step[0])


# -- a stream of every kind of frame, cut anywhere ------------------------------------------

TEXTS = ["", "a", "hello", "é" * 40, "日本語テキスト" * 3, "x" * 125, "y" * 126, "€" * 50]
BLOBS = [b"", b"\x00", bytes(range(256)), b"\xff" * 125, b"\x01" * 126, b"\x02" * 1000]
BAD_UTF8 = [b"\xc3\x28", b"ok\xff", b"\xe2\x82", "é".encode() * 80 + b"\xc0\xaf", b"\xed\xa0\x80"]

MESSAGE_FRAMES = st.one_of(
    st.sampled_from(TEXTS).map(lambda t: frame(TEXT, t.encode())),
    st.text(max_size=40).map(lambda t: frame(TEXT, t.encode())),
    st.sampled_from(BLOBS).map(lambda b: frame(BINARY, b)),
    st.binary(max_size=300).map(lambda b: frame(BINARY, b)),
)
CONTROL_FRAMES = st.one_of(
    st.binary(max_size=125).map(lambda b: frame(PING, b)),
    st.binary(max_size=125).map(lambda b: frame(PONG, b)),
    st.sampled_from(
        [
            frame(CLOSE),
            frame(CLOSE, close_payload(1000, b"done")),
            frame(CLOSE, close_payload(4000)),
            frame(CLOSE, close_payload(1005)),  # reserved for reporting: 1002
            frame(CLOSE, close_payload(999)),  # out of range: 1002
            frame(CLOSE, b"\x03"),  # one byte: 1002
            frame(CLOSE, close_payload(1000, b"\xff")),  # bad UTF-8 reason: 1007
        ]
    ),
)
ODD_FRAMES = st.one_of(
    st.sampled_from(BAD_UTF8).map(lambda b: frame(TEXT, b)),
    st.tuples(st.sampled_from([TEXT, BINARY, CONTINUATION]), st.binary(max_size=40)).map(
        lambda t: frame(t[0], t[1], fin=False)  # a fragment
    ),
    st.binary(max_size=40).map(lambda b: frame(CONTINUATION, b)),  # a last fragment
    st.sampled_from(BAD_UTF8).map(lambda b: frame(CONTINUATION, b)),
    st.tuples(st.integers(1, 7), st.sampled_from([TEXT, BINARY, PING])).map(
        lambda t: frame(t[1], b"rsv", rsv=t[0])
    ),
    st.sampled_from([TEXT, BINARY, PING, CLOSE]).map(lambda o: frame(o, b"hi", masked=True)),
    st.tuples(st.sampled_from([TEXT, BINARY, PING]), st.sampled_from([16, 64])).map(
        lambda t: frame(t[0], b"short", length=t[1])  # not the shortest length form
    ),
    st.just(frame(BINARY, b"\x00" * 200, length=64)),  # 64 bits where 16 suffice
    st.just(b"\x82\xff" + b"\x80" + b"\x00" * 7),  # masked, 64-bit length with the top bit
    st.just(b"\x82\x7f\x80" + b"\x00" * 7),  # 64-bit length with the top bit set
    st.sampled_from([0x3, 0x7, 0xB, 0xF]).map(lambda o: frame(o, b"?")),  # reserved opcodes
    st.just(frame(PING, b"p", fin=False)),  # a fragmented control frame
    st.just(frame(PING, b"p" * 126)),  # a control frame over 125 bytes
)
FRAMES = st.one_of(MESSAGE_FRAMES, MESSAGE_FRAMES, CONTROL_FRAMES, ODD_FRAMES)
OPTS = st.sampled_from(
    [
        WsOpts(silence_pings=False),
        WsOpts(),
        WsOpts(silence_pings=False, max_message_size=100),
        WsOpts(max_message_size=30_000),
        WsOpts(max_message_size=None),
    ]
)
OWNER_FRAMES = st.sampled_from([Text("answer"), Binary(b"answer"), Ping(b"p"), Close(1000)])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[WsOpts, bytes, list[Step]]:
    """Options, bytes in the 101's read, and steps: reads cut anywhere, owner frames between."""
    raw = b"".join(draw(st.lists(FRAMES, max_size=12)))
    cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    pieces = split_at(raw, cuts)
    first = b""
    if pieces and len(pieces[0]) <= 1000 and draw(st.booleans()):  # the 101's read is small
        first = pieces.pop(0)
    steps: list[Step] = []
    for piece in pieces:
        if draw(st.integers(0, 4)) == 0:
            steps.append(draw(OWNER_FRAMES))
        steps.append(piece)
    if draw(st.booleans()):
        steps.append(FAIL_NOW)
    steps.append(b"")
    return draw(OPTS), first, steps


@settings(max_examples=400, deadline=None)
@given(scenario=scenarios())
def test_any_frames_cut_anywhere_give_what_wsproto_gives(scenario):
    opts, first, steps = scenario
    assert_same(steps, opts, first_read=first)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(MESSAGE_FRAMES | CONTROL_FRAMES, min_size=1, max_size=8),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.binary(max_size=3), st.integers(0, 3)), max_size=4
    ),
    cuts=st.lists(st.floats(0, 1), max_size=8),
    opts=OPTS,
)
def test_corrupted_streams_give_what_wsproto_gives(frames, edits, cuts, opts):
    raw = corrupt(b"".join(frames), edits)
    assert_same(reads(raw, [int(c * len(raw)) for c in cuts]), opts)


# -- every cut of one mixed stream ------------------------------------------------------------

MIXED = b"".join(
    [
        frame(TEXT, b"one"),
        frame(BINARY, bytes(range(200))),  # a 16-bit length
        frame(PING, b"ping!"),
        frame(TEXT, "é".encode() * 70),  # 140 bytes: a 16-bit length, two-byte characters
        frame(TEXT, b"frag", fin=False),
        frame(PONG, b"between fragments"),
        frame(CONTINUATION, b"ment", fin=False),
        frame(CONTINUATION, b"ed"),
        frame(BINARY, b"\x07" * 65_536),  # a 64-bit length
        frame(BINARY, b""),
        frame(TEXT, b""),
        frame(CLOSE, close_payload(1000, b"done")),
        frame(TEXT, b"after the close"),  # never read
    ]
)
SMALL_MIXED = MIXED[: MIXED.index(frame(BINARY, b"\x07" * 65_536))] + frame(CLOSE)


def test_the_mixed_stream_in_one_read_gives_every_message_in_order():
    seen = assert_same(reads(MIXED))
    assert events_of(seen) == [
        "Upgrade",
        Text("one"),
        Binary(bytes(range(200))),
        Ping(b"ping!"),
        Text("é" * 70),
        Pong(b"between fragments"),
        Text("fragmented"),
        Binary(b"\x07" * 65_536),
        Binary(b""),
        Text(""),
        Close(1000, "done"),
    ]
    assert seen[1][1] == [wse.Pong(b"ping!"), wse.CloseConnection(1000, "done")]
    assert seen[1][2] == ("WsClosed", str(WsClosed(1000, "done", by_server=True)))


@pytest.mark.parametrize("stream", [SMALL_MIXED, MIXED], ids=["small", "with-64-bit-length"])
def test_every_two_read_cut_gives_what_wsproto_gives(stream: bytes):
    positions = range(1, len(stream)) if len(stream) < 2000 else range(1, len(stream), 97)
    for position in positions:
        assert_same(reads(stream, [position]))


def test_byte_by_byte_gives_what_wsproto_gives():
    seen = assert_same(reads(SMALL_MIXED, range(len(SMALL_MIXED))))
    assert events_of(seen)[-1] == Close(1005, "")  # no code in the close frame


def test_many_frames_in_one_read_give_what_wsproto_gives():
    messages = [frame(TEXT, f"message {i}".encode()) for i in range(500)]
    messages += [frame(BINARY, bytes([i % 256]) * (i * 37 % 400)) for i in range(500)]
    raw = b"".join(messages[i // 2 + (i % 2) * 500] for i in range(1000))  # interleaved
    seen = assert_same(reads(raw))
    assert len(events_of(seen)) == 1 + 1000


def test_frames_in_the_101_read_give_what_wsproto_gives():
    assert_same(reads(MIXED[100:]), first_read=MIXED[:100])


# -- what the reader must find as data arrives -----------------------------------------------


def test_invalid_utf8_in_a_frame_over_many_reads_fails_at_the_read_that_has_it():
    raw = frame(TEXT, b"ok" * 100 + b"\xff" + b"ok" * 20_000)
    seen = assert_same(reads(raw, range(0, len(raw), 100)))
    failed = first_read_with_events(seen)
    assert failed == 3  # reads 0-99, 100-199, 200-299: the byte 0xff is at 204
    [error] = seen[failed][0]
    assert (error[1], error[3]) == ("RemoteProtocolError", 1007)
    assert seen[failed][1] == [wse.CloseConnection(1007, "")]


def test_invalid_utf8_across_fragments_fails_at_the_fragment_that_has_it():
    raw = frame(TEXT, b"ok", fin=False) + frame(CONTINUATION, b"\xc3", fin=False)
    raw += frame(CONTINUATION, b"(", fin=False) + frame(CONTINUATION, b"never")
    seen = assert_same([*split_at(raw, [4, 7, 10]), FAIL_NOW, b""])
    assert [bool(step[0]) for step in seen[:5]] == [True, False, False, True, False]
    assert seen[3][0][0][3] == 1007


def test_a_text_character_cut_by_reads_is_decoded_whole():
    text = "€uro 日本" * 1000
    raw = frame(TEXT, text.encode())
    seen = assert_same(reads(raw, range(5, len(raw), 7)))  # cuts inside characters
    assert events_of(seen)[1:] == [Text(text)]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (frame(BINARY, b"x", rsv=4), 1002),
        (frame(TEXT, b"x", rsv=1), 1002),
        (frame(BINARY, b"x", masked=True), 1002),
        (frame(BINARY, b"x" * 100, length=16), 1002),
        (frame(BINARY, b"x" * 1000, length=64), 1002),
        (b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00", 1002),
        (frame(0x3, b"x"), 1002),
        (frame(CONTINUATION, b"x"), 1002),
        (frame(TEXT, b"\xc3\x28"), 1007),
        (frame(PING, b"x" * 126), 1002),
    ],
    ids=["rsv1", "rsv3-text", "masked", "16-bit-for-100", "64-bit-for-1000", "top-bit",
         "opcode-3", "lone-continuation", "bad-utf8", "long-ping"],
)  # fmt: skip
def test_a_bad_frame_after_messages_fails_as_wsproto_does(bad: bytes, code: int):
    raw = frame(TEXT, b"before") + bad + frame(TEXT, b"never")
    for cuts in ([], [len(raw) - 8], range(len(raw))):
        seen = assert_same(reads(raw, cuts))
        errors = [event for event in events_of(seen) if isinstance(event, tuple)]
        assert [e[3] for e in errors] == [code]
        assert Text("never") not in events_of(seen)
        assert Text("before") in events_of(seen)


@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG])
def test_a_reserved_bit_on_any_frame_fails_with_1002_as_wsproto_does(rsv: int, opcode: int):
    raw = frame(TEXT, b"before") + frame(opcode, b"", rsv=rsv) + frame(TEXT, b"never")
    for cuts in ([], [len(raw) - 9]):
        seen = assert_same(reads(raw, cuts))
        assert events_of(seen)[1] == Text("before")
        assert [e[3] for e in events_of(seen)[2:]] == [1002]  # one Error, nothing after it


def test_a_message_over_max_message_size_in_one_frame_fails_with_1009_as_data_arrives():
    limit = 4096
    raw = frame(BINARY, b"\x01" * (1 << 20))
    seen = assert_same(reads(raw, range(0, len(raw), 1000)), WsOpts(max_message_size=limit))
    failed = first_read_with_events(seen)
    assert failed == 5  # 4,990 payload bytes after five reads of 1,000 (header included)
    [error] = seen[failed][0]
    assert error[3] == 1009
    assert seen[failed][1] == [wse.CloseConnection(1009, "")]


def test_a_message_of_exactly_max_message_size_over_many_reads_is_delivered():
    raw = frame(TEXT, "é".encode() * 3000)  # 6,000 bytes, 3,000 characters
    seen = assert_same(reads(raw, range(0, len(raw), 999)), WsOpts(max_message_size=3000))
    assert events_of(seen)[1:] == [Text("é" * 3000)]


def test_data_after_a_close_frame_is_never_read():
    raw = frame(CLOSE, close_payload(1001)) + frame(TEXT, b"late") + b"\xff\xff garbage"
    seen = assert_same(reads(raw, [len(raw) - 3]))
    assert events_of(seen)[1:] == [Close(1001, "")]


def test_a_close_while_the_owner_closes_completes_the_handshake():
    steps: list[Step] = [Close(1000, "bye"), frame(TEXT, b"still read"), frame(CLOSE), b""]
    seen = assert_same(steps)
    assert events_of(seen)[1:] == [Text("still read"), Close(1005, "")]


def test_a_bad_frame_just_after_a_message_lingers_for_the_owners_answer():
    raw = frame(TEXT, b"question") + frame(TEXT, b"\xc3\x28")
    steps: list[Step] = [raw, Text("answer"), FAIL_NOW, b""]
    seen = assert_same(steps)
    assert seen[1][3] is True  # failing: the close frame waits
    assert seen[2][1] == [wse.TextMessage("answer")]
    assert seen[3][1] == [wse.CloseConnection(1007, "")]


# -- what the reader saves -------------------------------------------------------------------


def test_a_mib_message_in_64_kib_reads_is_copied_once():
    pair = upgraded(reader=True, opts=WsOpts())
    pair.events()
    payload = bytes(range(256)) * 4096
    pieces = split_at(frame(BINARY, payload), range(0, 1 << 20, 65536))
    tracemalloc.start()
    try:
        for piece in pieces:
            pair.client.receive_data(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    [event] = pair.events()
    assert isinstance(event, Ws)
    assert event.frame == Binary(payload)
    assert peak < (1 << 20) + 64 * 1024  # the joined message, bookkeeping: no second copy


def test_the_pieces_of_a_frame_are_not_kept_once_it_is_delivered():
    pair = upgraded(reader=True, opts=WsOpts())
    pair.events()
    raw = frame(BINARY, b"\x05" * 300_000) + frame(TEXT, "€".encode() * 100_000)
    pieces = split_at(raw, range(0, len(raw), 65536))
    del raw
    tracemalloc.start()
    try:
        while pieces:
            pair.client.receive_data(pieces.pop(0))
        events = [label(e) for e in pair.events()]
        assert events == [Binary(b"\x05" * 300_000), Text("€" * 100_000)]
        del events
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 16 * 1024  # neither the reads nor the messages
