"""Every exception tether raises or reports, in one tree.

Two bases sort them by how they reach you:

- [`CallError`][tether.CallError]: raised by a tether call, in the calling
  thread, because that call cannot do what it was asked (a bad argument, a
  stopped connection, a wait that timed out). Catch it around calls.
- [`ReportedError`][tether.ReportedError]: why a connection or a stream
  ended or failed, told to the owner as the ``reason`` of a
  [`Down`][tether.Down] or [`Error`][tether.Error] event (or carried by
  another error: ``RetriesExhausted.last_reason``, ``StreamLost.reason``).
  Match ``reason`` against it. ``await_*`` raise the reason of a stream's
  ``Error`` as it is, so they may raise these too.

Some are both (marked "+ Reported" below): they are raised at the call
when the mistake shows there, and reported when it shows only once the
connection acts (a request sent as the Websocket upgrade completed, a
streamed body that misses its ``content-length``). A ``reason`` is one of
these or the ``OSError`` / ``ssl.SSLError`` the operating system gave,
never a bare string.

```text
TetherError
├── CallError                   raised at the call
│   ├── OwnerError              await_* needs the owner to be an Inbox
│   ├── InvalidRequestError     (also ValueError; + Reported) a bad method, path, header, framing
│   ├── UpgradedError           (+ Reported) an HTTP request on a connection that speaks Websocket
│   ├── NotUpgradedError        (+ Reported) ws_send with no Websocket up (names the frames)
│   ├── ConnectionStoppedError  a call on a connection that stopped for good
│   ├── InboxClosedError        tell() on, or receive() from, a closed Inbox
│   ├── ReceiveTimeout          (also TimeoutError) receive/await_* timed out
│   ├── SendTimeout             (also TimeoutError) the send buffer stayed full
│   ├── StreamLost              await_* on a stream the connection lost (carries the reason)
│   ├── ConnectionDownError     await_up saw the connection go down first (carries the reason)
│   ├── SupervisorStopped       (+ Reported) the supervisor stopped (or gave up), with its children
│   ├── NoConnectionAvailable   (also TimeoutError) no pooled connection took a stream in time
│   └── PoolStopped             a pool request after the pool stopped
└── ReportedError               the reason in a Down or Error event
    ├── ConnectTimeout          (also TimeoutError) connect_timeout (or a phase's own) elapsed
    ├── WriteTimeout            (also TimeoutError) bytes waited send_timeout to be sent
    ├── ResponseTimeout         (also TimeoutError) no response head within response_timeout
    ├── UpgradeTimeout          (also TimeoutError) no answer to an upgrade within upgrade_timeout
    ├── PongTimeout             (also TimeoutError) no pong: the peer is dead
    ├── ProtocolError
    │   ├── RemoteProtocolError the server broke HTTP or Websocket
    │   └── UpgradeError        the upgrade cannot be done or was botched
    ├── ConnectionClosed        the server closed the TCP connection
    ├── ProxyError              the proxy refused the tunnel, or answered badly
    ├── WsClosed                the Websocket close handshake ended it
    ├── ClosedByUser            close() / shutdown() ended it
    ├── OwnerDown               the owner stopped, so the connection did
    ├── RetriesExhausted        no reconnect attempts left (carries the last reason)
    ├── Crashed                 the connection actor crashed (carries the exception)
    └── SupervisorGaveUp        restart intensity exceeded: the supervisor crashed
```

Bad arguments and options that are no request (a bad port or host given
to ``open``, an unknown option) raise plain ``ValueError`` or
``TypeError``.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether._frames import Frame

__all__ = [
    "CallError",
    "ClosedByUser",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionDownError",
    "ConnectionStoppedError",
    "Crashed",
    "InboxClosedError",
    "InvalidRequestError",
    "NoConnectionAvailable",
    "NotUpgradedError",
    "OwnerDown",
    "OwnerError",
    "PongTimeout",
    "PoolStopped",
    "ProtocolError",
    "ProxyError",
    "ReceiveTimeout",
    "RemoteProtocolError",
    "ReportedError",
    "ResponseTimeout",
    "RetriesExhausted",
    "SendTimeout",
    "StreamLost",
    "SupervisorGaveUp",
    "SupervisorStopped",
    "TetherError",
    "UpgradeError",
    "UpgradeTimeout",
    "UpgradedError",
    "WriteTimeout",
    "WsClosed",
]


def _restore(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    """Unpickle an error without calling its ``__init__`` (whose parameters are not ``args``)."""
    error = cls.__new__(cls, *args)
    error.args = args
    return error


def _portable(value: object) -> object:
    """``value``, or, for an error carried by ours that would not survive pickle, a stand-in.

    An error a tether error carries (``Crashed.exception``, a
    ``last_reason``) may be the user's, and not survive a round trip (an
    ``__init__`` whose parameters are not its ``args`` fails to load, as
    ``WsClosed``'s did). Rather than fail the whole event on its way to
    another process, it travels as a ``RuntimeError`` naming its type and
    message. Tried only when pickling, so only errors on their way out pay.
    """
    if not isinstance(value, BaseException) or isinstance(value, TetherError):
        return value
    try:
        pickle.loads(pickle.dumps(value))
    except Exception:
        kind = type(value)
        return RuntimeError(f"{kind.__module__}.{kind.__qualname__}: {value}")
    return value


def same_error(a: object, b: object) -> bool:
    """Whether two errors say the same: type, ``args``, message and attributes.

    Exceptions compare by identity; a pickled copy is another object. This
    compares them as values (nested errors, e.g. ``last_reason``, too), so
    that an error, and an event that carries one, compares equal to its
    copy from another process. Not-errors compare with ``==``.
    """
    if a is b:
        return True
    if not isinstance(a, BaseException) or not isinstance(b, BaseException):
        return bool(a == b)
    if type(a) is not type(b) or str(a) != str(b) or len(a.args) != len(b.args):
        return False
    if not all(same_error(x, y) for x, y in zip(a.args, b.args, strict=True)):
        return False
    state_a, state_b = getattr(a, "__dict__", {}), getattr(b, "__dict__", {})
    return state_a.keys() == state_b.keys() and all(
        same_error(value, state_b[key]) for key, value in state_a.items()
    )


def error_key(error: BaseException) -> tuple[Any, ...]:
    """A hash key consistent with ``same_error``: the type and the message."""
    return (type(error), str(error))


class TetherError(Exception):
    """The root of every error tether defines.

    Every tether error survives ``pickle`` (an owner in another process, a
    Ray actor): the copy has the same type, message, ``args`` and
    attributes, and compares equal to the original (``==`` compares errors
    as values, see ``same_error``; ``hash`` agrees). Thread-safe: errors
    are not changed after they are raised.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own reduce calls cls(*self.args), but our __init__s
        # take other parameters than the message args holds (WsClosed,
        # RetriesExhausted, ...): rebuild without __init__, then the
        # attributes from __dict__.
        state = {key: _portable(value) for key, value in self.__dict__.items()}
        return (_restore, (type(self), self.args), state or None)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BaseException):
            return NotImplemented
        return same_error(self, other)

    def __hash__(self) -> int:
        return hash(error_key(self))


