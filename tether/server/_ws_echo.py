"""The Websocket echo, with text commands that make the server misbehave on request.

Every message comes back whole and in order, text as text and binary as
binary (fragments are reassembled first); pings get pongs; a close from the
client gets its close reply, then the server closes TCP. A text message
that is one of the commands below is obeyed instead of echoed, so client
tests can provoke what a real server only does rarely:

- ``!close <code> <reason...>``  close with that code and reason, wait (5 s
  at most) for the client's reply, then close TCP
- ``!ping <payload>``            send a ping with that payload
- ``!drop``                      close TCP at once, no close frame
- ``!bad-utf8``                  a text frame that is not UTF-8
- ``!masked``                    a masked frame, which a server must not send
- ``!fragments <n>``             the text ``abc`` in ``n`` frames
- ``!big <n> [<k>]``             a binary message of ``n`` bytes of ``x`` (in ``k``
  frames if given)

A client that breaks the protocol gets the close wsproto asks for, then the
connection is closed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage

from tether.server._client_socket import ClientSocket

__all__ = ["WsEcho"]

# How long ``!close`` waits for the client's close reply.
_CLOSE_WAIT = 5.0
_FRAGMENTED_TEXT = "abc"
_MAX_FRAGMENTS = 1000
_MAX_BIG = 1 << 30
# A final, unmasked text frame of two bytes that are not UTF-8 (0xc3 starts a
# two-byte sequence, 0x28 cannot continue it).
_BAD_UTF8_FRAME = b"\x81\x02\xc3\x28"
# The masking key of RFC 6455 section 5.7's examples.
_MASK = b"\x37\xfa\x21\x3d"
_MASKED_FRAME = b"\x81\x85" + _MASK + bytes(b ^ _MASK[i % 4] for i, b in enumerate(b"hello"))


def _number(text: str, maximum: int, minimum: int = 0) -> int | None:
    """``text`` as a decimal integer within bounds, or None."""
    if not re.fullmatch(r"[0-9]{1,10}", text):
        return None
    value = int(text)
    return value if minimum <= value <= maximum else None


def _split(text: str, pieces: int) -> list[str]:
    """``text`` cut into ``pieces`` consecutive parts (empty ones when it runs out)."""
    size = len(text)
    return [text[i * size // pieces : (i + 1) * size // pieces] for i in range(pieces)]


class WsEcho:
    """The server side of one Websocket (run it on the connection's thread).

    Args:
        client: The connection's socket, already switched to Websocket.
        ws: The wsproto connection, fed with the bytes that followed the upgrade.
    """

    def __init__(self, client: ClientSocket, ws: WsConnection) -> None:
        self._client = client
        self._ws = ws
        self._text: list[str] = []
        self._binary = bytearray()
        self._close_deadline: float | None = None
        self._commands: dict[str, Callable[[str], bool | None]] = {
            "!close": self._command_close,
            "!ping": self._command_ping,
            "!drop": self._command_drop,
            "!bad-utf8": lambda _: self._client.send(_BAD_UTF8_FRAME),
            "!masked": lambda _: self._client.send(_MASKED_FRAME),
            "!fragments": self._command_fragments,
            "!big": self._command_big,
        }

    def run(self) -> None:
        """Echo until the Websocket or the connection ends; the caller releases the socket."""
        while True:
            for event in self._ws.events():
                if not self._handle(event):
                    return
            if self._close_deadline is not None:
                remaining = self._close_deadline - time.monotonic()
                if remaining <= 0:
                    return  # the client never answered our close
                self._client.set_timeout(remaining)
            data = self._client.recv()
            if not data:
                return  # the client went away (or did not answer our close in time)
            self._ws.receive_data(data)

    def _send(self, event: Event) -> bool:
        return self._client.send(self._ws.send(event))

    def _handle(self, event: Event) -> bool:
        """Act on one wsproto event; False once the connection is over."""
        if isinstance(event, TextMessage):
            self._text.append(event.data)
            if not event.message_finished:
                return True
            text = "".join(self._text)
            self._text.clear()
            return self._on_text(text)
        if isinstance(event, BytesMessage):
            self._binary += event.data
            if not event.message_finished:
                return True
            data = bytes(self._binary)
            self._binary.clear()
            return self._reply(BytesMessage(data=data))
        if isinstance(event, Ping):
            return self._reply(event.response())
        if isinstance(event, CloseConnection):
            # OPEN here means wsproto found a protocol error and suggests this close;
            # REMOTE_CLOSING means the client closed; CLOSED means it answered ours.
            if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                self._send(event.response())
            self._client.close_gracefully()
            return False
        return True  # a pong

    def _reply(self, event: Event) -> bool:
        """Send ``event`` unless we are closing (then nothing may be sent but a close)."""
        if self._ws.state is not ConnectionState.OPEN:
            return True
        return self._send(event)

    def _on_text(self, text: str) -> bool:
        if self._ws.state is ConnectionState.OPEN:
            name, _, argument = text.partition(" ")
            command = self._commands.get(name)
            if command is not None:
                result = command(argument)
                if result is not None:
                    return result
        return self._reply(TextMessage(data=text))

    # Commands: True to go on, False when the connection is over, None to echo instead.

    def _command_close(self, argument: str) -> bool | None:
        code_text, _, reason = argument.partition(" ")
        code = _number(code_text, 0xFFFF) if code_text else 1000
        if code is None:
            return None
        if not self._send(CloseConnection(code=code, reason=reason or None)):
            return False
        self._close_deadline = time.monotonic() + _CLOSE_WAIT
        return True

    def _command_ping(self, argument: str) -> bool | None:
        return self._send(Ping(payload=argument.encode("utf-8")))

    def _command_drop(self, argument: str) -> bool | None:
        self._client.abort()
        return False

    def _command_fragments(self, argument: str) -> bool | None:
        count = _number(argument, _MAX_FRAGMENTS, minimum=1)
        if count is None:
            return None
        pieces = _split(_FRAGMENTED_TEXT, count)
        return all(
            self._send(TextMessage(data=piece, message_finished=i == count - 1))
            for i, piece in enumerate(pieces)
        )

    def _command_big(self, argument: str) -> bool | None:
        size_text, _, frames_text = argument.partition(" ")
        size = _number(size_text, _MAX_BIG)
        frames = _number(frames_text, _MAX_FRAGMENTS, minimum=1) if frames_text else 1
        if size is None or frames is None:
            return None
        if frames == 1:
            return self._send(BytesMessage(data=b"x" * size))
        pieces = _split("x" * size, frames)
        return all(
            self._send(BytesMessage(data=piece.encode("ascii"), message_finished=i == frames - 1))
            for i, piece in enumerate(pieces)
        )
