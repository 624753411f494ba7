"""The write side of a connection: bytes to the socket without blocking, and bounded.

What the socket does not take at once waits in the transport's backlog
(``docs/design.md``, I/O model). A :class:`Writer` bounds that wait both
ways, as ``docs/connection.md`` promises:

- in time: no byte waits longer than ``send_timeout``; one timer
  (``SEND_DEADLINE``) watches the oldest, and when it passes the actor
  loses the connection with the ``WriteTimeout`` it is given;
- in size: the handle's :class:`~tether.actors._sendbuffer.SendBuffer` is
  told what the actor holds for the wire (the backlog, and what the
  actor holds elsewhere: commands kept while down, request bodies queued
  behind an earlier request), which makes callers wait past ``send_buffer``.

Writing never fails at the actor: an ``OSError`` is returned, for the
actor to end the connection when it sees fit (after the events of the
same turn, say).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tether._errors import WriteTimeout
from tether.actors._messages import Timer
from tether.actors._scheduler import TimerHandle
from tether.actors._sendbuffer import SendBuffer
from tether.actors._transport import Transport

__all__ = ["Writer"]


class Writer:
    """Writes to the current transport and bounds its backlog. Called by the actor's turn only.

    ``send``: the handle's send buffer; ``timeout``: ``send_timeout``;
    ``now`` and ``schedule``: the actor's clock and timers;
    ``held_elsewhere``: the bytes the actor holds besides the backlog.
    """

    __slots__ = ("_deadline", "_held_elsewhere", "_now", "_schedule", "_send", "_timeout")

    def __init__(
        self,
        send: SendBuffer,
        timeout: float,
        now: Callable[[], float],
        schedule: Callable[[Timer, float], TimerHandle],
        held_elsewhere: Callable[[], int],
    ) -> None:
        self._send = send
        self._timeout = timeout
        self._now = now
        self._schedule = schedule
        self._held_elsewhere = held_elsewhere
        self._deadline: TimerHandle | None = None  # the SEND_DEADLINE timer, while one is set

    def dropped(self) -> None:
        """The connection was dropped (and with it its timers and its backlog)."""
        self._deadline = None

    def write(
        self, transport: Transport, data: bytes | Sequence[bytes | bytearray]
    ) -> OSError | None:
        """Hand ``data`` (or its pieces, in order) to the socket; the error if it failed."""
        try:
            waits = transport.write(data)
        except OSError as exc:
            return exc.with_traceback(None)
        # Only when something waits, or waited: usually all was taken.
        if waits or self._send.held:
            self._check(transport)
        return None

    def writable(self, transport: Transport) -> OSError | None:
        """The socket can take more of the backlog: send it; the error if it failed."""
        try:
            transport.flush()
        except OSError as exc:
            return exc.with_traceback(None)
        self._check(transport)
        return None

    def count(self, transport: Transport | None) -> None:
        """Tell the send buffer how many bytes the actor holds for the wire."""
        held = self._held_elsewhere()
        if transport is not None:
            held += transport.backlog_size
        send = self._send
        if held != send.held:
            send.set_held(held)

    def deadline_passed(self, transport: Transport | None) -> WriteTimeout | None:
        """The deadline's timer: why the connection is lost if a byte waited ``send_timeout``."""
        self._deadline = None
        since = transport.waiting_since if transport is not None else None
        if since is None:
            return None
        timeout = self._timeout
        if self._now() - since < timeout:
            self._check(transport)  # the oldest byte now came later: its own deadline
            return None
        # Built here, not raised in the transport: its traceback would keep
        # the unsent bytes alive for as long as the owner keeps the Down.
        return WriteTimeout(
            f"bytes waited {timeout} s to be sent (send_timeout): the server does not "
            "read, or too slowly; the connection is closed"
        )

    def _check(self, transport: Transport | None) -> None:
        """After a write: time the oldest byte waiting (``send_timeout``), count what is held."""
        since = transport.waiting_since if transport is not None else None
        if since is not None and self._deadline is None:
            self._deadline = self._schedule(
                Timer.SEND_DEADLINE, since + self._timeout - self._now()
            )
        self.count(transport)