class CallError(TetherError):
    """Raised by a tether call, in the calling thread: the call cannot do what it was asked.

    A bad argument, a stopped connection or supervisor, an ``Inbox`` that
    was closed, a wait that timed out. See the tree above for which are
    also reported as a [`ReportedError`][tether.ReportedError].
    """


class ReportedError(TetherError):
    """Why a connection or a stream ended or failed, told to the owner in an event.

    The ``reason`` of a [`Down`][tether.Down] or [`Error`][tether.Error]
    event (unless the operating system's ``OSError`` / ``ssl.SSLError`` is
    the reason), or carried by another error (``RetriesExhausted.last_reason``,
    ``StreamLost.reason``, ``ConnectionDownError.reason``). ``await_*`` raise
    a stream's ``Error`` reason as it is.
    """


class InvalidRequestError(CallError, ReportedError, ValueError):
    """A request argument is invalid (a bad header name or value, a bad path).

    Also a ``content-length`` or ``transfer-encoding`` that cannot frame the
    body; and the reason of a stream's ``Error`` when its streamed body
    turned out longer or shorter than its ``content-length``.
    """


class OwnerError(CallError):
    """``await_up``/``await_``/``await_body`` need the owner to be an [`Inbox`][tether.Inbox]."""


class UpgradedError(CallError, ReportedError):
    """The connection speaks Websocket: HTTP requests are no longer possible (as in Gun).

    Raised by a request call; a request given before the upgrade completed
    gets it as the reason of its ``Error``.
    """


