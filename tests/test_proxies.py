"""Proxy URLs, the proxy environment variables and ProxyError (tether._proxies, _errors)."""

from __future__ import annotations

import pickle

import pytest

import tether
from tether import Proxy, ProxyError, ProxyScheme
from tether._proxies import parse_proxy, proxy_from_environment

HTTP, HTTPS, SOCKS5, SOCKS5H = (ProxyScheme.HTTP, ProxyScheme.HTTPS, ProxyScheme.SOCKS5,
                                ProxyScheme.SOCKS5H)  # fmt: skip


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy:3128", Proxy(HTTP, "proxy", 3128)),
        ("http://proxy", Proxy(HTTP, "proxy", 80)),
        ("http://proxy/", Proxy(HTTP, "proxy", 80)),
        ("HTTP://Proxy.Example.COM:8080", Proxy(HTTP, "proxy.example.com", 8080)),
        ("https://proxy", Proxy(HTTPS, "proxy", 443)),
        ("socks5://proxy", Proxy(SOCKS5, "proxy", 1080)),
        ("socks5h://proxy:1081", Proxy(SOCKS5H, "proxy", 1081)),
        ("http://10.0.0.1:3128", Proxy(HTTP, "10.0.0.1", 3128)),
        ("http://[::1]:3128", Proxy(HTTP, "::1", 3128)),
        ("socks5h://[fe80::1]", Proxy(SOCKS5H, "fe80::1", 1080)),
        ("http://user:pass@proxy:3128", Proxy(HTTP, "proxy", 3128, "user", "pass")),
        ("http://user@proxy", Proxy(HTTP, "proxy", 80, "user")),
        ("http://user:@proxy", Proxy(HTTP, "proxy", 80, "user", "")),
        ("http://us%40er:p%3Aa%2Fss%20@proxy", Proxy(HTTP, "proxy", 80, "us@er", "p:a/ss ")),
        ("http://j%C3%B6rg:%E2%82%AC@proxy", Proxy(HTTP, "proxy", 80, "jörg", "€")),
    ],
)
def test_parse_proxy(url, expected):
    assert parse_proxy(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socks4://proxy", "scheme 'socks4' is not supported"),
        ("socks4a://proxy", "is not supported"),
        ("ftp://proxy", "scheme 'ftp' is unknown"),
        ("proxy:3128", "has no scheme"),
        ("http://", "has no host"),
        ("http://:3128", "has no host"),
        ("http://proxy:0", "bad port '0'"),
        ("http://proxy:65536", "bad port"),
        ("http://proxy:http", "bad port"),
        ("http://proxy:-1", "bad port"),
        ("http://proxy/path", "only '/' may follow"),
        ("http://proxy?x=1", "only '/' may follow"),
        ("http://proxy/?x=1", "only '/' may follow"),
        ("http://proxy#frag", "only '/' may follow"),
        ("http://::1:80", "brackets"),
        ("http://[::1", "bracket"),
        ("http://[::1]x", "bracket"),
        ("http://[10.0.0.1]", "no IPv6 address"),
        ("http://pro xy", "not a host name"),
        ("http://:secret@proxy", "user name is empty"),
        ("http://user:%FF@proxy", "not UTF-8"),
    ],
)
def test_parse_proxy_refuses_with_a_clear_message(url, message):
    with pytest.raises(ValueError, match=message):
        parse_proxy(url)


def test_parse_proxy_wants_a_str():
    with pytest.raises(TypeError, match="must be a str"):
        parse_proxy(b"http://proxy")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:s3cret@proxy:0",
        "http://user:s3cret@proxy/path",
        "http://user:s3/cret@proxy",  # unencoded "/" in the password
        "http://user:s3?cret@proxy",
        "socks4://user:s3cret@proxy",
        "socks5://user:s3cret@proxy:1080/x",
        "socks5://user:" + "s3cret" * 50 + "@proxy",  # too long for RFC 1929
    ],
)
def test_the_password_is_never_in_a_message(url):
    with pytest.raises(ValueError) as raised:
        parse_proxy(url)
    assert "s3cret" not in str(raised.value)
    assert "s3" not in str(raised.value).replace("socks5", "")


def test_the_password_is_never_in_repr_or_url():
    proxy = parse_proxy("http://us%40er:s3cret@proxy:3128")
    assert proxy.password == "s3cret"
    assert "s3cret" not in repr(proxy)
    assert "s3cret" not in str(proxy)
    assert proxy.url == "http://us%40er@proxy:3128"
    # The url parses back to the same proxy, less the password.
    assert parse_proxy(proxy.url) == Proxy(HTTP, "proxy", 3128, "us@er")


