"""Where TCP cuts the server's bytes must not change what the owner sees.

Each scenario is a client state plus the bytes a server sends. Feeding them
in one read, cut at every single position, byte by byte, or cut at random
places must give the same events once ``Data`` chunking (which legitimately
follows the reads) is normalized away. Arbitrary bytes must never make
``receive_data`` raise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import h11
import pytest
import wsproto.events as wse
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocol._corrupt import corrupt
from tether import Close, Data, Error, Event, Inform, Response, Trailers, Upgrade, Ws, WsOpts
from tether.testing import ProtocolPair

Scenario = Callable[[ProtocolPair], bytes]
"""Puts the client in a state (its request read by the server); returns the server's bytes."""


def content_length(pair: ProtocolPair) -> bytes:
    pair.request(b"GET", b"/cl")
    pair.client_to_server()
    return pair.respond(200, b"hello, world", [(b"x-kind", b"content-length")])


def chunked_with_trailers(pair: ProtocolPair) -> bytes:
    pair.request(b"GET", b"/chunked")
    pair.client_to_server()
    return pair.server_bytes(
        h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]),
        h11.Data(data=b"first "),
        h11.Data(data=b"second "),
        h11.Data(data=b"third"),
        h11.EndOfMessage(headers=[(b"x-digest", b"abc"), (b"x-count", b"3")]),
    )


def informational(pair: ProtocolPair) -> bytes:
    pair.request(b"POST", b"/1xx", [(b"expect", b"100-continue")], b"body")
    pair.client_to_server()
    return pair.server_bytes(
        h11.InformationalResponse(status_code=100, headers=[]),
        h11.InformationalResponse(status_code=103, headers=[(b"link", b"</s.css>")]),
        h11.Response(status_code=201, headers=[(b"content-length", b"7")]),
        h11.Data(data=b"created"),
        h11.EndOfMessage(),
    )


def upgrade_then_frames(pair: ProtocolPair) -> bytes:
    pair.ws_upgrade(opts=WsOpts(silence_pings=False))
    pair.client_to_server()
    return pair.upgrade_response() + pair.ws_server_bytes(
        wse.TextMessage("one"),
        wse.TextMessage("frag", message_finished=False),
        wse.TextMessage("men", message_finished=False),
        wse.TextMessage("ted"),
        wse.Ping(b"ping!"),
        wse.BytesMessage(b"\x00\x01" * 70),  # a 16-bit length header
        wse.CloseConnection(1000, "done"),
    )


SCENARIOS: dict[str, Scenario] = {
    "content-length": content_length,
    "chunked+trailers": chunked_with_trailers,
    "1xx": informational,
    "101+frames": upgrade_then_frames,
}


@dataclass(frozen=True)
class Outcome:
    """What the owner saw, with Data chunking normalized away."""

    events: tuple[object, ...]
    bodies: tuple[tuple[int, bytes], ...]
    ended: tuple[int, ...]
    close_reason: str | None
    server_saw: tuple[object, ...]


def _label(event: Event, ids: dict[object, int]) -> object:
    stream = ids.setdefault(getattr(event, "stream", None), len(ids))
    match event:
        case Error(reason=reason):
            return ("Error", stream, type(reason).__name__, getattr(reason, "close_code", None))
        case Response(fin=fin, status=status, headers=headers):
            return ("Response", stream, fin, status, headers)
        case Inform(status=status, headers=headers):
            return ("Inform", stream, status, headers)
        case Trailers(headers=headers):
            return ("Trailers", stream, headers)
        case Upgrade(protocols=protocols, headers=headers):
            # The accept token follows the client's random key: keep its name only.
            names = tuple(name for name, _ in headers)
            return ("Upgrade", stream, protocols, names)
        case Ws(frame=frame):
            return ("Ws", stream, frame)
    raise AssertionError(f"unexpected event {event!r}")


def normalize(pair: ProtocolPair, events: list[Event]) -> Outcome:
    ids: dict[object, int] = {}
    labels: list[object] = []
    bodies: dict[int, bytes] = {}
    fins: dict[int, bool] = {}
    for event in events:
        if isinstance(event, Data):
            stream = ids.setdefault(event.stream, len(ids))
            bodies[stream] = bodies.get(stream, b"") + event.data
            fins[stream] = event.fin
            continue
        labels.append(_label(event, ids))
        stream = ids[getattr(event, "stream", None)]
        fins[stream] = isinstance(event, Trailers | Upgrade) or getattr(event, "fin", False)
    reason = pair.client.close_reason
    server_saw = tuple(pair.ws_client_to_server()) if pair.ws_server is not None else ()
    return Outcome(
        events=tuple(labels),
        bodies=tuple(sorted(bodies.items())),
        ended=tuple(sorted(s for s, fin in fins.items() if fin)),
        close_reason=None if reason is None else type(reason).__name__,
        server_saw=server_saw,
    )


