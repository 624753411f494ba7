"""A scripted HTTP/2 (h2c) server on 127.0.0.1: h2's server side on a real socket, in a thread.

For what the full servers will not do on cue: a GOAWAY that leaves
streams unprocessed, a stream reset. One connection at a time, each read
bounded by a timeout, the thread joined at :meth:`ScriptServer.stop`.

Behaviour, per path, on every connection but the first with ``goaway_after``:

- ``/reset`` -> RST_STREAM(REFUSED_STREAM)
- an extended CONNECT (RFC 8441: the server allows it) -> 200, and the
  stream stays open: what comes on it is read and never answered (a
  Websocket whose close handshake never ends)
- anything else -> 200 with the body ``b"conn<N> <path>"`` (N: the connection's number, from 1)

With ``goaway_after=n``, the first connection reads until it has ``n``
requests, answers the first one, then sends GOAWAY(NO_ERROR) naming that
first stream as the last it processed, and closes. With ``goaway_holds``
too, its GOAWAY names the last stream it received (as hypercorn's may),
and it answers nothing more and keeps the connection open until the
client closes it.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
from types import TracebackType
from typing import Self

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings

__all__ = ["ScriptServer"]

_TIMEOUT = 5.0


class ScriptServer:
    """See the module docstring; use as a context manager."""

    host = "127.0.0.1"

    def __init__(self, goaway_after: int | None = None, *, goaway_holds: bool = False) -> None:
        self._goaway_after = goaway_after
        self._goaway_holds = goaway_holds
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind((self.host, 0))
        self._listener.listen(8)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="h2-script-server", daemon=True)
        self.connections = 0
        #: The number of each PING received, as they come (1, 2, ...).
        self.pings: queue.Queue[int] = queue.Queue()
        self._ping_count = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, end the connection in progress and join the thread."""
        self._stopping.set()
        self._thread.join(_TIMEOUT + 1)
        self._listener.close()
        if self._thread.is_alive():
            raise RuntimeError("the scripted h2 server did not stop in time")

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            with sock:
                sock.settimeout(0.1)
                with contextlib.suppress(OSError):  # the client went away: the next one
                    self._serve(sock, self.connections)

    def _serve(self, sock: socket.socket, number: int) -> None:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding=None)
        )
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
        sock.sendall(conn.data_to_send())
        goaway_after = self._goaway_after if number == 1 else None
        pending: list[tuple[int, bytes]] = []
        while not self._stopping.is_set():
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            self._received(conn, conn.receive_data(data), pending)
            if goaway_after is not None:
                if len(pending) >= goaway_after:
                    self._go_away(conn, sock, pending, number)
                    return
            else:
                for stream_id, path in pending:
                    self._answer(conn, stream_id, path, number)
                pending.clear()
            sock.sendall(conn.data_to_send())

    def _received(
        self,
        conn: h2.connection.H2Connection,
        events: list[h2.events.Event],
        pending: list[tuple[int, bytes]],
    ) -> None:
        """Count the PINGs, open the extended CONNECTs, keep the requests to answer."""
        for event in events:
            if isinstance(event, h2.events.PingReceived):  # h2 sends the ACK itself
                self._ping_count += 1
                self.pings.put(self._ping_count)
            if isinstance(event, h2.events.RequestReceived):
                headers = dict(event.headers)
                if headers[b":method"] == b"CONNECT":
                    conn.send_headers(event.stream_id, [(b":status", b"200")])
                    continue
                pending.append((event.stream_id, headers[b":path"]))

    def _go_away(
        self,
        conn: h2.connection.H2Connection,
        sock: socket.socket,
        pending: list[tuple[int, bytes]],
        number: int,
    ) -> None:
        """Answer the first request, send GOAWAY(NO_ERROR); then close, or hold the connection."""
        stream_id, path = pending[0]
        self._answer(conn, stream_id, path, number)
        last = pending[-1][0] if self._goaway_holds else stream_id
        conn.close_connection(h2.errors.ErrorCodes.NO_ERROR, last_stream_id=last)
        sock.sendall(conn.data_to_send())
        if self._goaway_holds:
            self._hold(sock)

    def _hold(self, sock: socket.socket) -> None:
        """Read and ignore until the client closes (or the server stops)."""
        while not self._stopping.is_set():
            try:
                if not sock.recv(65536):
                    return
            except TimeoutError:
                continue

    @staticmethod
    def _answer(
        conn: h2.connection.H2Connection, stream_id: int, path: bytes, number: int
    ) -> None:
        if path == b"/reset":
            conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            return
        body = f"conn{number} ".encode() + path
        conn.send_headers(
            stream_id, [(b":status", b"200"), (b"content-length", str(len(body)).encode())]
        )
        conn.send_data(stream_id, body, end_stream=True)
