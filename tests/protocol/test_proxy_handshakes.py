"""The sans-I/O proxy handshakes: HTTP CONNECT and SOCKS5, fed bytes directly.

Each scenario is a script of exchanges (what tether must send, what the
proxy answers) plus the origin's bytes that ride behind the last answer.
Fed whole, cut at every position, byte by byte or at random places, a
handshake must send the same bytes, open the tunnel at the same point and
hand over the same origin bytes. Refusals and malformed answers raise a
``ProxyError`` whatever the cuts; nothing waits forever or buffers without
bound.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether import Proxy, ProxyError, ProxyScheme
from tether._proxies import parse_proxy
from tether.protocol import (
    HandshakeState,
    HttpConnect,
    ProxyHandshake,
    Socks5,
    Socks5Step,
    handshake_for,
)

Split = Callable[[bytes], list[bytes]]


@dataclass(frozen=True)
class Scenario:
    name: str
    make: Callable[[], ProxyHandshake]
    script: tuple[tuple[bytes, bytes], ...]  # (tether sends, the proxy answers)
    origin: bytes = b""  # the origin's bytes right behind the last answer


def drive(hs: ProxyHandshake, script, origin: bytes, split: Split) -> bytes:
    """Run the script; return what reached the origin side (leftover + later chunks)."""
    sent = hs.start()
    for i, (expected, answer) in enumerate(script):
        assert sent == expected, f"exchange {i}"
        last = i == len(script) - 1
        chunks = split(answer + origin if last else answer)
        sent = b""
        for k, chunk in enumerate(chunks):
            sent += hs.receive(chunk)
            if hs.done:
                assert last, f"done too early, in exchange {i}"
                return hs.leftover() + b"".join(chunks[k + 1 :])
        assert not hs.done
        assert hs.state is HandshakeState.WAITING
    raise AssertionError("the script ended and the tunnel is not open")


def whole(data: bytes) -> list[bytes]:
    return [data] if data else []


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def cut_at(position: int) -> Split:
    return lambda data: [c for c in (data[:position], data[position:]) if c]


# --- scenarios -----------------------------------------------------------------------------------

HTTP_PROXY = parse_proxy("http://proxy:3128")
AUTH_PROXY = parse_proxy("http://us%C3%A9r:p%40ss@proxy:3128")
SOCKS = parse_proxy("socks5h://proxy")
SOCKS_AUTH = parse_proxy("socks5://user:secret@proxy")

BASIC = b"Basic " + base64.b64encode("usér:p@ss".encode())
CONNECT = b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
CONNECT_AUTH = (
    b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n"
    b"proxy-authorization: " + BASIC + b"\r\n\r\n"
)
ORIGIN = b"\x16\x03\x01\x00\x05hello"  # what a TLS server could send first

NO_AUTH_OFFER = b"\x05\x01\x00"
AUTH_OFFER = b"\x05\x02\x02\x00"
USER_PASS = b"\x01\x04user\x06secret"
REQUEST_NAME = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"
REQUEST_V4 = b"\x05\x01\x00\x01\x0a\x00\x00\x01\x00\x50"
REQUEST_V6 = b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01" + b"\x1f\x90"
REPLY_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40"
REPLY_V6 = b"\x05\x00\x00\x04" + bytes(range(16)) + b"\x9c\x40"
REPLY_NAME = b"\x05\x00\x00\x03\x09proxy.lan\x9c\x40"
REPLY_LONG_NAME = b"\x05\x00\x00\x03\xff" + b"n" * 255 + b"\x9c\x40"
REPLY_EMPTY_NAME = b"\x05\x00\x00\x03\x00\x9c\x40"


def http(proxy: Proxy = HTTP_PROXY, host: str = "example.com", port: int = 443, **kw):
    return lambda: HttpConnect(proxy, host, port, **kw)


def socks(proxy: Proxy = SOCKS, host: str = "example.com", port: int = 443):
    return lambda: Socks5(proxy, host, port)


SCENARIOS = [
    Scenario("http-1.1", http(), ((CONNECT, b"HTTP/1.1 200 Connection established\r\n\r\n"),)),
    Scenario(
        "http-1.0-with-origin-bytes",
        http(),
        ((CONNECT, b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\n"),),
        ORIGIN,
    ),
    Scenario(
        "http-204-content-length-ignored",
        http(),
        ((CONNECT, b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),),
        ORIGIN,
    ),
    Scenario(
        "http-1xx-first",
        http(),
        (
            (
                CONNECT,
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            ),
        ),
        ORIGIN,
    ),
    Scenario(
        "http-basic", http(AUTH_PROXY), ((CONNECT_AUTH, b"HTTP/1.1 200 OK\r\n\r\n"),), ORIGIN
    ),
    Scenario(
        "http-ipv6-and-headers",
        http(host="::1", port=8443, headers=[("User-Agent", "tether")]),
        (
            (
                b"CONNECT [::1]:8443 HTTP/1.1\r\nhost: [::1]:8443\r\nuser-agent: tether\r\n\r\n",
                b"HTTP/1.1 200 OK\r\n\r\n",
            ),
        ),
        ORIGIN,
    ),
    Scenario("socks-v4-reply", socks(), ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_NAME, REPLY_V4))),
    Scenario(
        "socks-v6-reply",
        socks(),
        ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_NAME, REPLY_V6)),
        ORIGIN,
    ),
    Scenario(
        "socks-name-reply",
        socks(),
        ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_NAME, REPLY_NAME)),
        ORIGIN,
    ),
    Scenario(
        "socks-255-byte-name-reply",
        socks(),
        ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_NAME, REPLY_LONG_NAME)),
        ORIGIN,
    ),
    Scenario(
        "socks-empty-name-reply",
        socks(),
        ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_NAME, REPLY_EMPTY_NAME)),
        b"\x05\x00\x00\x01",  # origin bytes that look like another reply stay the origin's
    ),
    Scenario(
        "socks-ipv4-target",
        socks(host="10.0.0.1", port=80),
        ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_V4, REPLY_V4)),
        ORIGIN,
    ),
    Scenario(
        "socks-ipv6-target",
        socks(host="::1", port=8080),
        ((NO_AUTH_OFFER, b"\x05\x00"), (REQUEST_V6, REPLY_V6)),
        ORIGIN,
    ),
    Scenario(
        "socks-user-password",
        socks(SOCKS_AUTH),
        ((AUTH_OFFER, b"\x05\x02"), (USER_PASS, b"\x01\x00"), (REQUEST_NAME, REPLY_V4)),
        ORIGIN,
    ),
    Scenario(
        "socks-credentials-not-needed",
        socks(SOCKS_AUTH),
        ((AUTH_OFFER, b"\x05\x00"), (REQUEST_NAME, REPLY_NAME)),
        ORIGIN,
    ),
]
SCENARIO_IDS = [s.name for s in SCENARIOS]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
@pytest.mark.parametrize("split", [whole, bytewise], ids=["whole", "bytewise"])
def test_the_tunnel_opens(scenario: Scenario, split: Split):
    hs = scenario.make()
    assert drive(hs, scenario.script, scenario.origin, split) == scenario.origin
    assert hs.state is HandshakeState.DONE
    assert hs.leftover() == (scenario.origin if split is whole else b"")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_a_cut_anywhere_changes_nothing(scenario: Scenario):
    last = scenario.script[-1][1] + scenario.origin
    for position in range(1, len(last)):
        hs = scenario.make()
        assert drive(hs, scenario.script, scenario.origin, cut_at(position)) == scenario.origin


@settings(max_examples=200, deadline=None)
@given(
    scenario=st.sampled_from(SCENARIOS),
    cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=30),
)
def test_random_cuts_change_nothing(scenario: Scenario, cuts: list[int]):
    def split(data: bytes) -> list[bytes]:
        points = sorted({c for c in cuts if c < len(data)})
        edges = [0, *points, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(edges) if b > a]

    assert drive(scenario.make(), scenario.script, scenario.origin, split) == scenario.origin


# --- refusals and malformed answers --------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    name: str
    make: Callable[[], ProxyHandshake]
    before: tuple[bytes, ...]  # good answers first
    answer: bytes
    message: str
    status: int | None = None
    reply: int | None = None


SOCKS_REPLIES = [
    (0x01, "general SOCKS server failure"),
    (0x02, "connection not allowed by ruleset"),
    (0x03, "network unreachable"),
    (0x04, "host unreachable"),
    (0x05, "connection refused"),
    (0x06, "TTL expired"),
    (0x07, "command not supported"),
    (0x08, "address type not supported"),
    (0x09, "an unassigned code"),
]

REFUSALS = [
    Refusal(
        "http-407",
        http(),
        (),
        b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="r"\r\n'
        b"Content-Length: 0\r\n\r\n",
        r"407 Proxy Authentication Required; it wants credentials \(Proxy-Authenticate: Basic "
        r'realm="r"\): give them in the URL',
        status=407,
    ),
    Refusal(
        "http-407-bad-credentials",
        http(AUTH_PROXY),
        (),
        b"HTTP/1.0 407 Nope\r\nProxy-Authenticate: Basic\r\n\r\n",
        "it refused the credentials of user 'usér'",
        status=407,
    ),
    Refusal("http-502", http(), (), b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "502 Bad Gateway", 502),
    Refusal("http-403-1.0", http(), (), b"HTTP/1.0 403 Forbidden\r\n\r\n", "403 Forbidden", 403),
    Refusal("http-301", http(), (), b"HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n", "301", 301),
    Refusal("http-not-http", http(), (), b"SSH-2.0-OpenSSH\r\n\r\n", "no HTTP response"),
    Refusal("http-bad-version", http(), (), b"HTTP/2.0 200 OK\r\n\r\n", r"no HTTP/1.x .*2\.0"),
    Refusal("http-socks-answer", http(), (), b"\x05\x00\r\n\r\n", "no HTTP response"),
    Refusal("http-bad-header", http(), (), b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "no HTTP"),
    *[
        Refusal(
            f"socks-reply-{code:#04x}",
            socks(),
            (b"\x05\x00",),
            bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]),
            rf"refused CONNECT example.com:443: {meaning}.*\(reply {code:#04x}\)",
            reply=code,
        )
        for code, meaning in SOCKS_REPLIES
    ],
    Refusal(
        "socks-no-acceptable-method",
        socks(),
        (),
        b"\x05\xff",
        "accepts none of the authentication methods offered; give a user name and password",
    ),
    Refusal(
        "socks-no-acceptable-method-with-credentials",
        socks(SOCKS_AUTH),
        (),
        b"\x05\xff",
        r"accepts none of the authentication methods offered$",
    ),
    Refusal("socks-method-not-offered", socks(), (), b"\x05\x02", "method 0x02, which was not"),
    Refusal("socks-gssapi", socks(SOCKS_AUTH), (), b"\x05\x01", "method 0x01, which was not"),
    Refusal(
        "socks-auth-refused",
        socks(SOCKS_AUTH),
        (b"\x05\x02",),
        b"\x01\x01",
        r"refused the user name and password of 'user' \(RFC 1929 status 0x01\)",
    ),
    Refusal("socks-auth-bad-version", socks(SOCKS_AUTH), (b"\x05\x02",), b"\x05\x00", "0x05"),
    Refusal("socks-method-bad-version", socks(), (), b"\x04\x00", "version 0x04, not 0x05"),
    Refusal("socks-http-answer", socks(), (), b"HTTP/1.1 400 Bad\r\n\r\n", "an HTTP proxy"),
    Refusal(
        "socks-reply-bad-version",
        socks(),
        (b"\x05\x00",),
        REPLY_V4.replace(b"\x05", b"\x04", 1),
        "version 0x04",
    ),
    Refusal(
        "socks-unknown-atyp",
        socks(),
        (b"\x05\x00",),
        b"\x05\x00\x00\x02\x00\x00\x00\x00\x00\x00",
        "unknown address type 0x02",
    ),
    Refusal(
        "socks-method-too-long", socks(), (), b"\x05\x00\x00", "sent 3 bytes for the|version 0x00"
    ),
    Refusal(
        "socks-auth-too-long",
        socks(SOCKS_AUTH),
        (b"\x05\x02",),
        b"\x01\x00\x07",
        "sent 3|version 0x07",
    ),
]


def refused(refusal: Refusal, split: Split) -> ProxyError:
    hs = refusal.make()
    hs.start()
    for answer in refusal.before:
        hs.receive(answer)
    with pytest.raises(ProxyError, match=refusal.message) as raised:  # noqa: PT012
        for chunk in split(refusal.answer):
            hs.receive(chunk)
    assert hs.state is HandshakeState.FAILED
    with pytest.raises(RuntimeError, match="failed"):
        hs.receive(b"more")
    return raised.value


@pytest.mark.parametrize("refusal", REFUSALS, ids=[r.name for r in REFUSALS])
@pytest.mark.parametrize("split", [whole, bytewise], ids=["whole", "bytewise"])
def test_refusals_and_malformed_answers_raise_proxy_error(refusal: Refusal, split: Split):
    error = refused(refusal, split)
    proxy = refusal.make().proxy
    assert error.proxy == proxy.url
    assert str(error).startswith(f"proxy {proxy.url}: ")
    assert (error.status, error.reply) == (refusal.status, refusal.reply)
    assert "secret" not in str(error)
    assert "p@ss" not in str(error)


def test_a_refusal_keeps_the_response_headers():
    error = refused(REFUSALS[0], whole)
    assert error.headers == (
        (b"proxy-authenticate", b'Basic realm="r"'),
        (b"content-length", b"0"),
    )


@pytest.mark.parametrize("split", [whole, bytewise], ids=["whole", "bytewise"])
def test_a_socks_refusal_is_reported_without_waiting_for_the_address(split: Split):
    # Some proxies send only VER REP on failure, then close.
    hs = Socks5(SOCKS, "example.com", 443)
    hs.start()
    hs.receive(b"\x05\x00")
    with pytest.raises(ProxyError, match="connection refused") as raised:  # noqa: PT012
        for chunk in split(b"\x05\x05"):
            hs.receive(chunk)
    assert raised.value.reply == 0x05


def first_bytes(scenario: Scenario, exchanges: int) -> ProxyHandshake:
    hs = scenario.make()
    hs.start()
    for _, answer in scenario.script[:exchanges]:
        hs.receive(answer)
    return hs


@pytest.mark.parametrize("scenario", SCENARIOS, ids=SCENARIO_IDS)
def test_the_proxy_closing_midway_is_a_proxy_error(scenario: Scenario):
    # At every exchange, with nothing or part of the answer received.
    for exchange, (_, answer) in enumerate(scenario.script):
        for received in (b"", answer[:-1]):
            hs = first_bytes(scenario, exchange)
            if received:
                hs.receive(received)
            with pytest.raises(ProxyError, match="closed the connection before the tunnel"):
                hs.receive(b"")
            assert hs.state is HandshakeState.FAILED


# --- bounds --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"x-filler: " + b"a" * 1000 + b"\r\n", id="header"),
        pytest.param(b"HTTP/1.1 200 OK\r\n" + b"x: y\r\n" * 200, id="many-headers"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" * 50, id="1xx-flood"),
    ],
)
@pytest.mark.parametrize("max_head", [None, 4096])
def test_an_endless_http_answer_is_refused_past_max_head(stream: bytes, max_head: int | None):
    kwargs = {} if max_head is None else {"max_head": max_head}
    hs = HttpConnect(HTTP_PROXY, "example.com", 443, **kwargs)
    limit = max_head or 16 * 1024
    hs.start()
    fed = 0
    with pytest.raises(ProxyError, match=f"longer than {limit} bytes"):  # noqa: PT012
        while fed <= 4 * limit:
            hs.receive(stream)
            fed += len(stream)
    assert fed <= limit + len(stream)  # refused as soon as the bound was crossed


def test_a_head_just_under_max_head_is_fine():
    head = b"HTTP/1.1 200 OK\r\nx: " + b"a" * 900 + b"\r\n\r\n"
    hs = HttpConnect(HTTP_PROXY, "example.com", 443, max_head=len(head))
    hs.start()
    hs.receive(head + b"origin")
    assert hs.done
    assert hs.leftover() == b"origin"


def test_socks_garbage_is_refused_at_once():
    hs = Socks5(SOCKS, "example.com", 443)
    hs.start()
    with pytest.raises(ProxyError):
        hs.receive(b"\x05" * 100_000)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=600),
    scheme=st.sampled_from(list(ProxyScheme)),
    chunk=st.integers(min_value=1, max_value=64),
)
def test_arbitrary_answers_end_in_done_failed_or_a_wait_never_another_exception(
    data: bytes, scheme: ProxyScheme, chunk: int
):
    hs = handshake_for(Proxy(scheme, "proxy", 1, "u", "p"), "example.com", 443)
    hs.start()
    for i in range(0, len(data), chunk):
        try:
            hs.receive(data[i : i + chunk])
        except ProxyError:
            assert hs.state is HandshakeState.FAILED
            return
        if hs.done:
            return
    assert hs.state is HandshakeState.WAITING


# --- requests and the API ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "request_bytes"),
    [
        ("example.com", REQUEST_NAME),
        ("10.0.0.1", b"\x05\x01\x00\x01\x0a\x00\x00\x01\x01\xbb"),
        ("::1", b"\x05\x01\x00\x04" + b"\x00" * 15 + b"\x01\x01\xbb"),
        ("bücher.example", b"\x05\x01\x00\x03\x15xn--bcher-kva.example\x01\xbb"),
    ],
)
def test_the_socks_request_names_the_target(host: str, request_bytes: bytes):
    hs = Socks5(SOCKS, host, 443)
    assert hs.start() == NO_AUTH_OFFER
    assert hs.step is Socks5Step.METHOD
    assert hs.receive(b"\x05\x00") == request_bytes
    assert hs.step is Socks5Step.REPLY


def test_socks_sends_user_and_password_as_rfc_1929_says():
    proxy = Proxy(ProxyScheme.SOCKS5H, "proxy", 1080, "jörg", "")
    hs = Socks5(proxy, "example.com", 443)
    assert hs.start() == AUTH_OFFER
    assert hs.receive(b"\x05\x02") == b"\x01\x05j\xc3\xb6rg\x00"
    assert hs.step is Socks5Step.AUTH


def test_user_headers_take_the_place_of_ours():
    hs = HttpConnect(
        AUTH_PROXY,
        "example.com",
        443,
        headers={"Host": "other:1", "Proxy-Authorization": "Bearer t"},
    )
    assert hs.start() == (
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: other:1\r\n"
        b"proxy-authorization: Bearer t\r\n\r\n"
    )


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: Socks5(SOCKS, ".".join(["ü" * 10 + "a" * 30] * 6), 443), ValueError, "255"),
        (lambda: Socks5(SOCKS, "ü" * 63, 443), ValueError, "no IDNA form"),
        (lambda: Socks5(SOCKS, "http://example.com", 443), ValueError, "is a URL"),
        (lambda: Socks5(SOCKS, "example.com", 0), ValueError, "port"),
        (lambda: HttpConnect(HTTP_PROXY, "exa mple", 443), ValueError, "not a host name"),
        (lambda: HttpConnect(HTTP_PROXY, "example.com", 70000), ValueError, "port"),
        (lambda: HttpConnect(HTTP_PROXY, "example.com", 443, max_head=0), ValueError, "max_head"),
        (
            lambda: HttpConnect(HTTP_PROXY, "e.com", 443, headers=[("a\r\nb", "c")]),
            ValueError,
            "header",
        ),
    ],
)
def test_a_target_that_cannot_be_sent_is_refused_at_construction(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_calls_out_of_order_are_programming_errors():
    hs = Socks5(SOCKS, "example.com", 443)
    with pytest.raises(RuntimeError, match="new"):
        hs.receive(b"\x05\x00")
    hs.start()
    with pytest.raises(RuntimeError, match="waiting"):
        hs.start()
    hs.receive(b"\x05\x00")
    hs.receive(REPLY_V4)
    assert hs.done
    assert hs.leftover() == b""
    with pytest.raises(RuntimeError, match="done"):
        hs.receive(b"origin")


@pytest.mark.parametrize(
    ("url", "cls"),
    [
        ("http://p", HttpConnect),
        ("https://p", HttpConnect),
        ("socks5://p", Socks5),
        ("socks5h://p", Socks5),
    ],
)
def test_handshake_for(url: str, cls: type[ProxyHandshake]):
    hs = handshake_for(parse_proxy(url), "example.com", 443)
    assert type(hs) is cls
    assert (hs.host, hs.port, hs.target) == ("example.com", 443, "example.com:443")
    assert hs.state is HandshakeState.NEW
