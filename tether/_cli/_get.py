"""``tether get URL``: one HTTP request, curl style, through tether's public API.

The body goes to stdout (or ``-o FILE``); ``-i`` puts the status line and
the headers before it, as curl does. The connection is opened with
``retry=0`` (a command-line request is not retried), the events are read
with ``conn.await_`` from the default ``Inbox`` owner, and every failure
ends as one line on stderr and an exit code of :class:`ExitCode`.
"""

from __future__ import annotations

import argparse
import contextlib
import http
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

import tether
from tether._cli._exit import CliFailure, ExitCode, classify
from tether._cli._progress import Progress
from tether._cli._target import (
    Target,
    add_connection_options,
    parse_headers,
    parse_url,
    tls_options,
)

__all__ = ["add_parser", "get"]

# With no --max-time, waits are unbounded as curl's are, in chunks of this.
_WAIT_CHUNK = 3600.0
_CLOSE_TIMEOUT = 5.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], epilog: str) -> None:
    """Declare ``tether get`` and its options."""
    p = sub.add_parser(
        "get",
        help="send one HTTP request and print the response body (curl-like)",
        description="Send one HTTP request and write the response body to stdout or a file.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", help="http://HOST[:PORT]/PATH or https://...")
    p.add_argument("-i", "--include", action="store_true", help="print status line and headers")
    p.add_argument("-o", "--output", metavar="FILE", help="write the body to FILE, not stdout")
    add_connection_options(p, "add a request header (repeatable)")
    p.add_argument("-X", "--request", metavar="METHOD", help="the method (default GET)")
    p.add_argument("-d", "--data", metavar="DATA", help="send DATA as the body (default POST)")
    p.add_argument(
        "-f", "--fail", action="store_true", help="exit 22, without the body, on status >= 400"
    )
    p.add_argument("-s", "--silent", action="store_true", help="no progress bar")
    p.add_argument("-m", "--max-time", type=float, metavar="SECONDS", help="bound the whole call")
    p.add_argument("--http1.0", dest="http10", action="store_true", help="speak HTTP/1.0")


class _Deadline:
    """``--max-time``: the time left, or a long chunk when there is no limit."""

    def __init__(self, max_time: float | None) -> None:
        self._max_time = max_time
        self._end = None if max_time is None else time.monotonic() + max_time

    def left(self, where: str) -> float:
        if self._end is None:
            return _WAIT_CHUNK
        left = self._end - time.monotonic()
        if left <= 0:
            raise CliFailure(
                ExitCode.TIMEOUT,
                f"no complete answer from {where} within --max-time {self._max_time} s",
            )
        return left


def _status_line(version: str, status: int, headers: tuple[tuple[str, str], ...]) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    lines = [f"{version} {status} {phrase}".rstrip()]
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[BinaryIO]:
    if path is None:
        yield sys.stdout.buffer
        return
    try:
        file = open(path, "wb")  # noqa: SIM115 - closed below, failures mapped to exit 23
    except OSError as exc:
        raise CliFailure(ExitCode.WRITE_ERROR, f"cannot write {path}: {exc.strerror}") from None
    with file:
        yield file


def _open(target: Target, args: argparse.Namespace) -> tuple[tether.Connection, Target]:
    """Open the connection and wait for ``Up``; failures become a :class:`CliFailure`.

    Returns the connection and the target as opened (its proxy resolved).
    """
    if args.connect_timeout <= 0 or (args.max_time is not None and args.max_time <= 0):
        raise CliFailure(ExitCode.USAGE, "timeouts must be > 0 seconds")
    conn, target = target.open(
        retry=0,
        connect_timeout=args.connect_timeout,
        http_opts={"version": "HTTP/1.0" if args.http10 else "HTTP/1.1"},
        **tls_options(target, args.cacert, args.insecure),
    )
    try:
        # connect_timeout fires first; the margin only covers a busy machine.
        conn.await_up(timeout=args.connect_timeout + 5.0)
    except tether.ConnectionDownError as exc:
        conn.close()
        raise classify(exc.reason, target.where) from None
    except tether.ReceiveTimeout:
        conn.close()
        raise CliFailure(ExitCode.TIMEOUT, f"connecting to {target.where} timed out") from None
    return conn, target


