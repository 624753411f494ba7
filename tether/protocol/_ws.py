"""Websocket over wsproto: the client handshake and the frame layer.

The upgrade request travels on tether's own h11 connection (so it queues
behind earlier requests like any other), which is why this module does not
use ``wsproto.WSConnection``: it builds the handshake headers itself, checks
the 101 response (RFC 6455 4.1, steps 1-6 of the client's validation), and
then hands the bytes h11 read past the 101 to a frame-level
``wsproto.connection.Connection``, as wsproto's own ``H11Handshake`` does.

wsproto delivers messages in fragments and leaves the pong and the close
reply to its user; :class:`WsClient` reassembles messages (enforcing
``max_message_size`` as data arrives, not after), answers pings, completes
the close handshake and says when the TCP connection should be closed.

A bad frame that arrives while the owner may still be answering messages
(one was delivered and the owner has sent nothing since) does not cut off
those answers: the owner runs in another thread and may not even have
seen the messages yet. The ``Error`` is reported at once and nothing more
is read, but the close frame waits for :data:`FAIL_LINGER` seconds
(:meth:`WsClient.fail_now`, called by the connection actor's timer), as a
client that handles frames one by one answers a message before it even
parses the bad frame after it. Whether the bad frame came in the same read
or, byte by byte, in later ones (Autobahn 3.4) makes no difference.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import wsproto.events as wse
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import client_extensions_handshake
from wsproto.utilities import LocalProtocolError as WsLocalProtocolError
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError
from wsproto.utilities import generate_accept_token, generate_nonce, split_comma_header

from tether._errors import (
    ConnectionClosed,
    NotUpgradedError,
    RemoteProtocolError,
    UpgradeError,
    WsClosed,
)
from tether._events import Error, Event, Headers, StreamRef, Ws
from tether._frames import Binary, Close, Frame, Ping, Pong, Text
from tether._options import WsOpts
from tether.protocol import _mask
from tether.protocol import _phases as phases
from tether.protocol._framing import BINARY, TEXT, MaskingKeys, masked_frame
from tether.protocol._reader import FrameReader, wsproto_is_idle
from tether.protocol._received import ws_message
from tether.protocol._validate import HeaderList

_mask.install()  # C masking when wsaccel is installed; wsproto's own otherwise

__all__ = ["FAIL_LINGER", "WsClient", "WsHandshake"]

# Close codes (RFC 6455 7.4.1).
_MESSAGE_TOO_BIG = 1009
# The most raw deflate can inflate: one 258-byte match per 2 bits (RFC 1951), 1032:1.
_DEFLATE_MAX_RATIO = 1032
_MIN_INFLATE_SLICE = 64
# Received binary fragments shorter than this share one list entry (see WsClient).
_MIN_BINARY_PART = 1024

FAIL_LINGER = 0.25
"""Seconds the close frame of a failed Websocket waits when messages came just before."""


class WsHandshake:
    """One upgrade attempt: the request headers to send and the check of the reply."""

    def __init__(self, user_headers: HeaderList, opts: WsOpts) -> None:
        self.opts = opts
        self._nonce = generate_nonce()
        self._extensions: list[Extension] = [_deflate(opts)] if opts.compress else []
        self.offered_protocols = list(opts.protocols)
        for name, value in user_headers:
            if name == b"sec-websocket-protocol":
                self.offered_protocols += split_comma_header(value)
        self.user_headers = user_headers

    def request_headers(self) -> HeaderList:
        """The handshake headers, then the user's (user values win for the ones they set)."""
        given = {name for name, _ in self.user_headers}
        headers: HeaderList = [
            (b"connection", b"upgrade"),
            (b"upgrade", b"websocket"),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-key", self._nonce),
        ]
        if self.opts.protocols and b"sec-websocket-protocol" not in given:
            headers.append((b"sec-websocket-protocol", ", ".join(self.opts.protocols).encode()))
        offers = []
        for ext in self._extensions:
            params = ext.offer()
            if params is True:
                offers.append(ext.name)
            elif params:
                offers.append(f"{ext.name}; {params}")
        if offers and b"sec-websocket-extensions" not in given:
            headers.append((b"sec-websocket-extensions", ", ".join(offers).encode()))
        headers = [h for h in headers if h[0] not in given or h[0] == b"sec-websocket-key"]
        return headers + [h for h in self.user_headers if h[0] != b"sec-websocket-key"]

    def accept(self, headers: Headers) -> list[Extension]:
        """Check the server's 101 headers; return the negotiated extensions.

        Raises:
            UpgradeError: the 101 does not complete a valid Websocket handshake.
        """
        try:
            return self._accept(headers)
        except (ValueError, IndexError) as exc:  # wsproto's parsers: non-ASCII, bad params
            raise UpgradeError(f"malformed handshake header in the 101 response: {exc}") from exc

    def _accept(self, headers: Headers) -> list[Extension]:
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name, []).append(value)

        def tokens(name: str) -> list[str]:
            return [
                t.lower()
                for v in values.get(name, [])
                for t in split_comma_header(v.encode("latin-1"))
            ]

        if "websocket" not in tokens("upgrade"):
            raise UpgradeError("101 response without 'upgrade: websocket'")
        if "upgrade" not in tokens("connection"):
            raise UpgradeError("101 response without 'connection: upgrade'")
        self._check_accept_and_protocol(values)
        return self._accept_extensions(values)

    def _check_accept_and_protocol(self, values: dict[str, list[str]]) -> None:
        """The 101's ``sec-websocket-accept`` answers our key; its subprotocol was offered."""
        expected = generate_accept_token(self._nonce).decode()
        if values.get("sec-websocket-accept") != [expected]:
            raise UpgradeError("101 response with a wrong sec-websocket-accept")
        self._check_protocol(values)

    def extended_connect_headers(self) -> HeaderList:
        """The handshake headers of an RFC 8441 extended CONNECT (HTTP/2), then the user's.

        The same offer as :meth:`request_headers` without what HTTP/2 has no
        use for: ``connection``, ``upgrade`` and the key (the stream itself
        is the proof, RFC 8441 5).
        """
        dropped = {b"connection", b"upgrade", b"sec-websocket-key"}
        return [h for h in self.request_headers() if h[0] not in dropped]

    def accept_extended_connect(self, headers: Headers) -> list[Extension]:
        """Check the server's ``200`` to an extended CONNECT; return the negotiated extensions.

        Raises:
            UpgradeError: the answer chose what was not offered.
        """
        values: dict[str, list[str]] = {}
        for name, value in headers:
            values.setdefault(name, []).append(value)
        try:
            self._check_protocol(values)
            return self._accept_extensions(values)
        except (ValueError, IndexError) as exc:
            raise UpgradeError(f"malformed handshake header in the 200 response: {exc}") from exc

    def _check_protocol(self, values: dict[str, list[str]]) -> None:
        """The subprotocol the server chose, if any, was offered."""
        chosen = values.get("sec-websocket-protocol", [])
        if chosen and (len(chosen) > 1 or chosen[0] not in self.offered_protocols):
            raise UpgradeError(f"server chose subprotocol {chosen!r}, which was not offered")

    def _accept_extensions(self, values: dict[str, list[str]]) -> list[Extension]:
        """The extensions the 101 accepted, each one we offered, once, as we offered it."""
        accepted = [
            e
            for v in values.get("sec-websocket-extensions", [])
            for e in split_comma_header(v.encode("latin-1"))
        ]
        try:
            extensions = client_extensions_handshake(accepted, self._extensions)
        except WsRemoteProtocolError as exc:
            raise UpgradeError(f"server accepted an extension not offered: {exc}") from exc
        if len(extensions) != len({e.name for e in extensions}):
            raise UpgradeError("server accepted the same extension twice")
        for ext, response in zip(extensions, accepted, strict=True):
            if isinstance(ext, PerMessageDeflate):
                _check_deflate_response(ext, self.opts, response)
        return extensions


