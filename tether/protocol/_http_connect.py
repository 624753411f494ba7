"""HTTP CONNECT (RFC 9110 9.3.6): ask an HTTP proxy for a tunnel to ``host:port``.

h11 writes the request and reads the answer: it knows that a 2xx to
CONNECT switches the connection to the tunnel (no body, whatever the
headers say) and hands over the bytes that came after the head. An
HTTP/1.0 answer is accepted, as Gun does (many proxies still say
``HTTP/1.0 200 Connection established``). Interim 1xx answers are skipped.
"""

from __future__ import annotations

import h11

from tether._errors import ProxyError
from tether._proxies import Proxy
from tether.protocol._client import connect_headers
from tether.protocol._proxy_handshake import ProxyHandshake
from tether.protocol._validate import check_host, normalize_headers

__all__ = ["DEFAULT_MAX_HEAD", "HttpConnect"]

DEFAULT_MAX_HEAD = 16 * 1024
"""The default bound of the proxy's answer head, 1xx included (h11's own default)."""

# A reason phrase or header value is the proxy's text: shown, but short.
_SHOWN = 200


def _shown(value: bytes) -> str:
    text = value.decode("latin-1")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


class HttpConnect(ProxyHandshake):
    """``CONNECT host:port`` to an HTTP proxy; a 2xx opens the tunnel.

    Sends ``Host`` and, when the proxy has a user name,
    ``Proxy-Authorization: Basic`` (RFC 7617, UTF-8), unless ``headers``
    (extra request headers, as ``normalize_headers`` takes them) has its
    own. Any other final status raises a ``ProxyError`` with ``status``
    and the response's ``headers`` (407: the proxy wants credentials,
    ``Proxy-Authenticate`` says which). Not thread-safe (see the base).

    Args:
        proxy: the proxy (``http://`` or ``https://``; TLS to it is the caller's).
        host: the origin's host name or IP address.
        port: the origin's port.
        headers: extra headers for the CONNECT request.
        max_head: the bound of the answer's head, interim 1xx answers
            included; a longer one is a ``ProxyError``.
    """

    def __init__(
        self,
        proxy: Proxy,
        host: str,
        port: int,
        headers: object = (),
        *,
        max_head: int = DEFAULT_MAX_HEAD,
    ) -> None:
        super().__init__(proxy, host, port)
        check_host(host, port)
        if max_head < 1:
            raise ValueError(f"max_head must be positive, not {max_head}")
        self._headers = self._request_headers(normalize_headers(headers))
        self._max_head = max_head
        self._head_bytes = 0
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)

    def _request_headers(self, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        # Built as conn.connect's CONNECT is; a user name alone is sent with an empty password.
        username = self.proxy.username
        password = None if username is None else self.proxy.password or ""
        return connect_headers(self.target.encode("ascii", "strict"), extra, username, password)

    def _first_bytes(self) -> bytes:
        request = h11.Request(method="CONNECT", target=self.target, headers=self._headers)
        return (self._h11.send(request) or b"") + (self._h11.send(h11.EndOfMessage()) or b"")

    def _on_data(self, data: bytes) -> bytes:
        self._h11.receive_data(data)
        self._head_bytes += len(data)
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                if error.error_status_hint == 431:  # h11's "head too long"
                    raise self._too_long() from None
                raise self._error(f"answered CONNECT with no HTTP response ({error})") from None
            if isinstance(event, h11.InformationalResponse | h11.Response):
                self._check_version(event)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                self._on_response(event)
                return b""
            # NEED_DATA: the head is not complete yet. h11 bounds one head;
            # this bounds a flood of 1xx heads too.
            if self._head_bytes > self._max_head:
                raise self._too_long()
            return b""

    def _check_version(self, event: h11.InformationalResponse | h11.Response) -> None:
        # h11 reads any "HTTP/d.d"; a CONNECT over HTTP/1.x is answered in 1.0 or 1.1.
        if event.http_version not in (b"1.0", b"1.1"):
            version = _shown(event.http_version)
            raise self._error(f"answered CONNECT with no HTTP/1.x response (HTTP/{version})")

    def _too_long(self) -> ProxyError:
        return self._error(f"its answer to CONNECT is longer than {self._max_head} bytes")

    def _on_response(self, response: h11.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            self._finish(bytes(self._h11.trailing_data[0]))
            return
        headers = tuple((bytes(name), bytes(value)) for name, value in response.headers)
        message = f"refused CONNECT {self.target}: {status} {_shown(response.reason)}"
        if status == 407:
            message += self._auth_hint(headers)
        raise self._error(message, status=status, headers=headers)

    def _auth_hint(self, headers: tuple[tuple[bytes, bytes], ...]) -> str:
        wanted = [_shown(v) for n, v in headers if n == b"proxy-authenticate"]
        asks = f" (Proxy-Authenticate: {', '.join(wanted)})" if wanted else ""
        if self.proxy.username is None:
            return f"; it wants credentials{asks}: give them in the URL, http://user:password@..."
        return f"; it refused the credentials of user {self.proxy.username!r}{asks}"
