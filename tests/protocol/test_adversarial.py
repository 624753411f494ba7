"""Hostile servers, in memory: long streams built to make a client buffer for ever.

Each attack puts the client in a state, then feeds an endless stream (a
prefix, then a hypothesis-chosen pattern repeated to 1 MiB) in
hypothesis-chosen read sizes. The properties:

- ``receive_data`` never raises, and every ``Error`` carries a tether error;
- the client gives up (``close_reason``) within one read of the limit that
  applies (``max_header_block_size`` or ``max_message_size``), for every
  attack that can only be refused;
- the memory the protocol layer needs (its peak, measured with
  ``tracemalloc``) stays a small multiple of that limit, far below the
  1 MiB fed; for the attacks that are legal and never end (empty
  fragments, a ping flood), fed 16 KiB, what it holds on to after the
  last read stays under twice the limit (each read's events and bytes to
  send are taken, as the actor does).

Runs are bounded (``max_examples``) so that the suite stays fast.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import Error, HttpOpts, StreamRef, TetherError, WsOpts
from tether.testing import ProtocolPair

LIMIT = 2048
MAX_READ = 8192
STREAM_SIZE = 1 << 20
LEGAL_STREAM_SIZE = 16 * 1024
MIN_LEGAL_READ = 1024
# What the client may hold: its limit several times over (h11 and wsproto
# keep a copy or two of a read), two reads, and a margin for the objects
# themselves; far below STREAM_SIZE, which an unbounded buffer would reach.
MEMORY_BOUND = 4 * LIMIT + 2 * MAX_READ + 64 * 1024
# What a legal endless stream may leave held between reads: a partial frame
# and some bookkeeping; a buffer growing with the stream would hold several
# times LEGAL_STREAM_SIZE.
LEGAL_HELD_BOUND = 2 * LIMIT

HTTP_OPTS = HttpOpts(max_header_block_size=LIMIT, max_headers=50)
# An empty fragment is two bytes: max_fragments bounds such a stream as LIMIT does others.
WS_OPTS = WsOpts(max_message_size=LIMIT, max_fragments=LIMIT // 2, silence_pings=False)

Setup = Callable[[ProtocolPair], None]


def after_request(pair: ProtocolPair) -> None:
    pair.request(b"GET", b"/")
    pair.client_to_server()


def in_chunked_body(pair: ProtocolPair) -> None:
    after_request(pair)
    pair.server_send(h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]))


def answered_while_uploading(pair: ProtocolPair) -> None:
    stream = StreamRef()
    pair.client.headers(stream, b"POST", b"/upload", [])
    pair.client.data(stream, False, b"part of the body")
    pair.client_to_server()
    pair.server_send_bytes(pair.respond(413))


def upgraded(pair: ProtocolPair) -> None:
    pair.upgrade(opts=WS_OPTS)


@dataclass(frozen=True)
class Attack:
    """A client state, the stream's fixed start, how patterns are drawn, and if it must fail."""

    setup: Setup
    prefix: bytes
    pattern: st.SearchStrategy[bytes]
    must_fail: bool = True

    @property
    def size(self) -> int:
        """How much to feed: what is refused stops early; what is legal is fed 64 KiB."""
        return STREAM_SIZE if self.must_fail else LEGAL_STREAM_SIZE


# Line contents that never end the line: no CR, no LF.
_NO_EOL = st.binary(min_size=1, max_size=64).map(
    lambda b: b.replace(b"\r", b"x").replace(b"\n", b"x")
)
_TOKEN = st.from_regex(rb"\A[a-z][a-z0-9-]{0,15}\Z")
_VALUE = st.from_regex(rb"\A[ -~]{0,40}\Z")
_HEADER_LINES = st.lists(
    st.tuples(_TOKEN, _VALUE).map(lambda nv: nv[0] + b": " + nv[1] + b"\r\n"),
    min_size=1,
    max_size=8,
).map(b"".join)
_HEX = st.from_regex(rb"\A[0-9a-fA-F]{1,16}\Z")


def _frame(opcode: int, payload: bytes) -> bytes:
    """An unmasked server frame with a 7-bit length (payloads up to 125 bytes)."""
    return bytes([opcode, len(payload)]) + payload


def _continuations(payloads: list[bytes]) -> bytes:
    return b"".join(_frame(0x00, p) for p in payloads)  # continuation, not final


_PAYLOADS = st.lists(st.binary(min_size=1, max_size=125), min_size=1, max_size=8)

