"""Ports on 127.0.0.1 for the servers the tests start as processes of their own.

Why this exists: the tests run real programs (squid, tinyproxy, dante,
microsocks, nghttpd) as child processes. Each needs a free port to be told
on its command line or in its config (a test also wants a port that refuses
connections), and the test must not begin before the program listens on
it. Such a program gives no sign of being ready but the listening socket,
so readiness is a bounded poll of TCP connects that also watches the
process: one that exits first fails at once, with its exit status and its
log, instead of waiting out the timeout. Every launcher takes both from
here, so that they all fail the same way, telling the same things.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from typing import NoReturn

#: How long a program may take to listen (squid takes ~0.3 s here; CI is slower).
READY_TIMEOUT = 20.0
#: Between two connect attempts: an external process gives no other sign that it is ready.
_POLL = 0.02
#: How much of the end of a log a failure shows.
_LOG_TAIL = 4000


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class NotListening(Exception):
    """A program did not come to listen: it exited first, or the timeout passed.

    Attributes:
        returncode: The exit status of the program if it exited; None if it
            is still running (the timeout passed).
    """

    def __init__(self, message: str, returncode: int | None) -> None:
        super().__init__(message)
        self.returncode = returncode


def wait_listening(
    port: int,
    process: subprocess.Popen[bytes],
    *,
    name: str | None = None,
    timeout: float = READY_TIMEOUT,
    log: Callable[[], str] | None = None,
) -> None:
    """Return once a TCP connect to 127.0.0.1:``port`` succeeds.

    Args:
        port: Where ``process`` is to listen.
        process: The program being waited for: if it exits first, this fails
            at once (it will never listen).
        name: The program in the error message (by default its argv[0]'s
            base name).
        timeout: Seconds before giving up on a ``process`` that runs but
            does not listen.
        log: Gives the text of the program's log (its output), whose end
            the error message shows.

    Raises:
        NotListening: ``process`` exited before listening (``returncode`` is
            its status), or did not listen within ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if process.poll() is not None:
            _fail(f"exited with status {process.returncode} before listening", process, name, log)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=min(remaining, 1.0)).close()
        except OSError:
            time.sleep(_POLL)  # polling for the listening socket: nothing to be told of
        else:
            return
    _fail(f"did not listen on 127.0.0.1:{port} within {timeout} s", process, name, log)


def _fail(
    what: str,
    process: subprocess.Popen[bytes],
    name: str | None,
    log: Callable[[], str] | None,
) -> NoReturn:
    if name is None:
        args = process.args
        first = args if isinstance(args, (str, bytes, os.PathLike)) else next(iter(args))
        name = os.path.basename(os.fsdecode(first))
    message = f"{name} {what}"
    if log is not None:
        message += f"; the end of its log:\n{log()[-_LOG_TAIL:]}"
    raise NotListening(message, process.returncode)
