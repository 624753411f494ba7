"""The sans-I/O proxy handshake: the bytes that open a tunnel through a proxy.

The connection actor connects to the proxy (and speaks TLS to it for
``https://``), then drives a handshake: ``start()`` gives the first bytes
to send, each ``receive(data)`` takes what the proxy sent and gives what to
send next, until ``done``; bytes that came past the end of the handshake
are the origin's, in ``leftover()``. A refusal or a malformed answer raises
[`ProxyError`][tether.ProxyError]; the handshake then stays ``FAILED``.

No socket, thread or clock here: the caller bounds the whole exchange in
time (``connect_timeout``), the handshakes bound it in bytes.
"""

from __future__ import annotations

import abc
import enum

from tether._errors import ProxyError
from tether._proxies import Proxy

__all__ = ["HandshakeState", "ProxyHandshake"]


class HandshakeState(enum.Enum):
    """Where a [`ProxyHandshake`][tether.protocol.ProxyHandshake] stands."""

    NEW = "new"
    """``start()`` not called yet."""
    WAITING = "waiting"
    """Started: waiting for the proxy's answer (``receive``)."""
    DONE = "done"
    """The tunnel is open: what comes next is the origin's."""
    FAILED = "failed"
    """The proxy refused, answered badly or closed: a ``ProxyError`` was raised."""


class ProxyHandshake(abc.ABC):
    """Opens a tunnel to ``host:port`` through ``proxy``; one per connection attempt.

    Not thread-safe: one caller drives it (the connection actor, in its
    own thread). ``receive(b"")`` means the proxy closed the connection (as
    h11's ``receive_data``): a ``ProxyError``.

    Attributes:
        proxy: the proxy.
        host: the origin's host name or IP address (no brackets).
        port: the origin's port.
    """

    def __init__(self, proxy: Proxy, host: str, port: int) -> None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"port {port!r} is not a port number (1-65535)")
        self.proxy = proxy
        self.host = host
        self.port = port
        self._state = HandshakeState.NEW
        self._leftover = b""

    @property
    def state(self) -> HandshakeState:
        """Where the handshake stands."""
        return self._state

    @property
    def done(self) -> bool:
        """True once the tunnel is open; ``leftover()`` then holds the origin's first bytes."""
        return self._state is HandshakeState.DONE

    @property
    def target(self) -> str:
        """``host:port`` of the origin, an IPv6 address in brackets: for requests and messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> bytes:
        """The first bytes to send to the proxy. Call once, before ``receive``."""
        if self._state is not HandshakeState.NEW:
            raise RuntimeError(f"start() called on a handshake that is {self._state.value}")
        self._state = HandshakeState.WAITING
        return self._first_bytes()

    def receive(self, data: bytes) -> bytes:
        """Take bytes from the proxy; return the bytes to send next (maybe ``b""``).

        ``b""`` means the proxy closed the connection.

        Raises:
            ProxyError: the proxy refused, answered with something malformed
                or too long, or closed the connection before the tunnel was open.
            RuntimeError: called before ``start()``, or after ``done`` or a failure.
        """
        if self._state is not HandshakeState.WAITING:
            raise RuntimeError(f"receive() called on a handshake that is {self._state.value}")
        try:
            if not data:
                raise self._error(
                    f"closed the connection before the tunnel to {self.target} was open"
                )
            return self._on_data(bytes(data))
        except ProxyError:
            self._state = HandshakeState.FAILED
            raise

    def leftover(self) -> bytes:
        """Bytes received past the end of the handshake: the origin's first bytes (or ``b""``)."""
        return self._leftover

    def _finish(self, leftover: bytes) -> None:
        """The tunnel is open; ``leftover`` came with the last answer."""
        self._state = HandshakeState.DONE
        self._leftover = leftover

    def _error(
        self,
        message: str,
        *,
        status: int | None = None,
        reply: int | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> ProxyError:
        """A ``ProxyError`` whose message starts by naming the proxy (never its password)."""
        return ProxyError(
            f"proxy {self.proxy.url}: {message}",
            proxy=self.proxy.url,
            status=status,
            reply=reply,
            headers=headers,
        )

    @abc.abstractmethod
    def _first_bytes(self) -> bytes:
        """What ``start()`` sends."""

    @abc.abstractmethod
    def _on_data(self, data: bytes) -> bytes:
        """Handle non-empty ``data`` while ``WAITING``; call ``_finish`` when open."""