def _exchange(
    conn: tether.Connection,
    target: Target,
    args: argparse.Namespace,
    request_headers: list[tuple[str, str]],
    out: BinaryIO,
) -> int:
    deadline = _Deadline(args.max_time)
    version = "HTTP/1.0" if args.http10 else "HTTP/1.1"
    stream = _send(conn, target, args, request_headers)
    progress = Progress(sys.stderr, None, enabled=False)
    while True:
        match _next_event(conn, stream, deadline, target):
            case tether.Inform(status=status, headers=headers) if args.include:
                out.write(_status_line(version, status, headers))
            case tether.Response() as response:
                progress = _head(target, args, version, response, out)
                if response.fin:
                    break
            case tether.Data(data=data, fin=fin):
                _write(args, progress, data, out)
                if fin:
                    break
            case tether.Trailers():
                break
            case tether.Error(reason=reason):
                raise classify(reason, target.where)
    progress.finish()
    out.flush()
    return ExitCode.OK


def _send(
    conn: tether.Connection,
    target: Target,
    args: argparse.Namespace,
    request_headers: list[tuple[str, str]],
) -> tether.StreamRef:
    """Send the request; a bad one or a connection lost at once is a :class:`CliFailure`."""
    method = args.request or ("POST" if args.data is not None else "GET")
    body = None if args.data is None else args.data.encode()
    try:
        return conn.request(method, target.path, request_headers, body)
    except ValueError as exc:  # InvalidRequestError: a bad header or method
        raise CliFailure(ExitCode.USAGE, str(exc)) from None
    except tether.ConnectionStoppedError:  # the server closed right after accepting
        raise CliFailure(
            ExitCode.CONNECTION_LOST, f"connection to {target.where} lost before the request"
        ) from None


def _next_event(
    conn: tether.Connection, stream: tether.StreamRef, deadline: _Deadline, target: Target
) -> object:
    """The stream's next event; without ``--max-time``, as long as it takes (as curl does)."""
    while True:
        try:
            return conn.await_(stream, timeout=deadline.left(target.where))
        except tether.StreamLost as exc:
            raise classify(exc.reason, target.where) from None
        except tether.ReceiveTimeout:
            continue  # only without --max-time: keep waiting


def _head(
    target: Target,
    args: argparse.Namespace,
    version: str,
    response: tether.Response,
    out: BinaryIO,
) -> Progress:
    """The response's head: ``--fail``, ``--include``; the progress of its body."""
    status, headers = response.status, response.headers
    if args.fail and status >= 400:
        raise CliFailure(ExitCode.HTTP_ERROR, f"{target.url}: the server answered {status}")
    if args.include:
        out.write(_status_line(version, status, headers))
    length = dict(headers).get("content-length")
    total = int(length) if length and length.isdigit() else None
    return Progress(sys.stderr, total, enabled=bool(args.output) and not args.silent)


def _write(args: argparse.Namespace, progress: Progress, data: bytes, out: BinaryIO) -> None:
    """A piece of the body: to the output at once when it is stdout."""
    out.write(data)
    if args.output is None:
        out.flush()
    progress.add(len(data))


def get(args: argparse.Namespace) -> int:
    """Run ``tether get``; return the exit status (failures are raised as CliFailure)."""
    target = parse_url(args.url, ("http", "https"), args.unix_socket, args.proxy)
    headers = parse_headers(args.header)
    with _output(args.output) as out:
        conn, target = _open(target, args)
        try:
            return _exchange(conn, target, args, headers, out)
        except OSError as exc:  # only writes raise it: connection failures are events
            raise CliFailure(ExitCode.WRITE_ERROR, f"cannot write the body: {exc}") from None
        finally:
            conn.close()
            conn.wait_stopped(_CLOSE_TIMEOUT)
