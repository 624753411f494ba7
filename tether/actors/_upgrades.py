"""The Websocket upgrades of a connection: those asked for, the one that won, the one to repeat.

A connection remembers each ``ws_upgrade`` command until its answer ends:
the one the server accepts becomes the connection's Websocket (the
handle's ``ws_stream``, and with ``reupgrade`` the upgrade repeated after
each reconnect, until the user sends a close frame, which is final as in
Gun); one refused (a response, then its body) or failed is forgotten
when its answer ends, so a long-lived connection whose upgrades are
refused keeps none of them.
"""

from __future__ import annotations

from tether._events import Event, StreamRef
from tether.actors import _messages as msg
from tether.actors._handle import Connection
from tether.actors._routing import ends_stream

__all__ = ["Upgrades"]


class Upgrades:
    """The upgrades of the current connection. Called by the connection actor's turn only.

    ``waiting``: the upgrade commands by stream that have no answer yet
    (read-only: empty, usually, so that a read need look no further).
    """

    __slots__ = ("_conn", "waiting")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.waiting: dict[StreamRef, msg.WsUpgrade] = {}

    def asked(self, command: msg.WsUpgrade) -> None:
        """The upgrade ``command`` went out."""
        self.waiting[command.stream] = command

    def upgraded(self, stream: StreamRef, *, repeatable: bool = True) -> msg.WsUpgrade | None:
        """``stream``'s upgrade succeeded: its command (None if not this connection's).

        ``repeatable``: False for a Websocket inside a tunnel, which a
        reconnect does not bring back (the tunnel is not redone).
        """
        self._conn._set_ws_stream(stream)
        command = self.waiting.pop(stream, None)
        self.waiting.clear()
        if command is not None:
            again = command.opts.reupgrade and repeatable
            self._conn._reupgrade = command if again else None
        return command

    def answered(self, events: list[Event]) -> None:
        """Forget the upgrades whose answer (a refusal, a failure) ended with ``events``."""
        waiting = self.waiting
        for event in events:
            stream = getattr(event, "stream", None)
            if stream in waiting and ends_stream(event):
                del waiting[stream]

    def closed_by_user(self) -> None:
        """The user sent a close frame: no upgrade is repeated after a reconnect."""
        self._conn._reupgrade = None

    def lost(self) -> None:
        """The connection is lost: no upgrade is waiting, and there is no Websocket."""
        self.waiting.clear()
        self._conn._set_ws_stream(None)

    def again(self) -> msg.WsUpgrade | None:
        """At a new ``Up``: the upgrade to repeat (``reupgrade``), as a new command."""
        last = self._conn._reupgrade
        if last is None:
            return None
        return msg.WsUpgrade(StreamRef(), last.target, last.headers, last.opts)