ATTACKS: dict[str, Attack] = {
    "endless status line": Attack(after_request, b"HTTP/1.1 200 ", _NO_EOL),
    "endless header line": Attack(after_request, b"HTTP/1.1 200 OK\r\nx-long: ", _NO_EOL),
    "endless header lines": Attack(after_request, b"HTTP/1.1 200 OK\r\n", _HEADER_LINES),
    "endless chunk-size line": Attack(in_chunked_body, b"", _HEX),
    "endless chunk extension": Attack(in_chunked_body, b"1;ext=", _NO_EOL),
    "endless trailers": Attack(in_chunked_body, b"0\r\n", _HEADER_LINES),
    "bytes after the response": Attack(answered_while_uploading, b"", st.binary(min_size=1)),
    "huge declared frame length": Attack(
        upgraded,
        b"",
        st.tuples(st.sampled_from([0x82, 0x02]), st.integers(LIMIT + 1, (1 << 63) - 1)).map(
            lambda t: bytes([t[0], 127]) + t[1].to_bytes(8, "big")
        ),
    ),
    "endless continuation fragments": Attack(
        upgraded, _frame(0x02, b"start"), _PAYLOADS.map(_continuations)
    ),
    # Never larger, but never ending: refused at ws_opts max_fragments (1009).
    "endless empty fragments": Attack(upgraded, _frame(0x02, b""), st.just(_frame(0x00, b""))),
    "ping flood": Attack(
        upgraded,
        b"",
        _PAYLOADS.map(lambda ps: b"".join(_frame(0x89, p) for p in ps)),
        must_fail=False,
    ),
}


def endless(prefix: bytes, pattern: bytes, size: int) -> bytes:
    """``prefix`` then ``pattern`` repeated to ``size`` bytes (a huge frame header once)."""
    if pattern[1:2] == b"\x7f":  # a 64-bit frame length: the header, then payload bytes
        return prefix + pattern + b"\xa5" * size
    return prefix + pattern * (size // len(pattern) + 1)


@dataclass(frozen=True)
class Fed:
    """What feeding an attack did: bytes fed, memory at its peak and held at the end, errors."""

    fed: int
    peak: int
    held: int
    errors: list[Error]


def feed(pair: ProtocolPair, raw: bytes, reads: list[int]) -> Fed:
    """Feed ``raw`` in reads of the given sizes (cycled) until it ends or the client gives up.

    Like the connection actor, take the bytes to send and the events after
    every read, so only what the protocol layer itself holds is measured.
    """
    errors: list[Error] = []
    fed = 0
    tracemalloc.start()
    try:
        index = 0
        while fed < len(raw) and pair.client.close_reason is None:
            size = reads[index % len(reads)]
            index += 1
            pair.client.receive_data(raw[fed : fed + size])
            fed += size
            pair.client.data_to_send()
            errors += [e for e in pair.events() if isinstance(e, Error)]
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return Fed(fed, peak, held, errors)


@st.composite
def attacks(draw: st.DrawFn) -> tuple[str, bytes, list[int]]:
    name = draw(st.sampled_from(sorted(ATTACKS)))
    attack = ATTACKS[name]
    pattern = draw(attack.pattern)  # the stream is built in the test: a small repr here
    smallest = 1 if attack.must_fail else MIN_LEGAL_READ  # legal streams are fed whole
    reads = draw(st.lists(st.integers(smallest, MAX_READ), min_size=1, max_size=8))
    return name, pattern, reads


@settings(max_examples=50, deadline=None)
@given(case=attacks())
def test_endless_streams_are_refused_at_the_limit_with_bounded_memory(case):
    name, pattern, reads = case
    attack = ATTACKS[name]
    raw = endless(attack.prefix, pattern, attack.size)
    pair = ProtocolPair(http_opts=HTTP_OPTS, ws_opts=WS_OPTS)
    attack.setup(pair)
    pair.events()
    pair.client.data_to_send()
    result = feed(pair, raw, reads)
    assert all(isinstance(e.reason, TetherError) for e in result.errors), result.errors
    if not attack.must_fail:
        assert result.held < LEGAL_HELD_BOUND, (name, result.held)
        assert result.errors == []
        return
    assert result.peak < MEMORY_BOUND, (name, result.peak)
    assert pair.client.close_reason is not None, name
    assert isinstance(pair.client.close_reason, TetherError)
    assert result.fed <= len(attack.prefix) + 2 * LIMIT + MAX_READ, (name, result.fed)
    assert len(result.errors) == 1, result.errors


@settings(max_examples=100, deadline=None)
@given(
    setup=st.sampled_from(
        [after_request, in_chunked_body, answered_while_uploading, upgraded],
    ),
    raw=st.binary(max_size=2000),
    reads=st.lists(st.integers(1, 500), min_size=1, max_size=6),
)
def test_arbitrary_bytes_only_ever_produce_tether_errors(setup, raw, reads):
    pair = ProtocolPair(http_opts=HTTP_OPTS, ws_opts=WS_OPTS)
    setup(pair)
    pair.events()
    result = feed(pair, raw, reads)
    pair.client.receive_data(b"")  # and the server closes
    errors = result.errors + [e for e in pair.events() if isinstance(e, Error)]
    assert all(isinstance(e.reason, TetherError) for e in errors), errors
    assert isinstance(pair.client.close_reason, TetherError)
