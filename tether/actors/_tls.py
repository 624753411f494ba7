"""TLS as a byte filter between the TCP transport and the protocol.

An ``ssl.SSLSocket`` shared by a reader thread and a writer thread is a
known source of bugs (cpython #76714), so tether never makes one: the
reader thread moves raw TCP bytes, and the connection actor alone drives an
``SSLObject`` over two ``MemoryBIO`` buffers (the pattern of httpcore's
TLS-in-TLS stream). Certificate and hostname verification are on by
default, with the system trust store, and the host name is sent as SNI.
"""

from __future__ import annotations

import ssl

__all__ = ["TlsLayer", "default_context"]

_READ_SIZE = 65536


# ALPN's names (RFC 7301) of tether's protocol names.
_ALPN = {"http2": "h2", "http": "http/1.1"}


def default_context(protocols: tuple[str, ...] = ("http",)) -> ssl.SSLContext:
    """A client context: system CAs, hostname checks, ``protocols`` offered by ALPN.

    ``protocols`` are tether's names (``"http2"``, ``"http"``), in order of
    preference; HTTP/1.1 alone by default (a proxy's TLS).
    """
    context = ssl.create_default_context()
    context.set_alpn_protocols([_ALPN[p] for p in protocols])
    return context


class TlsLayer:
    """One TLS session. Not thread-safe: the connection actor alone uses it.

    Args:
        context: the ``ssl.SSLContext`` (verification as it configures).
        server_hostname: the name to verify and to send as SNI.
    """

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )
        self.handshake_done = False
        self.closed = False

    @property
    def alpn(self) -> str | None:
        """The protocol ALPN chose (``"h2"``, ``"http/1.1"``), None if none (or not yet)."""
        return self._tls.selected_alpn_protocol()

    @property
    def context(self) -> ssl.SSLContext:
        """The context the session was made with."""
        return self._tls.context

    def _drain(self) -> bytes:
        return self._outgoing.read()

    def start(self) -> bytes:
        """Begin the handshake; return the bytes to send (the ClientHello)."""
        self._handshake()
        return self._drain()

    def _handshake(self) -> None:
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            return
        self.handshake_done = True

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """Feed TCP bytes (``b""``: TCP EOF); return ``(plaintext, bytes to send)``.

        Raises:
            ssl.SSLError: the handshake failed (e.g. certificate verification)
                or the peer sent something invalid.
        """
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        if not self.handshake_done:
            self._handshake()
            if not self.handshake_done:
                return b"", self._drain()
        chunks = []
        while True:
            try:
                chunk = self._tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify: a clean TLS close
                self.closed = True
                break
            except ssl.SSLEOFError:  # TCP closed without close_notify
                self.closed = True
                break
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks), self._drain()

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext``; return the bytes to send."""
        self._tls.write(plaintext)
        return self._drain()
