"""Gun's explicit tunnels: where a CONNECT goes, and the tunnels a connection is up through.

``conn.connect(destination)`` sends ``CONNECT host:port`` to the server the
connection talks to (a proxy); on its 2xx the connection talks to the
destination instead, through the proxy: a new HTTP/1.1 protocol for the
destination's authority (after a TLS handshake inside the tunnel for a
``"tls"`` destination), announced by ``TunnelUp``. Requests then go
through the tunnel; ``tunnel=stream`` names the tunnel a request expects
(Gun's ``tunnel`` request option). A reconnect does not redo the CONNECTs
(Gun documents the same): after ``Down``/``Up`` the connection talks to the
proxy again and a request naming an old tunnel is an ``Error``.

:class:`Destination` is Gun's ``connect_destination()`` map, validated at
the call (:func:`destination_from`); :class:`Tunnels` is the actor's list
of the tunnels of the current connection, innermost last.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tether._errors import InvalidRequestError
from tether._events import StreamRef
from tether._options import check_positive_seconds
from tether.protocol._validate import check_host, check_server_hostname

__all__ = ["Destination", "Tunnels", "destination_from"]

_TLS_KEYS = ("tls_context", "server_hostname", "tls_handshake_timeout")

_KEYS = frozenset(
    {
        "host",
        "port",
        "transport",
        "username",
        "password",
        "tls_context",
        "server_hostname",
        "tls_handshake_timeout",
    }
)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a CONNECT goes (Gun's ``connect_destination()``). Immutable: thread-safe.

    ``username``/``password``: ``proxy-authorization: Basic`` (sent only when
    both are given, as Gun's). For ``transport="tls"``: ``tls_context``
    (default: tether's verifying context), ``server_hostname`` (the name
    checked and sent as SNI; default ``host``) and ``tls_handshake_timeout``
    (seconds; None: no limit of its own).
    """

    host: str
    port: int
    transport: Literal["tcp", "tls"] = "tcp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    tls_handshake_timeout: float | None = None

    @property
    def authority(self) -> str:
        """The CONNECT's request target, ``host:port`` (authority-form, RFC 9110 9.3.6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        """True if a TLS handshake with the destination follows the CONNECT."""
        return self.transport == "tls"


def destination_from(destination: object) -> Destination:
    """Validate ``conn.connect``'s ``destination`` (a mapping, or a :class:`Destination`).

    Raises:
        TypeError: not a mapping, or a value of the wrong type.
        ValueError: a missing or unknown key, a bad host, port or transport.
    """
    if isinstance(destination, Destination):
        values: dict[str, Any] = {
            name: getattr(destination, name) for name in Destination.__dataclass_fields__
        }
    elif isinstance(destination, Mapping):
        values = dict(destination)
    else:
        raise TypeError(
            "destination must be a mapping such as {'host': 'example.com', 'port': 443}, "
            f"not {type(destination).__name__}"
        )
    unknown = sorted(str(key) for key in values if key not in _KEYS)
    if unknown:
        raise ValueError(f"unknown destination key(s): {', '.join(unknown)}")
    values["host"] = _address(values)
    for key in ("username", "password"):
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"destination {key} must be a str, not {type(value).__name__}")
    if ":" in (values.get("username") or ""):
        raise ValueError("destination username cannot contain ':' (HTTP Basic authentication)")
    _check_tls(values)
    return Destination(**values)


def _address(values: dict[str, Any]) -> str:
    """The destination's host (IPv6 brackets removed), once host and port are checked."""
    for key in ("host", "port"):
        if key not in values:
            raise ValueError(f"destination needs {key!r} (Gun: host and port are mandatory)")
    host, port = values["host"], values["port"]
    if not isinstance(host, str) or not host:
        raise TypeError(f"destination host must be a non-empty str, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"destination port must be an int, not {type(port).__name__}")
    if not 0 < port < 65536:
        raise ValueError(f"destination port must be in 1..65535, not {port}")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    check_host(bare, port)
    return bare


def _check_tls(values: dict[str, Any]) -> None:
    """``transport`` and the TLS keys, which only a ``"tls"`` destination may have."""
    transport = values.get("transport", "tcp")
    if transport not in ("tcp", "tls"):
        raise ValueError(f"destination transport must be 'tcp' or 'tls', not {transport!r}")
    context = values.get("tls_context")
    if context is not None and not isinstance(context, ssl.SSLContext):
        raise TypeError("destination tls_context must be an ssl.SSLContext")
    name = values.get("server_hostname")
    if name is not None:
        if not isinstance(name, str) or not name:
            raise TypeError("destination server_hostname must be a non-empty str")
        check_server_hostname(name)
    check_positive_seconds(
        "destination tls_handshake_timeout", values.get("tls_handshake_timeout")
    )
    given = [key for key in _TLS_KEYS if values.get(key) is not None]
    if transport == "tcp" and given:
        raise ValueError(f"destination {', '.join(given)}: only for transport='tls'")


class Tunnels:
    """The tunnels the current connection is up through, innermost last. Actor's turn only.

    Also the CONNECT on the wire, if any (one at a time: a CONNECT needs an
    idle connection), with its destination and where its ``TunnelUp`` goes.
    Everything is forgotten when the connection is lost.
    """

    __slots__ = ("_streams", "handshake", "pending")

    def __init__(self) -> None:
        self._streams: list[StreamRef] = []
        #: The CONNECT sent and not answered yet: (stream, destination, reply_to).
        self.pending: tuple[StreamRef, Destination, Any] | None = None
        #: While ``pending`` got its 2xx and its TLS handshake is under way (commands
        #: wait for it: they are for the destination), the data of its
        #: ``tls_handshake_*`` phases; else None.
        self.handshake: dict[str, Any] | None = None

    @property
    def handshaking(self) -> bool:
        """Whether a TLS handshake inside a new tunnel is under way."""
        return self.handshake is not None

    @property
    def streams(self) -> tuple[StreamRef, ...]:
        """The tunnels up, outermost first (``ConnectionInfo.tunnels``)."""
        return tuple(self._streams)

    @property
    def innermost(self) -> StreamRef | None:
        """The tunnel requests go through now (None: the connection's own server)."""
        return self._streams[-1] if self._streams else None

    def up(self, stream: StreamRef) -> None:
        """``stream``'s tunnel is up: requests go through it from now on."""
        self._streams.append(stream)
        self.pending = None
        self.handshake = None

    def lost(self) -> tuple[StreamRef, Destination, Any] | None:
        """The connection is lost: no tunnel survives it (Gun: no CONNECT is redone).

        Returns the tunnel whose TLS handshake was under way, if any.
        """
        opening = self.pending if self.handshaking else None
        self._streams.clear()
        self.pending = None
        self.handshake = None
        return opening

    def refusal(self, tunnel: StreamRef | None) -> InvalidRequestError | None:
        """Why a command naming ``tunnel`` cannot go (None: it can): Gun's ``badstate``."""
        if tunnel is None or tunnel is self.innermost:
            return None
        if tunnel in self._streams:
            return InvalidRequestError(
                f"{tunnel!r} is not the innermost tunnel: requests go through "
                f"{self.innermost!r} now"
            )
        return InvalidRequestError(
            f"{tunnel!r} is not a tunnel (its CONNECT failed, or the connection was lost "
            "since: tunnels are not re-established on reconnect)"
        )
