"""Keepalive pings on an idle connection, and a Websocket peer found dead by its silence.

The connection actor's timers drive it (``HTTP_PING``, ``WS_PING``,
``PONG_DEADLINE``: ``ConnectionActor._TICKS``); each call is given the
connection's protocol and transport of the moment and says what the
actor must do: flush what the protocol now has to send, or drop the
connection (``PongTimeout``). Its own state is one mark per ping that
awaits its deadline.
"""

from __future__ import annotations

from collections.abc import Callable

from tether._errors import PongTimeout
from tether._frames import Ping as PingFrame
from tether.actors._messages import Timer
from tether.actors._scheduler import TimerHandle
from tether.actors._transport import Transport
from tether.protocol._engine import ProtocolEngine

__all__ = ["Keepalive"]


class Keepalive:
    """Gun's HTTP and Websocket keepalive, and the ``pong_timeout`` check. The actor's turn only.

    ``http_keepalive``: the HTTP ping interval (``http_opts.keepalive``);
    ``schedule``: the actor's, which ticks a timer of the current connection.
    """

    __slots__ = ("_http_keepalive", "_marks", "_schedule")

    def __init__(
        self, http_keepalive: float | None, schedule: Callable[[Timer, float], TimerHandle]
    ) -> None:
        self._http_keepalive = http_keepalive
        self._schedule = schedule
        # One mark per ping awaiting its deadline: the pong count and the
        # bytes read when it went out.
        self._marks: list[tuple[int, int, int]] = []  # (pongs, bytes read, pauses) at a ping

    def up(self) -> None:
        """The connection is up: HTTP pings begin (if ``keepalive`` is set)."""
        if self._http_keepalive is not None:
            self._schedule(Timer.HTTP_PING, self._http_keepalive)

    def upgraded(self, keepalive: float | None) -> None:
        """A Websocket replaced HTTP: its pings begin (if ``keepalive`` is set)."""
        self._marks.clear()  # those of an earlier Websocket
        if keepalive is not None:
            self._schedule(Timer.WS_PING, keepalive)

    def http_ping(self, proto: ProtocolEngine) -> bool:
        """HTTP keepalive every ``keepalive`` seconds; True if there is one to send.

        HTTP/1.1: an empty line while idle; HTTP/2: a PING.
        """
        keepalive = self._http_keepalive
        if proto.ws is not None or keepalive is None:
            return False  # upgraded: Websocket keepalive (ws_opts) takes over
        proto.http_keepalive()
        self._schedule(Timer.HTTP_PING, keepalive)
        return True

    def ws_ping(self, proto: ProtocolEngine, transport: Transport | None) -> bool:
        """Ping the server; with a ``pong_timeout``, check the answer came. True if sent.

        On HTTP/2, the last Websocket upgraded (``keepalive_ws``) is pinged:
        its pong, or any byte read, proves the whole connection alive.
        """
        ws = proto.keepalive_ws
        if ws is None or ws.closing or ws.opts.keepalive is None:
            return False
        proto.ws_send((PingFrame(b"tether-keepalive"),), ws.stream)
        if ws.opts.pong_timeout is not None and transport is not None:
            self._marks.append((ws.pongs_received, transport.bytes_read, transport.pauses))
            self._schedule(Timer.PONG_DEADLINE, ws.opts.pong_timeout)
        self._schedule(Timer.WS_PING, ws.opts.keepalive)
        return True

    def pong_deadline(
        self, proto: ProtocolEngine | None, transport: Transport | None
    ) -> PongTimeout | None:
        """A ping's deadline: why the peer is dead if it sent nothing since, not even the pong.

        Bytes from the peer since the ping show it alive as well as a pong
        (the pong may be behind them, not read yet). While reading is paused
        nothing can be read: judged again once more time has passed, and so
        if it was paused at any time since the mark (reading may have resumed
        a moment ago, the bytes waiting not read yet): the peer is dead only
        after a whole ``pong_timeout`` in which it could be read.
        """
        ws = proto.keepalive_ws if proto is not None else None
        # Deadlines fire in the order of their pings: each checks its own ping's mark.
        mark = self._marks.pop(0) if self._marks else None
        if ws is None or mark is None or transport is None:
            return None
        pongs, read, pauses = mark
        if ws.pongs_received > pongs or transport.bytes_read > read:
            return None
        paused = transport.reads_paused or transport.pauses != pauses
        if paused and ws.opts.pong_timeout is not None:
            self._marks.insert(0, (pongs, read, transport.pauses))
            self._schedule(Timer.PONG_DEADLINE, ws.opts.pong_timeout)
            return None
        return PongTimeout(
            f"no pong within {ws.opts.pong_timeout} s of a ping: the connection is considered dead"
        )
