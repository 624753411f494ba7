"""Argument checks that make a bad request call raise in the caller's thread."""

from __future__ import annotations

import pytest

from tether import InvalidRequestError
from tether.protocol import (
    check_body,
    check_framing,
    check_host,
    check_method,
    check_path,
    host_authority,
    normalize_headers,
)

# -- normalize_headers -------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb", "a\x00b", b"a\r\nb"])
def test_header_values_with_cr_lf_nul_are_rejected(value):
    with pytest.raises(InvalidRequestError, match="x-test"):
        normalize_headers([("x-test", value)])


@pytest.mark.parametrize(
    "name", ["bad name", "colon:", "", "tab\t", "é", b"semi;colon", "x\r\n", "x\n", b"x\n"]
)
def test_non_token_header_names_are_rejected(name):
    with pytest.raises(InvalidRequestError):
        normalize_headers([(name, "v")])


def test_invalid_request_error_is_also_a_value_error():
    with pytest.raises(ValueError, match="invalid header name"):
        normalize_headers({"bad name": "v"})


@pytest.mark.parametrize(
    "headers",
    [[("only-name",)], [("a", "b", "c")], ["ab"], [b"ab"], [None], [{"a": "b"}]],
)
def test_items_that_are_not_pairs_are_rejected(headers):
    with pytest.raises(TypeError, match="pair"):
        normalize_headers(headers)


@pytest.mark.parametrize("headers", ["accept: */*", b"accept: */*", 42])
def test_str_bytes_and_non_iterables_are_rejected_at_top_level(headers):
    with pytest.raises(TypeError, match="list of"):
        normalize_headers(headers)


@pytest.mark.parametrize("pair", [(1, "v"), ("n", 2), ("n", None)])
def test_names_and_values_must_be_str_or_bytes(pair):
    with pytest.raises(TypeError, match="str or bytes"):
        normalize_headers([pair])


def test_dict_and_list_give_the_same_lower_cased_bytes():
    expected = [(b"content-type", b"text/plain"), (b"x-trace-id", b"abc")]
    assert normalize_headers({"Content-Type": "text/plain", "X-Trace-ID": b"abc"}) == expected
    assert normalize_headers([("Content-Type", "text/plain"), (b"X-TRACE-ID", "abc")]) == expected
    assert normalize_headers((["content-type", "text/plain"], ["x-trace-id", "abc"])) == expected


def test_none_and_empty_give_no_headers():
    assert normalize_headers(None) == []
    assert normalize_headers({}) == []
    assert normalize_headers([]) == []


def test_values_keep_their_bytes_and_order_but_lose_outer_whitespace():
    headers = [("Accept", " text/html\t"), ("accept", "caf\xe9"), ("x", "a\tb c")]
    assert normalize_headers(headers) == [
        (b"accept", b"text/html"),
        (b"accept", b"caf\xe9"),
        (b"x", b"a\tb c"),
    ]


def test_non_latin1_str_value_asks_for_encoding():
    with pytest.raises(InvalidRequestError, match="latin-1"):
        normalize_headers([("x-name", "名前")])


# -- check_body --------------------------------------------------------------------------


def test_str_body_is_rejected_with_a_hint_to_encode():
    with pytest.raises(TypeError, match=r"encode"):
        check_body("text")


@pytest.mark.parametrize("body", [1, ["a"], {"a": 1}, object()])
def test_other_bodies_are_rejected(body):
    with pytest.raises(TypeError, match="body must be bytes"):
        check_body(body)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (None, None),
        (b"", b""),
        (b"abc", b"abc"),
        (bytearray(b"ab"), b"ab"),
        (memoryview(b"m"), b"m"),
    ],
)
def test_bytes_like_bodies_become_bytes(body, expected):
    result = check_body(body)
    assert result == expected
    assert result is None or type(result) is bytes


# -- check_method / check_path --------------------------------------------------------------


@pytest.mark.parametrize("method", ["GE T", "GET\r\n", "GET\n", "", "GET\x00", "G\tET", "GÉT"])
def test_methods_that_are_not_tokens_are_rejected(method):
    with pytest.raises(InvalidRequestError):
        check_method(method)


@pytest.mark.parametrize("method", ["GET", "PURGE", b"M-SEARCH", "x.custom"])
def test_token_methods_are_accepted_as_bytes(method):
    assert check_method(method) == (method if isinstance(method, bytes) else method.encode())


@pytest.mark.parametrize("path", ["/a b", "/a\r\nHost: evil", "/\x00", "/tab\t", "", "/\x7f"])
def test_paths_with_spaces_or_controls_are_rejected(path):
    with pytest.raises(InvalidRequestError, match="invalid request path"):
        check_path(path)


