"""An event handler that records every phase, as event_SUITE's handler module does.

Gun's suite makes the test process the handler's state: each callback
sends ``{Name, Data}`` to it, and ``do_receive_event(Name)`` takes the
first such message of that name (a selective receive, 5 s at most). Here
:class:`Events` is the handler, and :meth:`Events.next` that receive.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.gun.conftest import WAIT


class Events:
    """``event_handler=events``: every ``(name, data)``, in order; thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._seen: list[tuple[str, dict[str, Any]]] = []
        self._taken: set[int] = set()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        with self._changed:
            self._seen.append((name, dict(data)))
            self._changed.notify_all()

    def next(self, name: str, timeout: float = WAIT) -> dict[str, Any]:
        """The first phase ``name`` not taken yet (waiting for it at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index, (seen, data) in enumerate(self._seen):
                    if seen == name and index not in self._taken:
                        self._taken.add(index)
                        return data
                left = deadline - time.monotonic()
                assert left > 0, f"no {name!r} phase within {timeout} s; seen: {self.names()}"
                self._changed.wait(left)

    def names(self) -> list[str]:
        """Every phase name seen so far, in order."""
        with self._changed:
            return [name for name, _ in self._seen]

    def seen(self) -> list[tuple[str, dict[str, Any]]]:
        """Every phase so far, in order, taken or not."""
        with self._changed:
            return list(self._seen)
