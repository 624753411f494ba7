"""``tether ws URL``: an interactive Websocket session, websocat style.

Each line read from stdin is sent as a text frame; each frame received is
written to stdout (text as a line, binary as its bytes and a newline). The
connection's life (``Up``, ``Upgrade``, ``Down``) is shown on stderr. EOF
on stdin sends a close frame (1000, then ``conn.shutdown()``) and exits 0
once the close handshake is done.

The session is an event loop over one ``tether.Inbox``: the
connection tells it its events, and a stdin thread tells it the lines it
reads, so one thread decides everything, in order, as an actor would.

Without ``--reupgrade`` a lost Websocket ends the session (Gun reconnects
speaking HTTP, which is of no use here): exit 0 if the server closed it
with a close frame, else the failure's exit code. With ``--reupgrade``
tether reconnects (``--retry`` attempts, exponential backoff) and upgrades
again; lines typed meanwhile are held and sent after the next ``Upgrade``.
Each wait before a reconnect is announced on stderr (why, which retry,
how long), and running out of retries ends the session saying so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
from dataclasses import dataclass

import tether
from tether._cli._exit import CliFailure, ExitCode, classify
from tether._cli._target import (
    Target,
    add_connection_options,
    parse_headers,
    parse_url,
    tls_options,
)
from tether._format import describe, describe_frame

__all__ = ["add_parser", "ws"]

_CLOSE_TIMEOUT = 5.0
_READ_SIZE = 65536
_BACKOFF = tether.ExponentialBackoff(base=0.25, cap=5.0)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    """Declare ``tether ws`` and its options."""
    p = sub.add_parser(
        "ws",
        help="an interactive Websocket session: stdin lines out, frames in (websocat-like)",
        description=(
            "Send each stdin line as a text frame, print each frame received; "
            "connection events go to stderr. EOF on stdin closes the Websocket."
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="ws://HOST[:PORT]/PATH or wss://...")
    add_connection_options(p, "add a header to the upgrade request (repeatable)")
    p.add_argument(
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer a subprotocol (sec-websocket-protocol; repeatable)",
    )
    p.add_argument(
        "--reupgrade",
        action="store_true",
        help="after a lost connection, reconnect and upgrade again (ws_opts reupgrade)",
    )
    p.add_argument(
        "--retry",
        type=int,
        default=5,
        metavar="N",
        help="with --reupgrade: reconnect attempts, exponential backoff (default 5)",
    )


@dataclass(frozen=True, slots=True)
class _Line:
    """A line read from stdin (without its newline)."""

    text: str


@dataclass(frozen=True, slots=True)
class _Eof:
    """stdin is at its end."""


@dataclass(frozen=True, slots=True)
class _Retrying:
    """The connection waits ``delay`` seconds before reconnect attempt ``attempt`` (1-based)."""

    attempt: int
    delay: float


class _AnnouncedBackoff:
    """``_BACKOFF``, telling the session each delay it chose (``retry_backoff``).

    The connection calls it in its own thread right after it told the
    ``Down`` of a lost connection, or after an attempt failed (which tells
    the owner nothing), so the session hears of every wait, in order.
    """

    def __init__(self, inbox: tether.Inbox) -> None:
        self._inbox = inbox

    def __call__(self, attempt: int) -> float:
        delay = _BACKOFF(attempt)
        _tell_quietly(self._inbox, _Retrying(attempt, delay))
        return delay


@dataclass(frozen=True, slots=True)
class _StdinFailed:
    """stdin cannot be read, or a line is not text: the session ends with this message."""

    message: str


def _read_stdin(inbox: tether.Inbox, fd: int) -> None:
    """The stdin thread: tell each line, then EOF (or why it stopped), to the session's inbox.

    It reads the file descriptor with ``os.read``, not through ``sys.stdin``:
    a daemon thread blocked inside a buffered reader holds its lock, and the
    interpreter aborts at exit when it cannot take that lock.
    """
    pending = b""
    number = 0
    try:
        while True:
            chunk = os.read(fd, _READ_SIZE)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop() if chunk else b""
            if not chunk and lines[-1] == b"":
                lines.pop()  # the input ended with a newline
            for raw in lines:
                number += 1
                inbox.tell(_Line(raw.decode("utf-8").rstrip("\r")))
            if not chunk:
                inbox.tell(_Eof())
                return
    except tether.InboxClosedError:
        return  # the session ended first
    except UnicodeDecodeError:
        # A text frame must be UTF-8; sending a mangled line would be a silent change.
        _tell_quietly(inbox, _StdinFailed(f"line {number} of stdin is not UTF-8"))
    except OSError as exc:
        _tell_quietly(inbox, _StdinFailed(f"cannot read stdin: {exc.strerror or exc}"))


def _tell_quietly(inbox: tether.Inbox, message: object) -> None:
    with contextlib.suppress(tether.InboxClosedError):
        inbox.tell(message)


class _Session:
    """The state of one ``tether ws`` run; only the main thread touches it."""

    def __init__(
        self,
        conn: tether.Connection,
        target: Target,
        args: argparse.Namespace,
        headers: list[tuple[str, str]],
    ) -> None:
        self.conn = conn
        self.target = target
        self.args = args
        self.upgrade_headers = headers
        self.upgraded = False
        self.ever_upgraded = False
        self.pending: list[tether.Frame] = []  # lines typed while no Websocket was up
        self.eof = False
        self.closing = False
        self.lost: BaseException | None = None  # why the last Down happened, until announced

    def note(self, text: str) -> None:
        sys.stderr.write(f"* {text}\n")
        sys.stderr.flush()

    def send(self, frames: list[tether.Frame]) -> None:
        if not self.upgraded:
            self.pending += frames
            return
        try:
            self.conn.ws_send(frames)
        except tether.NotUpgradedError:  # lost just now: its Down is on the way
            self.pending += frames

    def maybe_close(self) -> None:
        """At EOF, close once everything typed has been handed to the Websocket."""
        if self.eof and self.upgraded and not self.pending and not self.closing:
            self.closing = True
            # 1000, a normal closure, as websocat's: shutdown() alone says 1001
            # (going away, Gun's); it then waits for the answer without a second frame.
            self.conn.ws_send(tether.Close(1000))
            self.conn.shutdown()

    def on_message(self, message: object) -> int | None:
        """Handle one message; an exit status ends the session."""
        match message:
            case tether.Down(reason=reason) as down:
                self.note(describe(down))
                self.upgraded = False
                return self.on_down(reason)
            case _Line() | _StdinFailed() | _Eof():
                self.on_input(message)
            case _:
                self.on_event(message)
        self.maybe_close()
        return None

    def on_input(self, message: _Line | _StdinFailed | _Eof) -> None:
        """What the stdin thread read."""
        match message:
            case _Line(text=text):
                self.send([tether.Text(text)])
            case _StdinFailed(message=text):
                raise CliFailure(ExitCode.FAILURE, text)
            case _Eof():
                self.eof = True  # closes once upgraded and what was typed is sent

    def on_event(self, message: object) -> None:
        """What the connection (or its retry announcer) told, but its Down."""
        match message:
            case tether.Up() as up:
                self.note(describe(up) + self.target.via)
                self.lost = None  # reconnected without a wait (a restart after a crash)
                if not self.ever_upgraded:
                    self.conn.ws_upgrade(self.target.path, self.upgrade_headers)
                # else: ws_opts reupgrade repeats the upgrade by itself
            case tether.Upgrade() as upgrade:
                self.note(describe(upgrade))
                self.upgraded = self.ever_upgraded = True
                pending, self.pending = self.pending, []
                if pending:
                    self.send(pending)
            case tether.Ws(frame=frame):
                self.on_frame(frame)
            case tether.Response(status=status):
                raise CliFailure(
                    ExitCode.HTTP_ERROR,
                    f"{self.target.url}: upgrade refused, the server answered {status}",
                )
            case _Retrying(attempt=attempt, delay=delay):
                self.on_retrying(attempt, delay)
            case tether.Error(reason=tether.NotUpgradedError(frames=frames)) if frames:
                self.pending = list(frames) + self.pending  # raced a lost connection
            case tether.Error(reason=reason):  # a failed upgrade, the connection's end
                raise self.failure(reason)

    def on_frame(self, frame: tether.Frame) -> None:
        match frame:
            case tether.Text(data=text):
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
            case tether.Binary(data=data):
                sys.stdout.buffer.write(data + b"\n")
                sys.stdout.buffer.flush()
            case tether.Close():
                self.note(f"received {describe_frame(frame)}")
            case _:
                pass  # pings and pongs (only with silence_pings=False)

    def on_down(self, reason: BaseException) -> int | None:
        if self.closing:
            return ExitCode.OK  # our close handshake is done
        if self.args.reupgrade:
            self.lost = reason  # tether reconnects (announced) and upgrades again
            return None
        if isinstance(reason, tether.WsClosed) and reason.by_server:
            return ExitCode.OK  # the server ended the session cleanly
        raise classify(reason, self.target.where)

    def on_retrying(self, attempt: int, delay: float) -> None:
        """One line for each wait before a reconnect: what happened, which retry, how long."""
        if self.lost is not None:
            what = classify(self.lost, self.target.where).message
        else:
            what = f"connecting to {self.target.where} failed"
        self.lost = None
        when = "at once" if delay < 0.005 else f"in {delay:.2f} s"
        self.note(f"{what}; retry {attempt} of {self.args.retry} {when}")

    def failure(self, reason: BaseException) -> CliFailure:
        """The failure that ends the session; running out of retries says so."""
        failure = classify(reason, self.target.where)
        retries = self.args.retry if self.args.reupgrade else 0
        if isinstance(reason, tether.RetriesExhausted) and retries > 0:
            plural = "retry" if retries == 1 else "retries"
            return CliFailure(
                failure.code,
                f"gave up after {retries} {plural} (--retry {retries}); "
                f"last error: {failure.message}",
            )
        return failure


def ws(args: argparse.Namespace) -> int:
    """Run ``tether ws``; return the exit status (failures are raised as CliFailure)."""
    target = parse_url(args.url, ("ws", "wss"), args.unix_socket, args.proxy)
    if args.connect_timeout <= 0 or args.retry < 0:
        raise CliFailure(ExitCode.USAGE, "--connect-timeout must be > 0 and --retry >= 0")
    headers = parse_headers(args.header)
    inbox = tether.Inbox()
    conn, target = target.open(
        owner=inbox,
        retry=args.retry if args.reupgrade else 0,
        retry_backoff=_AnnouncedBackoff(inbox),
        connect_timeout=args.connect_timeout,
        ws_opts={"protocols": tuple(args.subprotocol), "reupgrade": args.reupgrade},
        **tls_options(target, args.cacert, args.insecure),
    )
    session = _Session(conn, target, args, headers)
    reader = threading.Thread(
        target=_read_stdin,
        args=(inbox, sys.stdin.fileno()),
        name="tether-ws-stdin",
        daemon=True,
    )
    reader.start()
    try:
        while True:
            status = session.on_message(inbox.receive())
            if status is not None:
                return status
    finally:
        inbox.close()  # the stdin thread stops at its next line; stdin may never end
        with contextlib.suppress(tether.TetherError):
            conn.close()
        conn.wait_stopped(_CLOSE_TIMEOUT)
