"""The server's TLS, as a filter over a plain socket that only its owner thread uses.

An ``ssl.SSLSocket`` must not be shared between threads (cpython #76714),
and the server ends connections from other threads (:meth:`Server.stop`,
:meth:`Server.drop_connections`). So, as on the client side, the server
never makes one: the TCP socket stays a plain socket that another thread
may ``shutdown``, and the connection's own thread alone drives an
``ssl.SSLObject`` over two ``MemoryBIO`` buffers.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

__all__ = ["ServerTls"]

_READ_SIZE = 65536

RawRecv = Callable[[], bytes]
RawSend = Callable[[bytes], bool]


class ServerTls:
    """One server-side TLS session. Not thread-safe: the connection's thread alone uses it.

    Args:
        context: A server ``ssl.SSLContext`` (certificate chain loaded).
        raw_recv: Receives TCP bytes; ``b""`` on EOF or error.
        raw_send: Sends all TCP bytes; False if the connection is gone.
    """

    def __init__(self, context: ssl.SSLContext, raw_recv: RawRecv, raw_send: RawSend) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._raw_recv = raw_recv
        self._raw_send = raw_send
        self._eof = False

    def _flush(self) -> bool:
        data = self._outgoing.read()
        return not data or self._raw_send(data)

    def _fill(self) -> bool:
        """Read more TCP bytes into the TLS engine; False at EOF."""
        if self._eof:
            return False
        data = self._raw_recv()
        if not data:
            self._eof = True
            self._incoming.write_eof()
            return False
        self._incoming.write(data)
        return True

    def handshake(self) -> bool:
        """Complete the handshake; False if it failed or the client went away."""
        while True:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                if not self._flush() or not self._fill():
                    return False
                continue
            except ssl.SSLError:  # e.g. the client rejected our certificate
                self._flush()  # the alert, if any, tells the client why
                return False
            return self._flush()

    def recv(self) -> bytes:
        """Decrypted bytes; ``b""`` at the end of the TLS session or of TCP."""
        while True:
            try:
                data = self._tls.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                # A TLS 1.3 key update may need an answer before more data comes.
                if not self._flush() or not self._fill():
                    return b""
                continue
            except ssl.SSLError:  # close_notify, an EOF without it, or garbage
                return b""
            if not self._flush():
                return b""
            return data

    def send(self, data: bytes) -> bool:
        """Encrypt and send all of ``data``; False if the connection is gone."""
        try:
            self._tls.write(data)
        except ssl.SSLError:
            return False
        return self._flush()

    def close_notify(self) -> None:
        """Send the TLS close_notify alert (a clean end of the session), if still possible."""
        try:
            self._tls.unwrap()
        except ssl.SSLWantReadError:
            pass  # the client's close_notify is not awaited: TCP closes next
        except ssl.SSLError:
            return
        self._flush()
