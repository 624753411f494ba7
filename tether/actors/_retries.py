"""How often a connection may try again, and when: Gun's ``retry``, with tether's reset rule.

Each failed attempt or lost connection uses one of ``retry`` retries,
the next attempt waiting ``retry_delay(n)`` (Gun's ``retry_fun``: at once,
then ``retry_timeout`` apart, or ``retry_backoff(n)``). Gun resets the
count at every ``Up``; tether only once the connection has proved useful
(see :data:`PROVEN_AFTER`), so a server that accepts connections and
closes them at once ends in ``RetriesExhausted`` instead of an
``Up``/``Down`` storm that never ends.
"""

from __future__ import annotations

import math
import threading

from tether._errors import RetriesExhausted
from tether._events import Data, Event, Inform, Response, Trailers, Upgrade, Ws
from tether._options import ConnectOpts

__all__ = ["PROVEN_AFTER", "Retries"]

PROVEN_AFTER = 10.0
"""Seconds up after which a connection the server answered nothing on still counts as established.

The retry count is reset (Gun resets it at every ``Up``) only once a
connection has proved useful: the server answered something (a response
head, a Websocket message or frame: bytes that only fail the protocol do
not count), or it stayed up this long. A server, or a proxy in front of a dead one, that
accepts connections and closes them at once therefore ends in
``RetriesExhausted`` after ``retry`` attempts, paced by ``retry_timeout``,
instead of an ``Up``/``Down`` storm that never ends.
"""

# What a server answers that proves a connection useful (see PROVEN_AFTER).
_ANSWERS = frozenset({Inform, Response, Data, Trailers, Upgrade, Ws})


def _checked_delay(delay: float) -> float:
    # inf (or past TIMEOUT_MAX, 292 years on Linux) would leave the connection
    # "waiting" for good instead of retrying.
    if math.isnan(delay) or delay < 0 or delay > threading.TIMEOUT_MAX:
        raise ValueError(
            f"retry_backoff returned {delay!r}; a delay must be >= 0 and finite "
            f"(at most threading.TIMEOUT_MAX, {threading.TIMEOUT_MAX:.0f} s)"
        )
    return delay


class Retries:
    """The retry count of one connection actor. Called by its turn only.

    ``proven``: whether the current connection has proved useful (then
    there is nothing more to look at until the next ``up``).
    """

    __slots__ = ("_attempt", "_attempts", "_left", "_opts", "_up_since", "proven")

    def __init__(self, opts: ConnectOpts) -> None:
        self._opts = opts
        self._left = opts.retry
        self._attempt = 0  # the retries used since the count started, for retry_delay
        self._attempts = 0  # the attempts made since, for RetriesExhausted
        self.proven = False
        self._up_since = 0.0

    def attempting(self) -> None:
        """An attempt to connect begins."""
        self._attempts += 1

    def up(self, now: float) -> None:
        """The connection is up (at ``now``): not proven yet."""
        self.proven = False
        self._up_since = now

    def answered(self, events: list[Event]) -> None:
        """Proven by what the server answered: a response, a message (not bytes that failed)."""
        if any(type(event) in _ANSWERS for event in events):
            self._prove()

    def lasted(self, now: float) -> None:
        """The connection is still up at ``now``: proven if that is long enough."""
        if not self.proven and now - self._up_since >= PROVEN_AFTER:
            self._prove()

    def exhausted(self, reason: BaseException) -> RetriesExhausted | None:
        """Why the connection gives up after ``reason``, if no retry is left."""
        if self._left <= 0:
            return RetriesExhausted(self._attempts, reason)
        return None

    def next_delay(self) -> float:
        """Use a retry: the seconds to wait before it (raises if ``retry_backoff`` is bad)."""
        self._left -= 1
        self._attempt += 1
        return _checked_delay(self._opts.retry_delay(self._attempt))

    def _prove(self) -> None:
        """The connection proved useful: the retry count starts again."""
        self.proven = True
        self._left = self._opts.retry
        self._attempt = 0
        self._attempts = 0