@pytest.mark.parametrize(
    ("proxy", "url"),
    [
        (Proxy(HTTP, "proxy", 80), "http://proxy:80"),
        (Proxy(SOCKS5H, "::1", 1080, "u", "p"), "socks5h://u@[::1]:1080"),
    ],
)
def test_url(proxy, url):
    assert proxy.url == url


@pytest.mark.parametrize(
    ("scheme", "tls", "is_socks", "remote_dns"),
    [
        (HTTP, False, False, True),
        (HTTPS, True, False, True),
        (SOCKS5, False, True, False),
        (SOCKS5H, False, True, True),
    ],
)
def test_properties(scheme, tls, is_socks, remote_dns):
    proxy = Proxy(scheme, "proxy", 1)
    assert (proxy.tls, proxy.is_socks, proxy.remote_dns) == (tls, is_socks, remote_dns)


def test_socks_credentials_are_at_most_255_bytes():
    assert parse_proxy("socks5://" + "u" * 255 + ":" + "p" * 255 + "@proxy").username == "u" * 255
    with pytest.raises(ValueError, match="user name is longer than SOCKS5 allows"):
        Proxy(SOCKS5, "proxy", 1080, "u" * 256)
    with pytest.raises(ValueError, match="password is longer"):
        Proxy(SOCKS5H, "proxy", 1080, "u", "é" * 128)  # 256 bytes in UTF-8
    # HTTP Basic has no such limit.
    assert Proxy(HTTP, "proxy", 80, "u" * 1000).username == "u" * 1000


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("http", "proxy", 80), TypeError),
        ((HTTP, b"proxy", 80), TypeError),
        ((HTTP, "proxy", "80"), TypeError),
        ((HTTP, "proxy", True), TypeError),
        ((HTTP, "proxy", 0), ValueError),
        ((HTTP, "proxy:80", 80), ValueError),
        ((HTTP, "", 80), ValueError),
        ((HTTP, "proxy", 80, None, "pass"), ValueError),
    ],
)
def test_proxy_checks_its_fields(args, error):
    with pytest.raises(error):
        Proxy(*args)


def test_proxy_is_immutable_and_hashable():
    proxy = Proxy(HTTP, "proxy", 80)
    with pytest.raises(AttributeError):
        proxy.port = 81  # type: ignore[misc]
    assert {proxy: 1}[Proxy(HTTP, "proxy", 80)] == 1


# --- the environment --------------------------------------------------------------------------


def env_proxy(environ, *, tls=False, host="example.com", port=80):
    found = proxy_from_environment(tls=tls, host=host, port=port, environ=environ)
    return None if found is None else found.url


