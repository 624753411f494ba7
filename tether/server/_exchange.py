"""One HTTP request with its whole body, and the means to answer it through h11.

Routes get an :class:`Exchange` rather than the h11 connection and the
socket, so they only decide *what* to send; h11 checks the framing, and
the HEAD, HTTP/1.0 and 204/304 special cases live here once.
"""

from __future__ import annotations

import http
from collections.abc import Iterable, Sequence

import h11

from tether.server._client_socket import ClientSocket

__all__ = ["Exchange", "Headers"]

Headers = Sequence[tuple[str, str]]

_NO_BODY_STATUSES = frozenset({204, 304})


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class Exchange:
    """A received request and the h11 connection to answer it on (owner thread only).

    Attributes:
        request: The h11 request event.
        body: The whole request body.
        method: The request method, e.g. ``"GET"``.
        target: The request target as received, e.g. ``"/echo?x=1"``.
        path: The target without its query string or fragment.
    """

    def __init__(
        self, conn: h11.Connection, client: ClientSocket, request: h11.Request, body: bytes
    ) -> None:
        self.request = request
        self.body = body
        self.method = request.method.decode("latin-1")
        self.target = request.target.decode("latin-1")
        self.path = self.target.split("?", 1)[0].split("#", 1)[0]
        self.client = client
        self._conn = conn

    @property
    def head(self) -> bool:
        """True for a HEAD request: same headers as GET, never a body."""
        return self.method == "HEAD"

    @property
    def http10(self) -> bool:
        """True if the client speaks HTTP/1.0 (no 1xx, no chunked, no trailers)."""
        return self.request.http_version < b"1.1"

    def header(self, name: str) -> list[str]:
        """Every value of request header ``name`` (any case), in order."""
        wanted = name.lower().encode("latin-1")
        return [value.decode("latin-1") for key, value in self.request.headers if key == wanted]

    def send(self, *events: h11.Event) -> bool:
        """Send h11 events in one write; False if the client is gone."""
        return self.client.send(b"".join(self._conn.send(event) or b"" for event in events))

    def inform(self, status: int, headers: Headers = ()) -> bool:
        """Send a 1xx informational response (not to HTTP/1.0 clients)."""
        if self.http10:
            return True
        return self.send(
            h11.InformationalResponse(
                status_code=status, headers=list(headers), reason=_reason(status)
            )
        )

    def start(self, status: int, headers: Headers = ()) -> bool:
        """Send the response head; the body follows with :meth:`data` and :meth:`end`."""
        return self.send(
            h11.Response(status_code=status, headers=list(headers), reason=_reason(status))
        )

    def data(self, chunk: bytes) -> bool:
        """Send a piece of the body (nothing for HEAD or an empty piece)."""
        if self.head or not chunk:
            return True
        return self.send(h11.Data(data=chunk))

    def end(self, trailers: Headers = ()) -> bool:
        """End the body, with trailers when the framing allows them (chunked, not HEAD)."""
        if self.head or self.http10:
            trailers = ()
        return self.send(h11.EndOfMessage(headers=list(trailers)))

    def respond(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "text/plain",
    ) -> bool:
        """Send a whole response with a content-length; HEAD gets the same headers, no body.

        204 and 304 responses get neither a body nor content headers.
        """
        all_headers = list(headers)
        if status not in _NO_BODY_STATUSES:
            all_headers += [("content-type", content_type), ("content-length", str(len(body)))]
        events: list[h11.Event] = [
            h11.Response(status_code=status, headers=all_headers, reason=_reason(status))
        ]
        if body and not self.head and status not in _NO_BODY_STATUSES:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        return self.send(*events)
