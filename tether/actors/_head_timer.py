"""A late response (or upgrade) head: ``response_timeout`` and ``upgrade_timeout``.

The protocol layer says which stream waits for its head and how long it
may (``ProtocolEngine.head_wait``); it has no clock. A :class:`HeadTimer`
keeps one timer on that stream, follows it from flush to flush, and when
the timer fires fails the stream in the protocol (which closes the
connection); the connection actor then flushes.
"""

from __future__ import annotations

from collections.abc import Callable

from tether._errors import ResponseTimeout, UpgradeTimeout
from tether._events import StreamRef
from tether._options import ConnectOpts
from tether.actors._messages import Timer
from tether.actors._scheduler import TimerHandle
from tether.actors._transport import Transport
from tether.protocol._engine import ProtocolEngine

__all__ = ["HeadTimer"]


class HeadTimer:
    """The timer of the stream waiting for its head. Called by the connection actor's turn only.

    ``wanted``: whether a head may be timed at all (an option says so);
    only then need each flush :meth:`follow` the protocol's ``head_wait``.
    """

    __slots__ = ("_schedule", "_timer", "wanted")

    def __init__(self, opts: ConnectOpts, schedule: Callable[[Timer, float], TimerHandle]) -> None:
        self.wanted = (
            opts.http_opts.response_timeout is not None or opts.ws_opts.upgrade_timeout is not None
        )
        self._schedule = schedule
        self._timer: tuple[StreamRef, TimerHandle] | None = None

    def dropped(self) -> None:
        """The connection was dropped (and with it its timers)."""
        self._timer = None

    def follow(self, proto: ProtocolEngine) -> None:
        """Have a timer on the stream waiting for its head (if a timeout applies)."""
        wait = proto.head_wait
        current = self._timer
        if current is not None and (wait is None or current[0] is not wait.stream):
            current[1].cancel()
            self._timer = current = None
        if wait is not None and current is None:
            self._timer = (wait.stream, self._schedule(Timer.HEAD, wait.timeout))

    def fired(self, proto: ProtocolEngine | None, transport: Transport | None) -> bool:
        """The timer fired: fail the stream if its head is late; True if so (flush then)."""
        timer, self._timer = self._timer, None
        if timer is None or proto is None:
            return False
        wait = proto.head_wait
        stream = timer[0]
        if wait is None or wait.stream is not stream:
            return False  # it came meanwhile
        if transport is not None and transport.reads_paused:
            # Not read yet is not late (as for a pong): the head may wait in what
            # backpressure left unread. Judged again once more time has passed.
            self._timer = (stream, self._schedule(Timer.HEAD, wait.timeout))
            return False
        error = (
            UpgradeTimeout(f"no answer to the upgrade within {wait.timeout} s (upgrade_timeout)")
            if wait.upgrade
            else ResponseTimeout(
                f"no response head within {wait.timeout} s of the request (response_timeout)"
            )
        )
        proto.head_timed_out(stream, error)
        return True