@pytest.mark.parametrize(
    ("environ", "tls", "expected"),
    [
        ({}, False, None),
        ({"http_proxy": "http://p:1"}, False, "http://p:1"),
        ({"http_proxy": "http://p:1"}, True, None),
        ({"https_proxy": "http://p:2"}, True, "http://p:2"),
        ({"https_proxy": "http://p:2"}, False, None),
        ({"HTTP_PROXY": "http://P:1"}, False, "http://p:1"),
        ({"HTTPS_PROXY": "http://p:2"}, True, "http://p:2"),
        ({"all_proxy": "socks5h://p:3"}, False, "socks5h://p:3"),
        ({"ALL_PROXY": "socks5h://p:3"}, True, "socks5h://p:3"),
        ({"http_proxy": "http://p:1", "all_proxy": "http://p:3"}, False, "http://p:1"),
        ({"https_proxy": "http://p:2", "all_proxy": "http://p:3"}, False, "http://p:3"),
        # Lower case wins over upper case.
        ({"http_proxy": "http://low:1", "HTTP_PROXY": "http://up:1"}, False, "http://low:1"),
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:1"}, True, "http://low:1"),
        # Empty is unset: the next one counts.
        ({"http_proxy": "", "HTTP_PROXY": "http://up:1"}, False, "http://up:1"),
        ({"http_proxy": " ", "all_proxy": "http://all:1"}, False, "http://all:1"),
        ({"https_proxy": "", "HTTPS_PROXY": ""}, True, None),
        # No scheme: http, as curl.
        ({"http_proxy": "p:3128"}, False, "http://p:3128"),
        ({"http_proxy": "u:pw@p"}, False, "http://u@p:80"),
        # httpoxy: in a CGI program HTTP_PROXY is a request header.
        ({"HTTP_PROXY": "http://evil:1", "REQUEST_METHOD": "GET"}, False, None),
        ({"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}, False, "http://p:1"),
        ({"HTTPS_PROXY": "http://p:2", "REQUEST_METHOD": "GET"}, True, "http://p:2"),
    ],
)
def test_proxy_from_environment(environ, tls, expected):
    assert env_proxy(environ, tls=tls) == expected


NO_PROXY_CASES = [
    # (no_proxy, host, port, bypassed)
    ("*", "example.com", 80, True),
    ("example.com", "example.com", 80, True),
    ("example.com", "EXAMPLE.com.", 80, True),
    ("example.com", "www.example.com", 80, True),
    (".example.com", "www.example.com", 80, True),
    (".example.com", "example.com", 80, True),
    ("*.example.com", "a.b.example.com", 80, True),
    ("Example.COM", "example.com", 80, True),
    ("example.com", "notexample.com", 80, False),
    ("example.com", "example.com.evil", 80, False),
    ("www.example.com", "example.com", 80, False),
    ("other.org,example.com", "example.com", 80, True),
    ("other.org, example.com", "example.com", 80, True),
    ("other.org example.com", "example.com", 80, True),
    (" , ,other.org,,", "example.com", 80, False),
    ("example.com:8080", "example.com", 8080, True),
    ("example.com:8080", "example.com", 80, False),
    ("10.1.2.3", "10.1.2.3", 80, True),
    ("10.1.2.3", "10.1.2.4", 80, False),
    ("10.0.0.0/8", "10.200.0.1", 80, True),
    ("10.0.0.0/8", "11.0.0.1", 80, False),
    ("10.0.0.0/8", "ten.example", 80, False),  # names are not resolved
    ("192.168.0.0/16:443", "192.168.1.1", 443, True),
    ("192.168.0.0/16:443", "192.168.1.1", 80, False),
    ("::1", "::1", 80, True),
    ("[::1]", "::1", 80, True),
    ("[::1]:8080", "::1", 8080, True),
    ("[::1]:8080", "::1", 80, False),
    ("fe80::/10", "fe80::1", 80, True),
    ("fe80::/10", "fec0::1", 80, False),
    ("localhost,127.0.0.0/8,::1", "127.0.0.1", 80, True),
    ("example.com:x", "example.com", 80, False),  # a bad port matches nothing
]


@pytest.mark.parametrize(("no_proxy", "host", "port", "bypassed"), NO_PROXY_CASES)
def test_no_proxy(no_proxy, host, port, bypassed):
    environ = {"http_proxy": "http://p:1", "no_proxy": no_proxy}
    assert env_proxy(environ, host=host, port=port) == (None if bypassed else "http://p:1")


def test_no_proxy_lower_case_wins_and_empty_is_unset():
    environ = {"http_proxy": "http://p:1", "no_proxy": "other.org", "NO_PROXY": "example.com"}
    assert env_proxy(environ) == "http://p:1"
    environ = {"http_proxy": "http://p:1", "no_proxy": "", "NO_PROXY": "example.com"}
    assert env_proxy(environ) is None


def test_a_bad_value_names_the_variable_not_the_password():
    with pytest.raises(ValueError, match=r"\$HTTPS_PROXY: .*scheme 'socks4'") as raised:
        env_proxy({"HTTPS_PROXY": "socks4://u:s3cret@p"}, tls=True)
    assert "s3cret" not in str(raised.value)


def test_os_environ_is_the_default(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", "http://from-env:3128")
    found = proxy_from_environment(tls=False, host="example.com", port=80)
    assert found == Proxy(HTTP, "from-env", 3128)


# --- ProxyError ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        ProxyError("refused", proxy="http://u@p:3128", status=407,
                   headers=((b"proxy-authenticate", b'Basic realm="x"'),)),
        ProxyError("refused", proxy="socks5://p:1080", reply=0x05),
        ProxyError("bad answer", proxy="socks5h://p:1080"),
    ],
)  # fmt: skip
def test_proxy_error_survives_pickle(error):
    error.add_note("attempt 3")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is ProxyError
    assert str(copy) == str(error)
    assert (copy.proxy, copy.status, copy.reply, copy.headers) == (
        error.proxy,
        error.status,
        error.reply,
        error.headers,
    )
    assert copy.__notes__ == ["attempt 3"]


def test_proxy_error_is_a_reported_error():
    error = ProxyError("refused", proxy="http://p:3128", status=502)
    assert isinstance(error, tether.ReportedError)
    exhausted = tether.RetriesExhausted(3, error)
    assert exhausted.last_reason is error