@pytest.mark.parametrize("check", [check_method, check_path])
def test_method_and_path_must_be_str_or_bytes(check):
    with pytest.raises(TypeError, match="must be str or bytes"):
        check(3)


@pytest.mark.parametrize("path", ["/", "/a/b?q=1&r=%20", "*", "http://h.test/x", b"/raw"])
def test_valid_paths_are_accepted_as_bytes(path):
    assert check_path(path) == (path if isinstance(path, bytes) else path.encode())


# -- check_framing (content-length, transfer-encoding) ----------------------------------


@pytest.mark.parametrize(
    ("headers", "body", "streamed"),
    [
        ([], b"abc", False),
        ([("content-length", "3")], b"abc", False),
        ([("Content-Length", "0")], None, False),
        ([("transfer-encoding", "Chunked")], b"abc", False),
        ([("transfer-encoding", "chunked")], None, True),
        ([("content-length", "12345")], None, True),  # the pieces come later
    ],
)
def test_framing_headers_that_frame_the_body_are_accepted(headers, body, streamed):
    check_framing(normalize_headers(headers), body, streamed=streamed)


@pytest.mark.parametrize("value", ["", "+3", "3.0", "0x3", "3, 3", "1" * 20])
def test_a_content_length_must_be_one_decimal_integer(value):
    with pytest.raises(InvalidRequestError, match="content-length"):
        check_framing(normalize_headers([("content-length", value)]), None, streamed=True)


# -- check_host (tether.open's host) ---------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.0.0.1", "::1", "fe80::1%eth0", "example.com", "example.com.", "my_host",
     "xn--bcher-kva.de", "bücher.de", "a" * 63 + ".org", "2001:db8::8:800:200c:417a"],
)  # fmt: skip
def test_host_names_and_ip_addresses_are_accepted(host):
    check_host(host, 80)


@pytest.mark.parametrize(
    ("host", "port", "told"),
    [
        ("ws://host/x", 80, "is a URL; give the host name and the port: "
         "tether.open('host', 80), then conn.ws_upgrade('/x')"),
        ("http://example.com:8080/a?b=1", 80, "is a URL; give the host name and the port: "
         "tether.open('example.com', 8080), then conn.get('/a?b=1')"),
        ("wss://example.com", 443, "is a URL; give the host name and the port: "
         "tether.open('example.com', 443, transport='tls')"),
        ("http://", 80, "is a URL; give the host name and the port: give one, e.g. "
         "tether.open('example.com', 80) or tether.open('127.0.0.1', 80)"),
        ("host:8080", 80, "has a port glued on; give the port apart: tether.open('host', 8080)"),
        ("127.0.0.1:80", 80, "has a port glued on; give the port apart: "
         "tether.open('127.0.0.1', 80)"),
        ("[::1]", 80, "has brackets; give the IPv6 address without them, and the port apart: "
         "tether.open('::1', 80)"),
        ("[::1]:8080", 80, "has brackets; give the IPv6 address without them, and the port "
         "apart: tether.open('::1', 8080)"),
        (" example.com\n", 80, "has white space around it: tether.open('example.com', 80)"),
        ("example.com/x", 80, "has a path; give the host name alone: "
         "tether.open('example.com', 80), then conn.get('/x')"),
    ],
)  # fmt: skip
def test_a_host_that_is_not_one_says_what_to_pass_instead(host, port, told):
    with pytest.raises(ValueError) as raised:
        check_host(host, port)
    assert str(raised.value) == f"host {host!r} {told}"


@pytest.mark.parametrize(
    "host",
    ["a..b", ".", ".example.com", "exa mple.com", "user@host", "host:http", "host:0",
     "[example.com]", "[::1]:x", "a" * 64 + ".org", "a." * 127 + "a", "host?x", "/x",
     "tab\there"],
)  # fmt: skip
def test_other_malformed_hosts_are_refused_with_examples(host):
    with pytest.raises(ValueError, match=r"is not a host name or an IP address: give one, e\.g"):
        check_host(host, 80)


@pytest.mark.parametrize(
    ("host", "port", "tls", "header"),
    [
        ("example.com", 80, False, "example.com"),
        ("example.com", 443, True, "example.com"),
        ("example.com", 443, False, "example.com:443"),
        ("example.com", 80, True, "example.com:80"),
        ("127.0.0.1", 8080, False, "127.0.0.1:8080"),
        ("::1", 80, False, "[::1]"),
        ("::1", 8443, True, "[::1]:8443"),
    ],
)
def test_the_host_header_has_the_port_only_when_not_the_default(
    host: str, port: int, tls: bool, header: str
) -> None:
    assert host_authority(host, port, tls=tls) == header
