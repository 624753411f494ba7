"""CONNECT through ClientProtocol (sans-I/O): the request's bytes, its answers, the tunnel."""

from __future__ import annotations

from typing import Any

import pytest

from tether import (
    ConnectionClosed,
    Data,
    Error,
    HttpOpts,
    InvalidRequestError,
    Response,
    StreamRef,
    WsOpts,
)
from tether.protocol import ClientProtocol
from tether.protocol._client import Tunnel, connect_headers

CONN: Any = object()  # the handle events carry; the protocol never looks at it


def client(**http: Any) -> ClientProtocol:
    return ClientProtocol(
        CONN, authority="proxy:3128", http_opts=HttpOpts(**http), ws_opts=WsOpts()
    )


def connected(**http: Any) -> tuple[ClientProtocol, StreamRef]:
    proto, stream = client(**http), StreamRef()
    assert proto.connect(stream, "origin.test:443", [])
    proto.data_to_send()
    return proto, stream


def test_the_request_is_authority_form_with_host_and_no_body_framing() -> None:
    proto, stream = client(), StreamRef()
    assert proto.connect(
        stream,
        "origin.test:443",
        [(b"content-length", b"3"), (b"transfer-encoding", b"chunked"), (b"x-a", b"1")],
        username="essen",
        password="pw",
    )
    assert proto.data_to_send() == (
        b"CONNECT origin.test:443 HTTP/1.1\r\nhost: origin.test:443\r\nx-a: 1\r\n"
        b"proxy-authorization: Basic ZXNzZW46cHc=\r\n\r\n"
    )
    assert proto.busy


def test_connect_headers_keep_a_given_host_and_authorization() -> None:
    given = [(b"host", b"elsewhere"), (b"proxy-authorization", b"Bearer t")]
    assert connect_headers(b"o:1", given, "u", "p") == given
    assert connect_headers(b"o:1", [], "u", None) == [(b"host", b"o:1")]


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
@pytest.mark.parametrize("status", [200, 201, 299])
def test_a_2xx_is_a_final_response_then_the_tunnel_with_what_followed(
    version: bytes, status: int
) -> None:
    proto, stream = connected()
    proto.receive_data(version + b" %d OK\r\ncontent-length: 99\r\n\r\nHTTP/1.1 2" % status)
    assert proto.events() == [Response(CONN, stream, True, status, (("content-length", "99"),))]
    assert proto.tunnel == Tunnel(stream, b"HTTP/1.1 2")
    assert proto.lost_streams() == ((), ())
    assert proto.close_reason is None
    assert not proto.busy
    proto.receive_data(b"more")  # the tunnel's bytes are not this protocol's any more
    assert proto.events() == []


def test_a_2xx_split_anywhere_opens_the_tunnel_once_its_head_is_whole() -> None:
    answer = b"HTTP/1.1 200 Connection established\r\n\r\nleft"
    head_end = answer.index(b"\r\n\r\n") + 4
    for cut in range(1, len(answer)):
        proto, stream = connected()
        proto.receive_data(answer[:cut])
        proto.receive_data(answer[cut:])
        assert proto.events() == [Response(CONN, stream, True, 200, ())]
        # The leftover is what came in the read that ended the head; the bytes
        # of later reads are the next protocol's (the driver feeds them there).
        leftover = answer[head_end:cut] if cut >= head_end else answer[head_end:]
        assert proto.tunnel == Tunnel(stream, leftover)


def test_a_refusal_is_an_ordinary_response_and_the_connection_goes_on() -> None:
    proto, stream = connected()
    proto.receive_data(
        b"HTTP/1.1 407 Auth\r\nproxy-authenticate: Basic\r\ncontent-length: 4\r\n\r\nnope"
    )
    assert proto.events() == [
        Response(
            CONN, stream, False, 407, (("proxy-authenticate", "Basic"), ("content-length", "4"))
        ),
        Data(CONN, stream, True, b"nope"),
    ]
    assert proto.tunnel is None
    assert not proto.busy
    again = StreamRef()
    assert proto.connect(again, "origin.test:443", [])
    assert proto.data_to_send().startswith(b"CONNECT ")


def test_connect_needs_an_idle_connection() -> None:
    proto = client()
    proto.request(StreamRef(), b"GET", b"/", [], None)
    refused = StreamRef()
    assert not proto.connect(refused, "origin.test:443", [])
    [error] = proto.events()
    assert isinstance(error, Error)
    assert error.stream is refused
    assert isinstance(error.reason, InvalidRequestError)


def test_requests_queued_behind_a_connect_fail_when_it_becomes_a_tunnel() -> None:
    proto, _ = connected()
    queued = StreamRef()
    proto.request(queued, b"GET", b"/", [], None)
    assert proto.data_to_send() == b""  # one cycle at a time: it waits
    proto.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    response, error = proto.events()
    assert isinstance(response, Response)
    assert isinstance(error, Error)
    assert error.stream is queued
    assert isinstance(error.reason, ConnectionClosed)
    assert "tunnel" in str(error.reason)


def test_no_http_keepalive_while_a_connect_waits_or_after_it() -> None:
    proto, _ = connected(keepalive=1.0)
    assert not proto.http_keepalive()
    proto.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    assert not proto.http_keepalive()