class NotUpgradedError(CallError, ReportedError):
    """``ws_send`` while no Websocket is up; ``frames`` are the frames that were not sent.

    Raised by ``ws_send``; frames given while the Websocket was being lost
    come back as the reason of an ``Error`` instead.
    """

    def __init__(self, message: str, frames: tuple[Frame, ...] = ()) -> None:
        super().__init__(message)
        self.frames = frames


class ConnectionStoppedError(CallError):
    """The connection has stopped for good; the call cannot be carried out."""


class InboxClosedError(CallError):
    """The [`Inbox`][tether.Inbox] was closed."""


class ReceiveTimeout(CallError, TimeoutError):
    """No matching message arrived within the timeout."""


class ConnectTimeout(ReportedError, TimeoutError):
    """A connection attempt took longer than ``connect_timeout``.

    Also a phase of it that took longer than its own bound:
    ``domain_lookup_timeout`` or ``tls_handshake_timeout`` (the message
    names the option).
    """


class WriteTimeout(ReportedError, TimeoutError):
    """Bytes waited longer than ``send_timeout`` to be sent: the peer reads too slowly, or not."""


class SendTimeout(CallError, TimeoutError):
    """Raised at a send call: the send buffer stayed full for ``send_timeout`` (nothing sent)."""


class ResponseTimeout(ReportedError, TimeoutError):
    """No response head came within ``http_opts`` ``response_timeout`` of the request."""


class UpgradeTimeout(ReportedError, TimeoutError):
    """No answer to a Websocket upgrade came within ``ws_opts`` ``upgrade_timeout``."""


class PongTimeout(ReportedError, TimeoutError):
    """No pong came back within ``pong_timeout`` of a keepalive ping: the peer is dead."""


class ProtocolError(ReportedError):
    """HTTP or Websocket was violated. Abstract: one of the two subclasses is raised."""


class RemoteProtocolError(ProtocolError):
    """The server broke the protocol (a malformed response, a bad frame).

    Attributes:
        close_code: for Websocket, the close code tether sent back (1002, 1007,
            1009, ...); ``None`` for HTTP.
    """

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class UpgradeError(ProtocolError):
    """The Websocket upgrade cannot be attempted, or the server's 101 was invalid."""


class ConnectionClosed(ReportedError):
    """The server closed the TCP connection."""

    def __init__(self, message: str = "the server closed the connection") -> None:
        super().__init__(message)


