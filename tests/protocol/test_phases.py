"""The event handler phases the protocol reports (``observe``): what no server test can force.

A server that pings, fragments a message, starts the close handshake, or
compresses, on cue: the in-memory pair's server does it; the connection
actor passes these phases to the event handler as they are (adding the
stream's ``reply_to``), see tests/gun/test_event_suite.py.
"""

from __future__ import annotations

from typing import Any

import wsproto.events as wse
from wsproto.extensions import PerMessageDeflate

from tether import Close, Pong, Text, WsOpts
from tether.testing import ProtocolPair


class Phases:
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        self.seen.append((name, data))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        seen, self.seen = self.seen, []
        return seen

    def names(self) -> list[str]:
        return [name for name, _ in self.take()]


RECV = ["ws_recv_frame_start", "ws_recv_frame_header", "ws_recv_frame_end", "ws_recv_frame"]
SEND = ["ws_send_frame_start", "ws_send_frame_end", "ws_send_frame"]


def upgraded(phases: Phases) -> tuple[ProtocolPair, Any]:
    pair = ProtocolPair(observe=phases)
    stream = pair.upgrade()
    pair.events()
    phases.take()
    return pair, stream


def test_a_silenced_ping_and_its_pong_are_phases_though_the_owner_sees_neither() -> None:
    phases = Phases()
    pair, stream = upgraded(phases)
    pair.ws_server_send(wse.Ping(payload=b"are you there"))
    assert pair.events() == []  # silence_pings (the default)
    seen = phases.take()
    assert [name for name, _ in seen] == RECV + SEND
    header, end = seen[1][1], seen[2][1]
    assert (header["type"], header["len"], header["stream"]) == ("ping", 13, stream)
    assert (end["payload"], end["close_code"]) == (b"are you there", None)
    assert seen[4][1]["frame"] == Pong(b"are you there")  # the automatic answer
    assert pair.ws_client_to_server() == [wse.Pong(payload=b"are you there")]


def test_a_fragmented_message_is_one_frame_once_whole() -> None:
    phases = Phases()
    pair, _ = upgraded(phases)
    pair.ws_server_send(wse.TextMessage(data="Hello ", message_finished=False))
    assert phases.take() == []  # not whole yet
    pair.ws_server_send(wse.TextMessage(data="world!", message_finished=True))
    seen = dict(phases.take())
    assert list(seen) == RECV
    assert seen["ws_recv_frame_header"]["frag_state"] is None
    assert (seen["ws_recv_frame_header"]["type"], seen["ws_recv_frame_header"]["len"]) == (
        "text",
        12,
    )
    assert seen["ws_recv_frame_end"]["payload"] == "Hello world!"
    assert seen["ws_recv_frame"]["frame"] == Text("Hello world!")


def test_the_servers_close_and_its_echo() -> None:
    phases = Phases()
    pair, _ = upgraded(phases)
    pair.ws_server_send(wse.CloseConnection(code=1001, reason="bye"))
    seen = phases.take()
    assert [name for name, _ in seen] == RECV + SEND
    header, end = seen[1][1], seen[2][1]
    assert (header["type"], header["len"]) == ("close", 5)
    assert (end["close_code"], end["payload"]) == (1001, "bye")
    assert seen[4][1]["frame"] == Close(1001, "bye")


def test_with_permessage_deflate_the_extension_is_named_and_the_bits_unknown() -> None:
    phases = Phases()
    pair = ProtocolPair(observe=phases, ws_opts=WsOpts(compress=True))
    pair.upgrade(extensions=[PerMessageDeflate()])
    pair.events()
    phases.take()
    pair.ws_server_send(wse.TextMessage(data="squeezed " * 20))
    seen = dict(phases.take())
    assert seen["ws_recv_frame_start"]["extensions"] == ("permessage-deflate",)
    assert seen["ws_recv_frame_header"]["rsv"] is None
    assert seen["ws_recv_frame_header"]["len"] == 180  # the payload, inflated
    pair.client.ws_send((Text("hi"),))
    sent = dict(phases.take())
    assert sent["ws_send_frame_start"]["extensions"] == ("permessage-deflate",)


def test_a_request_queued_behind_another_starts_when_it_is_written() -> None:
    phases = Phases()
    pair = ProtocolPair(observe=phases)
    first, second = pair.request(), pair.request(target=b"/two")
    seen = phases.take()
    assert [(name, data["stream"]) for name, data in seen] == [
        ("request_start", first),
        ("request_headers", first),
        ("request_end", first),
    ]
    pair.client_to_server()
    pair.server_send_bytes(pair.respond(body=b"ok"))
    assert [(name, data["stream"]) for name, data in phases.take()] == [
        ("response_start", first),
        ("response_headers", first),
        ("response_end", first),
        ("request_start", second),
        ("request_headers", second),
        ("request_end", second),
    ]


def test_a_cancelled_streams_response_is_still_observed() -> None:
    # Gun: HTTP/1.1 cannot cancel a response; its phases still come (the connection is busy).
    phases = Phases()
    pair = ProtocolPair(observe=phases)
    stream = pair.request()
    pair.client_to_server()
    pair.client.cancel(stream)
    phases.take()
    pair.server_send_bytes(pair.respond(body=b"unwanted"))
    assert pair.events() == []
    assert phases.names() == ["response_start", "response_headers", "response_end"]


def test_without_observe_nothing_is_reported_and_nothing_changes() -> None:
    quiet, observed = ProtocolPair(), ProtocolPair(observe=Phases())
    for pair in (quiet, observed):
        pair.upgrade()
        pair.ws_server_send(wse.Ping(payload=b"x"), wse.TextMessage(data="hi"))
    assert [type(e) for e in quiet.events()] == [type(e) for e in observed.events()]
    assert quiet.ws_client_to_server() == observed.ws_client_to_server()
