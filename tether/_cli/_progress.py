"""A one-line progress bar on stderr for ``tether get -o FILE``.

Shown only for large bodies (a ``content-length`` of at least
:data:`THRESHOLD`, or a body of unknown length once that much has
arrived), redrawn in place with a carriage return at most ten times a
second, and ended with a newline.
"""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["THRESHOLD", "Progress"]

THRESHOLD = 1 << 20  # 1 MiB: smaller bodies arrive too fast for a bar to say anything
_WIDTH = 30
_REDRAW_INTERVAL = 0.1


def _size(n: int) -> str:
    if n < 1 << 10:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / (1 << 10):.1f} KiB"
    return f"{n / (1 << 20):.1f} MiB"


class Progress:
    """Counts received bytes and redraws the bar. Not thread-safe: one command owns it.

    Args:
        out: where to draw (stderr).
        total: the expected size (``content-length``), or None if unknown.
        enabled: False draws nothing (``--silent``, or output to stdout).
    """

    def __init__(self, out: TextIO, total: int | None, *, enabled: bool) -> None:
        self._out = out
        self._total = total
        self._done = 0
        self._last_draw = 0.0
        self._shown = False
        self._enabled = enabled

    def _wanted(self) -> bool:
        if not self._enabled:
            return False
        size = self._total if self._total is not None else self._done
        return size >= THRESHOLD

    def add(self, n: int) -> None:
        """Count ``n`` more bytes; redraw if it is time to."""
        self._done += n
        now = time.monotonic()
        if self._wanted() and now - self._last_draw >= _REDRAW_INTERVAL:
            self._last_draw = now
            self._draw()

    def finish(self) -> None:
        """Draw the final state and end the line (if a bar was shown or is due)."""
        if self._wanted():
            self._draw()
        if self._shown:
            self._out.write("\n")
            self._out.flush()

    def _draw(self) -> None:
        self._shown = True
        if self._total:
            fraction = min(self._done / self._total, 1.0)
            bar = "#" * int(fraction * _WIDTH)
            line = (
                f"\r{fraction:4.0%} [{bar:<{_WIDTH}}] {_size(self._done)} / {_size(self._total)}"
            )
        else:
            line = f"\r{_size(self._done)} received"
        self._out.write(line)
        self._out.flush()