class ProxyError(ReportedError):
    """The proxy refused to open the tunnel, or its answer was not the protocol.

    One failed connection attempt: retried as any other, then carried by
    ``RetriesExhausted.last_reason``. Survives ``pickle`` (message and
    attributes).

    Attributes:
        proxy: the proxy's URL, without its password.
        status: the HTTP proxy's status (407 wants credentials, 502 could
            not reach the origin, ...), or None.
        reply: the SOCKS5 reply code (RFC 1928 6: 0x02 not allowed by the
            ruleset, 0x05 connection refused, ...), or None.
        headers: the refusing HTTP response's headers, ``(name, value)``
            bytes as received (names lower-cased); empty for SOCKS5.
    """

    def __init__(
        self,
        message: str,
        *,
        proxy: str,
        status: int | None = None,
        reply: int | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.proxy = proxy
        self.status = status
        self.reply = reply
        self.headers = headers


class WsClosed(ReportedError):
    """The Websocket closing handshake ended the connection.

    Attributes:
        code: the close code of the frame that started the handshake.
        reason: its reason text.
        by_server: True if the server sent the first close frame.
    """

    def __init__(self, code: int, reason: str, *, by_server: bool) -> None:
        who = "server" if by_server else "client"
        super().__init__(f"websocket closed by the {who}: {code} {reason!r}")
        self.code = code
        self.reason = reason
        self.by_server = by_server


class StreamLost(CallError):
    """The connection went down (or stopped) before the stream was fully answered.

    Attributes:
        reason: why the connection was lost.
    """

    def __init__(self, message: str, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectionDownError(CallError):
    """``await_up`` saw a ``Down`` (or the final ``Error``) before an ``Up``.

    Attributes:
        reason: the reason carried by that event.
    """

    def __init__(self, message: str, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ClosedByUser(ReportedError):
    """The user called ``close()`` or ``shutdown()``."""


class OwnerDown(ReportedError):
    """The owner stopped (a dead actor, a closed Inbox), so the connection stopped."""


class RetriesExhausted(ReportedError):
    """All reconnect attempts failed; the connection has stopped.

    Attributes:
        attempts: how many connection attempts were made since the last success.
        last_reason: the error of the last attempt (or of the lost connection).
    """

    def __init__(self, attempts: int, last_reason: BaseException | None) -> None:
        detail = repr(last_reason)
        if isinstance(last_reason, OSError) and last_reason.filename is not None:
            # An OSError's repr drops its file name (a Unix socket's path).
            detail = f"{type(last_reason).__name__}: {last_reason}"
        super().__init__(f"gave up after {attempts} attempt(s); last error: {detail}")
        self.attempts = attempts
        self.last_reason = last_reason


class Crashed(ReportedError):
    """The connection actor crashed; ``exception`` is what escaped it."""

    def __init__(self, exception: BaseException) -> None:
        super().__init__(f"connection actor crashed: {exception!r}")
        self.exception = exception


class SupervisorStopped(CallError, ReportedError):
    """A supervisor stopped, or gave up, and stopped its children with it.

    Raised by ``open`` and ``start_child`` under a supervisor that has
    stopped; the reason of its connections' ``Down`` and last ``Error``.

    Attributes:
        gave_up: True if it stopped because its restart intensity was exceeded.
    """

    def __init__(self, message: str, *, gave_up: bool = False) -> None:
        super().__init__(message)
        self.gave_up = gave_up


class SupervisorGaveUp(ReportedError):
    """More than ``max_restarts`` restarts within ``period``: the supervisor crashed.

    Attributes:
        max_restarts: the supervisor's restart intensity ...
        period: ... within this many seconds.
        last_reason: the exit reason of the child whose restart was one too many.
    """

    def __init__(
        self, max_restarts: int, period: float, last_reason: BaseException | None
    ) -> None:
        super().__init__(
            f"more than {max_restarts} restart(s) within {period} s; last reason: {last_reason!r}"
        )
        self.max_restarts = max_restarts
        self.period = period
        self.last_reason = last_reason


class NoConnectionAvailable(CallError, TimeoutError):
    """A pool request found no connection that could take a stream within ``checkout_timeout``.

    Gun's ``{error, no_connection_available, _}``: every connection was
    down, or busy (HTTP/1.1: one request at a time each). Nothing was sent.

    Attributes:
        timeout: how long the call waited, in seconds.
    """

    def __init__(self, message: str, *, timeout: float) -> None:
        super().__init__(message)
        self.timeout = timeout


class PoolStopped(CallError):
    """The pool has stopped (``stop()``, or its supervisor gave up): nothing was sent.

    Attributes:
        reason: why, if its supervisor gave up (else None).
    """

    def __init__(self, message: str, reason: BaseException | None = None) -> None:
        super().__init__(message)
        self.reason = reason
