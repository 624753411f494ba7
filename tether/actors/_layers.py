"""The TLS sessions between the socket and the protocol, outermost first.

A direct ``https://`` connection has one session. Through an ``https://``
proxy it has two: one with the proxy, and inside it, once the proxy's
tunnel is up, one with the origin (TLS in TLS, each an ``SSLObject`` over
memory buffers, see :mod:`~tether.actors._tls`). An explicit tunnel
(``conn.connect`` to a TLS destination) adds one more. Bytes read from the
socket go through every session, outermost first; plaintext to send goes
through them innermost first. A session's own answers (handshake records,
alerts) are wrapped by the sessions outside it before they reach the socket.

Sessions are added one at a time, each once the one outside it has
finished its handshake, so only the innermost may be in its handshake.
Not thread-safe: the connection actor's turn alone uses it.
"""

from __future__ import annotations

from tether.actors._tls import TlsLayer

__all__ = ["Layers", "Received"]


class Received:
    """What bytes from the socket (or from the outer sessions) gave.

    ``plain``: the innermost session's plaintext; ``out``: the sessions'
    answers, ready for the socket; ``handshake_ended``: the innermost
    session finished its handshake in this call; ``closed``: a session was
    closed by the peer (close_notify, or EOF inside the outer one).
    """

    __slots__ = ("closed", "handshake_ended", "out", "plain")

    def __init__(self, plain: bytes, out: bytes, handshake_ended: bool, closed: bool) -> None:
        self.plain = plain
        self.out = out
        self.handshake_ended = handshake_ended
        self.closed = closed


class Layers:
    """A stack of TLS sessions (see the module docstring). Not thread-safe."""

    __slots__ = ("_sessions",)

    def __init__(self) -> None:
        self._sessions: list[TlsLayer] = []

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def innermost(self) -> TlsLayer:
        """The session the protocol's bytes go into first."""
        return self._sessions[-1]

    def push(self, tls: TlsLayer) -> bytes:
        """Start ``tls`` inside the others; the bytes to send (its ClientHello, wrapped)."""
        wrapped = self._wrap(len(self._sessions), tls.start())
        self._sessions.append(tls)
        return wrapped

    def send(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` through every session; the bytes for the socket."""
        return self._wrap(len(self._sessions), plaintext)

    def receive(self, data: bytes) -> Received:
        """Bytes read from the socket. Raises ``ssl.SSLError`` (see ``TlsLayer.receive``)."""
        return self._receive(data, 0)

    def feed_inner(self, data: bytes) -> Received:
        """Bytes that are already the plaintext of every session but the innermost.

        A proxy's handshake is read through the sessions outside it; what
        came after its end is the innermost session's (the origin's).
        """
        return self._receive(data, len(self._sessions) - 1)

    def _receive(self, data: bytes, first: int) -> Received:
        sessions = self._sessions
        answers: list[bytes] = []
        ended = closed = False
        for depth in range(first, len(sessions)):
            if not data:
                break  # nothing for the sessions inside (b"" would be read as their EOF)
            tls = sessions[depth]
            was_done = tls.handshake_done
            data, answer = tls.receive(data)
            if answer:
                answers.append(self._wrap(depth, answer))
            if tls.handshake_done and not was_done:
                ended = True
            if tls.closed:
                closed = True
                break
        return Received(data, b"".join(answers), ended, closed)

    def _wrap(self, depth: int, data: bytes) -> bytes:
        """``data`` from the session at ``depth``, encrypted by every session outside it."""
        for tls in reversed(self._sessions[:depth]):
            if not data:
                break
            data = tls.send(data)
        return data