def _deflate(opts: WsOpts) -> PerMessageDeflate:
    return PerMessageDeflate(
        client_no_context_takeover=opts.client_no_context_takeover,
        client_max_window_bits=opts.client_max_window_bits,
        server_no_context_takeover=opts.server_no_context_takeover,
        server_max_window_bits=opts.server_max_window_bits,
    )


def _check_deflate_response(ext: PerMessageDeflate, opts: WsOpts, response: str) -> None:
    """Hold the server to what tether asked for (RFC 7692 7.1.1, 7.1.2).

    wsproto's ``finalize`` takes the response's values as they come; a server
    that accepts the offer must agree to the limits asked of it, and the
    client never compresses with a window larger than it offered.
    """
    params: dict[str, str | None] = {}
    for param in response.split(";")[1:]:
        name, _, value = param.partition("=")
        params[name.strip().lower()] = value.strip().strip('"') or None
    if opts.server_no_context_takeover and "server_no_context_takeover" not in params:
        raise UpgradeError("server accepted permessage-deflate but not server_no_context_takeover")
    if opts.server_max_window_bits < 15 and (
        "server_max_window_bits" not in params
        or ext.server_max_window_bits > opts.server_max_window_bits
    ):
        raise UpgradeError(
            "server accepted permessage-deflate without server_max_window_bits "
            f"<= {opts.server_max_window_bits}"
        )
    ext.client_max_window_bits = min(ext.client_max_window_bits, opts.client_max_window_bits)


