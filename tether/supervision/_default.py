"""The process-wide default supervisor, started on first use.

Gun starts every connection under ``gun_sup``; tether starts every
connection under this one unless ``open(..., supervisor=...)`` names
another. Each connection gets its own restart budget here (5 restarts in
10 s, then that connection stops with a final ``Error``), so one
connection's crash loop never stops another, and the supervisor itself
never gives up.
"""

from __future__ import annotations

import sys
import threading

from tether.supervision._supervisor import Supervisor

__all__ = ["CONNECTION_BUDGET", "default_supervisor"]

#: (max_restarts, period) of each connection under the default supervisor.
CONNECTION_BUDGET = (5, 10.0)

_lock = threading.Lock()
_default: Supervisor | None = None


def default_supervisor() -> Supervisor:
    """The process-wide supervisor (restarted if it was stopped)."""
    global _default
    with _lock:
        if _default is None or not _default.is_alive():
            # Per-connection budgets do the limiting; the supervisor's own
            # intensity is set so high that it never gives up.
            _default = Supervisor.start("one_for_one", max_restarts=sys.maxsize, period=1.0)
        return _default