def run(scenario: Scenario, cut: Callable[[bytes], list[int]]) -> Outcome:
    """Play ``scenario`` with its bytes cut at the offsets ``cut`` picks; normalize."""
    pair = ProtocolPair()
    raw = scenario(pair)
    pair.server_send_bytes(raw, split=cut(raw))
    return normalize(pair, pair.events())


def whole(_raw: bytes) -> list[int]:
    return []


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[Scenario, Outcome]:
    play = SCENARIOS[request.param]
    return play, run(play, whole)


def test_reference_outcomes_are_what_the_owner_should_see():
    """The one-read outcomes are right; the split tests compare against them."""
    cl = run(content_length, whole)
    assert cl.bodies == ((0, b"hello, world"),)
    assert cl.ended == (0,)
    chunked = run(chunked_with_trailers, whole)
    assert chunked.bodies == ((0, b"first second third"),)
    assert chunked.events[-1] == ("Trailers", 0, (("x-digest", "abc"), ("x-count", "3")))
    informs = [e[0] for e in run(informational, whole).events]
    assert informs == ["Inform", "Inform", "Response"]
    ws = run(upgrade_then_frames, whole)
    assert [e[0] for e in ws.events] == ["Upgrade", "Ws", "Ws", "Ws", "Ws", "Ws"]
    assert ws.events[2][2].data == "fragmented"
    assert ws.events[-1][2] == Close(1000, "done")
    assert ws.close_reason == "WsClosed"
    assert [type(e) for e in ws.server_saw] == [wse.Pong, wse.CloseConnection]


def test_every_two_piece_split_gives_the_same_outcome(scenario):
    play, expected = scenario
    length = len(play(ProtocolPair()))
    for position in range(1, length):
        assert run(play, lambda _raw, p=position: [p]) == expected, position


def test_byte_by_byte_gives_the_same_outcome(scenario):
    play, expected = scenario
    assert run(play, lambda raw: list(range(len(raw)))) == expected


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(SCENARIOS)), cuts=st.lists(st.floats(0, 1), max_size=40))
def test_random_multi_way_splits_give_the_same_outcome(name, cuts):
    play = SCENARIOS[name]
    expected = run(play, whole)
    assert run(play, lambda raw: [int(c * len(raw)) for c in cuts]) == expected


# -- arbitrary bytes -------------------------------------------------------------------


def after_request(pair: ProtocolPair) -> None:
    pair.request(b"GET", b"/")
    pair.client_to_server()


def mid_chunked_body(pair: ProtocolPair) -> None:
    after_request(pair)
    pair.server_send(
        h11.Response(status_code=200, headers=[(b"transfer-encoding", b"chunked")]),
        h11.Data(data=b"x"),
    )


def after_upgrade_request(pair: ProtocolPair) -> None:
    pair.ws_upgrade()
    pair.client_to_server()


def upgraded(pair: ProtocolPair) -> None:
    pair.upgrade(opts=WsOpts(silence_pings=False, max_message_size=64))


def closing(pair: ProtocolPair) -> None:
    upgraded(pair)
    pair.client.ws_send((Close(),))


STATES = [after_request, mid_chunked_body, after_upgrade_request, upgraded, closing]


def assert_ends_cleanly(pair: ProtocolPair) -> None:
    """After EOF: events only through events(), a close reason, nothing more accepted."""
    pair.server_close()
    events = pair.events()
    assert all(
        isinstance(e, Data | Error | Inform | Response | Trailers | Upgrade | Ws) for e in events
    )
    assert pair.client.close_reason is not None
    _, unprocessed = pair.client.lost_streams()
    assert unprocessed == ()
    pair.client.data_to_send()
    pair.server_send_bytes(b"more after the end")
    assert pair.events() == []


@settings(max_examples=300, deadline=None)
@given(
    state=st.sampled_from(STATES),
    raw=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=10),
)
def test_arbitrary_bytes_never_raise_and_eof_always_ends_the_connection(state, raw, cuts):
    pair = ProtocolPair()
    state(pair)
    pair.server_send_bytes(raw, split=cuts)
    assert_ends_cleanly(pair)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(sorted(SCENARIOS)),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.binary(max_size=3), st.integers(0, 3)),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.floats(0, 1), max_size=10),
)
def test_corrupted_server_bytes_never_raise(name, edits, cuts):
    pair = ProtocolPair()
    raw = corrupt(SCENARIOS[name](pair), edits)
    pair.server_send_bytes(raw, split=[int(c * len(raw)) for c in cuts])
    assert_ends_cleanly(pair)
