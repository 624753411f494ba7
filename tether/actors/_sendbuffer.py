"""The send buffer: what callers handed a connection that the socket has not taken yet.

A server that reads slowly, or not at all, must not make the client grow
without bound: ``ws_send``, ``data`` and the request functions *block the
calling thread* while the connection holds more than ``send_buffer`` bytes,
until the socket has taken enough, for at most ``send_timeout`` seconds
(then :class:`~tether.SendTimeout` is raised at the call and nothing was
sent). The first message into an empty buffer is always taken, whatever
its size: the buffer holds at most ``send_buffer`` bytes plus one message.
Blocking, not failing, is the choice, because it is what the callers of a
blocking client (websocket-client) and of an asyncio one (websockets'
``await send()``, which waits for the buffer to drain below its
high-water mark) already write their code for; it is the same for every
kind of owner.

What counts, in bytes:

- commands waiting in the connection actor's mailbox (their payload plus
  :data:`COMMAND_OVERHEAD` each, for the objects that carry them; counted by
  the mailbox, :attr:`Mailbox.queued_size <tether.actors._mailbox.Mailbox.queued_size>`);
- what the actor holds (:attr:`SendBuffer.held`, set by the actor after
  each message it handles): commands kept while the connection is down,
  request bodies queued behind an earlier request (HTTP/1.1 sends one at
  a time), and the bytes the socket did not take (the transport's backlog).

A connection that stops wakes every waiting caller with
``ConnectionStoppedError``; a lost connection empties its backlog, which
wakes them too (their commands then fail as they would on any lost
connection). Bytes never wait in the socket's backlog longer than
``send_timeout`` either (the connection actor's write deadline): a waiting
caller is freed, one way or the other, within about that long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from tether._errors import ConnectionStoppedError, SendTimeout
from tether._locks import Rank, new_lock

__all__ = ["COMMAND_OVERHEAD", "SendBuffer"]

COMMAND_OVERHEAD = 128
"""Bytes a queued command counts for besides its payload (the objects that carry it)."""


class Queue(Protocol):
    """What waits in a connection's mailbox (a Mailbox is one)."""

    queued_size: int


class SendBuffer:
    """One connection's send buffer (see the module docstring). Thread-safe.

    Args:
        limit: bytes past which callers wait (None: never).
        timeout: seconds a caller waits at most.
    """

    def __init__(self, limit: int | None, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        #: What the connection actor holds (its turn writes it; read by anyone).
        self.held = 0
        self._lock = new_lock(Rank.SEND_BUFFER)
        # Built by the first caller that has to wait, under the lock: most
        # connections never fill their buffer, and a Condition is ~1 KiB.
        self._cond: threading.Condition | None = None
        self._waiting = 0  # callers in wait_for_room, and callbacks (read without the lock)
        self._stopped = False
        self._callbacks: list[Callable[[], None]] = []  # on_room's, called once each

    def __repr__(self) -> str:
        return f"<SendBuffer {self.held}/{self.limit} bytes held, {self._waiting} waiting>"

    def wait_for_room(self, mailbox: Queue) -> None:
        """Block while the buffer is over its limit (the caller's thread).

        ``mailbox.queued_size`` is what waits in the connection's mailbox now.

        Raises:
            SendTimeout: still over the limit after ``timeout`` seconds.
            ConnectionStoppedError: the connection stopped meanwhile.
        """
        limit = self.limit
        assert limit is not None
        deadline = time.monotonic() + self.timeout
        with self._lock:
            if self._cond is None:
                self._cond = threading.Condition(self._lock)
            cond = self._cond
            # Counted before looking: whoever makes room after this look
            # sees a waiter and wakes it (see room()).
            self._waiting += 1
            try:
                while True:
                    if self._stopped:
                        raise ConnectionStoppedError("the connection stopped")
                    if self.held + mailbox.queued_size <= limit:
                        return
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise SendTimeout(
                            f"the send buffer stayed over {limit} bytes for {self.timeout} s: "
                            "the server reads too slowly; nothing was sent"
                        )
                    cond.wait(remaining)
            finally:
                self._waiting -= 1

    def on_room(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once, at the next :meth:`room` or :meth:`stop` (any thread).

        For a waiter that may not block (``AsyncInbox.drain``): it registers,
        then looks, as :meth:`wait_for_room` does. Returns a function that
        cancels the call if it has not happened.
        """
        with self._lock:
            if self._stopped:
                callback()
                return _nothing
            self._callbacks.append(callback)
            self._waiting += 1

        def cancel() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)
                    self._waiting -= 1

        return cancel

    def _call_back(self) -> None:
        """Call the on_room callbacks (the lock held: they only schedule)."""
        callbacks, self._callbacks = self._callbacks, []
        self._waiting -= len(callbacks)
        for callback in callbacks:
            callback()

    def set_held(self, held: int) -> None:
        """The actor's turn: it now holds ``held`` bytes; wake the callers if that is less."""
        before, self.held = self.held, held
        if held < before:
            self.room()

    def room(self) -> None:
        """Something left the buffer: wake the waiting callers, if any (any thread)."""
        if self._waiting:  # after the change (see wait_for_room)
            with self._lock:
                self._notify()

    def stop(self) -> None:
        """The connection stopped for good: waiting callers raise (any thread)."""
        with self._lock:
            self._stopped = True
            self._notify()

    def _notify(self) -> None:
        """Wake the waiting callers and call the callbacks (the lock held).

        A caller that waits built the Condition before it counted itself as waiting.
        """
        if self._cond is not None:
            self._cond.notify_all()
        if self._callbacks:
            self._call_back()


def _nothing() -> None:
    pass