def _to_wsproto(frame: Frame) -> wse.Event:
    match frame:
        case Text(data=text):
            return wse.TextMessage(data=text)
        case Binary(data=data):
            return wse.BytesMessage(data=data)
        case Ping(payload=payload):
            return wse.Ping(payload=payload)
        case Pong(payload=payload):
            return wse.Pong(payload=payload)
        case Close(code=code, reason=reason):
            return wse.CloseConnection(code=code, reason=reason)


class WsClient:
    """The Websocket frame layer of one upgraded connection (sans-I/O).

    ``emit`` receives events for the owner, ``write`` bytes for the wire;
    :attr:`close_reason` becomes non-None once the TCP connection should be
    closed (after the bytes written so far are sent).
    """

    def __init__(
        self,
        conn: Any,
        stream: StreamRef,
        opts: WsOpts,
        *,
        extensions: list[Extension],
        trailing_data: bytes,
        emit: Callable[[Event], None],
        write: Callable[[bytes | bytearray], None],
        flow: int | None = None,
        observe: phases.Observer | None = None,
    ) -> None:
        self._conn = conn
        self.stream = stream
        # The event handler's frame phases (tether.protocol._phases), if wanted.
        self._observe = observe
        self._extension_names = tuple(e.name for e in extensions if e.enabled())
        self._opts = opts
        #: Gun's flow credit: ``Ws`` events it may still deliver before the
        #: driver stops reading (None: no flow control). A read's frames are
        #: all delivered, so it may go below zero, as in Gun.
        self.flow = flow
        # Frames of the message being received (ws_opts max_fragments).
        self._fragments = 0
        self._emit = emit
        self._write = write
        self._ws = WsConnection(ConnectionType.CLIENT, extensions)
        self._trailing = trailing_data  # read by start(), as any later read
        # With no extension enabled (wsproto keeps the same ones: those whose
        # enabled() is true when the connection is built), a message frame is
        # the payload masked behind a header: tether builds it itself
        # (tether.protocol._framing) instead of copying it through wsproto,
        # and reads the server's whole message frames itself too
        # (tether.protocol._reader), as long as wsproto is idle.
        self._plain = not any(e.enabled() for e in extensions)
        self._keys = MaskingKeys()
        self._reader = (
            FrameReader(self._on_message_part, self._to_wsproto, self._on_invalid)
            if self._plain and wsproto_is_idle(self._ws)
            else None
        )
        _mask.load()  # once per process: the fastest masker installed, before the first frame
        # wsproto inflates whatever it is fed in one go: a 64 KiB read of
        # compressed zeros would become 64 MiB before max_message_size is
        # checked. Fed in slices that cannot inflate much past the limit, it
        # is checked after each slice instead.
        limit = opts.max_message_size
        deflate = any(isinstance(e, PerMessageDeflate) for e in extensions)
        self._slice = (
            max(limit // _DEFLATE_MAX_RATIO, _MIN_INFLATE_SLICE)
            if deflate and limit is not None
            else None
        )
        # The fragments of the binary message being received, joined once at
        # its end (a 1 MiB message arrives as ~16 fragments, one per 64 KiB
        # read: growing one buffer and copying it out cost two 1 MiB copies).
        # A list entry costs ~40 bytes, so fragments shorter than
        # _MIN_BINARY_PART share a bytearray part: a server sending 1-byte
        # fragments cannot make the list 40 times max_message_size.
        self._binary: list[bytes | bytearray | memoryview] = []
        # Text is decoded part by part (by wsproto or the frame reader); one buffer holds it.
        self._text = io.StringIO()
        self._size = 0
        self._sent_close: Close | None = None
        self._failure: RemoteProtocolError | None = None  # reported, close frame not yet sent
        # A message went to the owner and the owner has sent nothing since: it
        # may still be answering, so a failure now lingers (FAIL_LINGER).
        self._owner_may_answer = False
        self.close_reason: BaseException | None = None
        #: Pong frames received so far: keepalive compares it before and after a ping.
        self.pongs_received = 0

    @property
    def failing(self) -> bool:
        """True while a failure lingers: reported, its close frame due in :data:`FAIL_LINGER`."""
        return self._failure is not None and self.close_reason is None

    @property
    def opts(self) -> WsOpts:
        """The options this Websocket was upgraded with."""
        return self._opts

    @property
    def open(self) -> bool:
        """True while messages may go both ways: no close frame sent or received, no failure.

        (A close reason comes only with one of those, so it is False then too.)
        """
        return self._ws.state is ConnectionState.OPEN and self._failure is None

    @property
    def closing(self) -> bool:
        """True once a close frame went out or came in: no more messages can be sent."""
        return self._ws.state is not ConnectionState.OPEN

    def start(self) -> None:
        """Process frames that arrived together with the 101 response."""
        trailing, self._trailing = self._trailing, b""
        if trailing:
            self.receive_data(trailing)

    def send(self, frames: tuple[Frame, ...]) -> None:
        """Send frames in order; frames that cannot go out are reported in one ``Error``."""
        observe = self._observe
        for index, frame in enumerate(frames):
            # self.closing, without two property calls per frame
            if self.close_reason is not None or self._ws.state is not ConnectionState.OPEN:
                unsent = frames[index:]
                self._emit(
                    Error(
                        self._conn,
                        self.stream,
                        NotUpgradedError(
                            f"the websocket is closing; {len(unsent)} frame(s) not sent", unsent
                        ),
                    )
                )
                return
            if observe is not None:
                phases.sending(observe, self.stream, self._extension_names, frame)
            try:
                self._send(frame)
            except WsLocalProtocolError as exc:  # pragma: no cover - guarded by `closing`
                unsent = frames[index:]
                self._emit(Error(self._conn, self.stream, NotUpgradedError(str(exc), unsent)))
                return
            if observe is not None:
                phases.sent(observe, self.stream, self._extension_names, frame)
            self._owner_may_answer = False
            if isinstance(frame, Close):
                self._sent_close = frame

    def _send(self, frame: Frame) -> None:
        """Write one frame; the connection is OPEN (checked by the caller)."""
        if self._plain:
            if isinstance(frame, Binary):
                chunks = masked_frame(BINARY, frame.data, self._keys)
            elif isinstance(frame, Text):
                chunks = masked_frame(TEXT, frame.data.encode(), self._keys)
            else:
                self._write(self._ws.send(_to_wsproto(frame)))
                return
            write = self._write
            for chunk in chunks:
                write(chunk)
            return
        self._write(self._ws.send(_to_wsproto(frame)))

    def _reply(self, reply: wse.Event, frame: Frame) -> None:
        """Write a frame the protocol sends of its own (a pong, a close), observed as any."""
        observe = self._observe
        if observe is not None:
            phases.sending(observe, self.stream, self._extension_names, frame)
        self._write(self._ws.send(reply))
        if observe is not None:
            phases.sent(observe, self.stream, self._extension_names, frame)

    def _received(self, frame: Frame) -> None:
        """The event handler's receive phases for ``frame`` (a handler is set)."""
        assert self._observe is not None
        rsv = None if self._extension_names else 0
        phases.received(self._observe, self.stream, self._extension_names, rsv, frame)

    @property
    def flow_paused(self) -> bool:
        """True while no more ``Ws`` events may be delivered (the flow credit is spent)."""
        flow = self.flow
        return flow is not None and flow <= 0

    def update_flow(self, increment: int) -> None:
        """Gun's ``update_flow``: ``increment`` more credit (nothing without flow control)."""
        if self.flow is not None:
            self.flow += increment

    def _emit_ws(self, event: Ws) -> None:
        """Tell the owner a ``Ws`` event, spending one flow credit."""
        if self.flow is not None:
            self.flow -= 1
        self._emit(event)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket; ``b""`` means the server closed TCP."""
        if self.close_reason is not None:
            return  # failing or closed: anything more is ignored (RFC 6455 7.1.7)
        if self._failure is not None:
            if not data:  # the server gave up first: no more lingering
                self.fail_now()
            return
        if not data:
            self._ws.receive_data(None)
            self._set_close_reason(self._lost_reason())
            return
        reader = self._reader
        if reader is not None and not reader.handed:  # the common case, one call shorter
            reader.feed(data)
            return
        size = self._slice
        if size is None or len(data) <= size:
            self._feed(data)
            return
        for start in range(0, len(data), size):
            if not self._feed(data[start : start + size]):
                return

    def _feed(self, data: bytes) -> bool:
        """Process ``data``; False once the connection is failing or closed."""
        reader = self._reader
        if reader is not None and (not reader.handed or wsproto_is_idle(self._ws)):
            reader.handed = False
            reader.feed(data)
        else:
            self._to_wsproto(data)
        return self.close_reason is None

    def _to_wsproto(self, data: bytes) -> bool:
        """Let wsproto read ``data``; False once the connection is failing or closed."""
        self._ws.receive_data(data)
        self._process()
        return self.close_reason is None and self._failure is None

    def _on_invalid(self, code: int, reason: str) -> None:
        """Invalid UTF-8 the frame reader found: what wsproto reports it as."""
        self._on_close(wse.CloseConnection(code, reason), linger=self._owner_may_answer)

    def _lost_reason(self) -> BaseException:
        if self._ws.state is ConnectionState.CLOSED and self._sent_close is not None:
            return WsClosed(self._sent_close.code, self._sent_close.reason, by_server=False)
        return ConnectionClosed("the server closed the connection without a close handshake")

    def _set_close_reason(self, reason: BaseException) -> None:
        if self.close_reason is None:
            self.close_reason = reason  # a lingering failure's close frame went out, or never will

    def _process(self) -> None:
        for event in self._ws.events():
            if self.close_reason is not None or self._failure is not None:
                return
            match event:
                case wse.TextMessage() | wse.BytesMessage():
                    if (
                        event.frame_finished
                        and not event.message_finished
                        and not self._count_fragment()
                    ):
                        return
                    self._on_message_part(event.data, event.message_finished)
                case wse.Ping():
                    self._on_ping(event)
                case wse.Pong():
                    self._on_pong(event)
                case wse.CloseConnection():
                    self._on_close(event, linger=self._owner_may_answer)
                case _:  # pragma: no cover - wsproto yields nothing else after the handshake
                    pass

    def _on_ping(self, event: wse.Ping) -> None:
        payload = bytes(event.payload)
        if self._observe is not None:
            self._received(Ping(payload))
        if self._ws.state is ConnectionState.OPEN:  # no pong once we sent close
            self._reply(event.response(), Pong(payload))
        if not self._opts.silence_pings:
            self._emit_ws(Ws(self._conn, self.stream, Ping(payload)))

    def _on_pong(self, event: wse.Pong) -> None:
        self.pongs_received += 1
        payload = bytes(event.payload)
        if self._observe is not None:
            self._received(Pong(payload))
        if not self._opts.silence_pings:
            self._emit_ws(Ws(self._conn, self.stream, Pong(payload)))

    def _count_fragment(self) -> bool:
        """One more frame of the message being received; False if that is too many."""
        self._fragments += 1
        limit = self._opts.max_fragments
        if limit is not None and self._fragments >= limit:
            # With the last frame still to come, this message would be limit + 1 frames.
            self._fail(
                RemoteProtocolError(
                    f"message in more than ws_opts max_fragments ({limit}) frames",
                    _MESSAGE_TOO_BIG,
                )
            )
            return False
        return True

    def _on_message_part(self, data: str | bytes | bytearray | memoryview, finished: bool) -> bool:
        """Add a part to the message (``str``: Text); False if that failed the connection.

        The parts come from wsproto's events or from the frame reader,
        which gives a frame over several reads as ``memoryview`` pieces of
        them: joined once here, its only copy. A whole message goes to the
        owner, who may then be answering it (a failure now lingers).
        """
        self._size += len(data)
        limit = self._opts.max_message_size
        if limit is not None and self._size > limit:
            self._fail(
                RemoteProtocolError(
                    f"message larger than max_message_size ({limit} bytes)", _MESSAGE_TOO_BIG
                )
            )
            return False
        if not finished:
            if isinstance(data, str):
                self._text.write(data)
            else:
                self._add_binary_part(data)
            return True
        self._size = 0
        self._fragments = 0
        whole: str | bytes
        if isinstance(data, str):
            if self._text.tell():  # the last of several parts
                self._text.write(data)
                data, self._text = self._text.getvalue(), io.StringIO()
            whole = data
        elif self._binary:  # the last of several parts
            self._add_binary_part(data)
            whole, self._binary = b"".join(self._binary), []
        else:
            whole = bytes(data)  # bytes from wsproto 1.3 or the reader: no copy
        if self.flow is not None:
            self.flow -= 1
        event = ws_message(self._conn, self.stream, whole)
        if self._observe is not None:
            self._received(event.frame)
        self._emit(event)
        self._owner_may_answer = True
        return True

    def _add_binary_part(self, data: bytes | bytearray | memoryview) -> None:
        parts = self._binary
        if len(data) >= _MIN_BINARY_PART:
            parts.append(data)
        elif parts and isinstance(parts[-1], bytearray):
            parts[-1] += data
        else:
            parts.append(bytearray(data))

    def _on_close(self, event: wse.CloseConnection, *, linger: bool) -> None:
        state = self._ws.state
        if state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            # wsproto reports a parse failure as a CloseConnection without
            # changing state: fail the connection with the code it chose.
            error = RemoteProtocolError(event.reason or "invalid frame", int(event.code))
            self._fail(error, linger=linger)
            return
        received = Close(int(event.code), event.reason or "")
        if self._observe is not None:
            self._received(received)
        self._emit_ws(Ws(self._conn, self.stream, received))
        if state is ConnectionState.REMOTE_CLOSING:
            # The server started the handshake: echo its code (RFC 6455 5.5.1);
            # wsproto answers a reserved code (1005 "no status") with an empty close.
            echo = event.response()
            self._reply(echo, Close(int(echo.code), echo.reason or ""))
            self._set_close_reason(WsClosed(int(event.code), event.reason or "", by_server=True))
        else:  # CLOSED: this was the server's answer to our close frame
            self._set_close_reason(self._lost_reason())

    def _fail(self, error: RemoteProtocolError, *, linger: bool = False) -> None:
        """Fail the Websocket connection (RFC 6455 7.1.7): close frame, then TCP close.

        With ``linger`` (the owner may still be answering messages) the close frame waits
        for :meth:`fail_now`, so the owner's answers to them still go out.
        """
        self._emit(Error(self._conn, self.stream, error))
        self._failure = error
        if not linger:
            self.fail_now()

    def fail_now(self) -> None:
        """Send the close frame of a lingering failure and say the TCP connection must close."""
        error = self._failure
        if error is None or self.close_reason is not None:
            return
        if self._ws.state is ConnectionState.OPEN and error.close_code is not None:
            self._reply(wse.CloseConnection(code=error.close_code), Close(error.close_code))
        self._set_close_reason(error)
