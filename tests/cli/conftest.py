"""Run the ``tether`` command as a subprocess, with every wait bounded.

:func:`run_cli` runs it to completion; :class:`Interactive` drives a
running ``tether ws`` line by line (its output is read by two threads into
queues, so a test waits for a line with a timeout instead of blocking on a
pipe).
"""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import IO

import pytest

from tether.server import Server

CLI_TIMEOUT = 30.0
LINE_TIMEOUT = 10.0


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``python -m tether ARGS`` with ``stdin`` as its input; wait (bounded) for it to exit."""
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``tether: ...`` line a failed command printed last on stderr."""
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("tether: ")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    return errors[0]


class Interactive:
    """A running ``tether`` command whose stdin the test writes line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tether", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: queue.Queue[str] = queue.Queue()
        self.stderr_seen: list[str] = []
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout)),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr)),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(pipe: IO[str], lines: queue.Queue[str]) -> None:
        for line in pipe:
            lines.put(line.rstrip("\n"))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def stdout_line(self) -> str:
        return self.stdout.get(timeout=LINE_TIMEOUT)

    def stderr_until(self, predicate: Callable[[str], bool]) -> str:
        """Read stderr lines until one matches ``predicate``; return it."""
        while True:
            line = self.stderr.get(timeout=LINE_TIMEOUT)
            self.stderr_seen.append(line)
            if predicate(line):
                return line

    def wait(self) -> int:
        return self.proc.wait(timeout=CLI_TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=CLI_TIMEOUT)
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        for reader in self._readers:
            reader.join(CLI_TIMEOUT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def embedded(thread_baseline: int) -> Iterator[Server]:
    """tether's embedded server on an ephemeral 127.0.0.1 port."""
    with Server() as server:
        yield server


@pytest.fixture
def interactive(thread_baseline: int) -> Iterator[Callable[..., Interactive]]:
    """Start ``tether`` commands to drive line by line; each is killed if still running."""
    started: list[Interactive] = []

    def start(*args: str) -> Interactive:
        started.append(Interactive(*args))
        return started[-1]

    yield start
    for command in started:
        command.close()
