"""Child specifications and child reports, as in OTP's ``supervisor`` module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import pykka

from tether._options import check_positive_seconds

__all__ = ["ChildInfo", "ChildSpec", "Restart", "Strategy"]

Strategy: TypeAlias = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart: TypeAlias = Literal["permanent", "transient", "temporary"]

STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: tuple[str, ...] = ("permanent", "transient", "temporary")


def check_intensity(max_restarts: object, period: object) -> None:
    """Validate a restart intensity: ``max_restarts`` >= 0 within ``period`` > 0 seconds."""
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int):
        raise TypeError(f"max_restarts must be an int, not {type(max_restarts).__name__}")
    if max_restarts < 0:
        raise ValueError(f"max_restarts must be >= 0, not {max_restarts}")
    check_positive_seconds("period", period, allow_none=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """How to start and restart one child (OTP's ``child_spec()``).

    Attributes:
        id: unique among the supervisor's children.
        start: a zero-argument callable returning the child's
            ``pykka.ActorRef`` (e.g. ``Worker.start``). Called on the
            supervisor's thread; a child deriving from ``tether.Supervised``
            reports its exit reason itself.
        restart: ``"permanent"`` (always restarted), ``"transient"`` (only
            after a crash) or ``"temporary"`` (never).
        shutdown: seconds to wait for the child to stop before abandoning it
            (Python cannot kill a thread).
        max_restarts: a per-child restart budget (tether extension): more
            than this many restarts of this child within ``period`` stop the
            child for good instead of the whole supervisor. ``None``: only
            the supervisor's intensity applies.
        period: the window of the per-child budget, in seconds.
        on_exit: called (on the supervisor's thread) with the reason when the
            child ends for good: not restarted, terminated, or stopped with
            its supervisor; after ``Supervisor.start_child_later``, also
            when it could not be started (then possibly on the caller's
            thread, if the supervisor stopped meanwhile). Must be quick
            and must not raise.
    """

    id: str
    start: Callable[[], pykka.ActorRef[Any]]
    restart: Restart = "permanent"
    shutdown: float = 5.0
    max_restarts: int | None = None
    period: float = 5.0
    on_exit: Callable[[BaseException | None], None] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise TypeError(f"ChildSpec id must be a non-empty str, not {self.id!r}")
        if not callable(self.start):
            raise TypeError("ChildSpec start must be a callable returning a pykka.ActorRef")
        if self.restart not in RESTARTS:
            raise ValueError(
                f"unknown restart type {self.restart!r}; expected one of {', '.join(RESTARTS)}"
            )
        check_positive_seconds("ChildSpec shutdown", self.shutdown, allow_none=False)
        if self.max_restarts is not None:
            check_intensity(self.max_restarts, self.period)


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """One row of ``Supervisor.which_children()``.

    Attributes:
        id: the child's id.
        ref: the ``pykka.ActorRef`` of its current generation (``None``
            while it is being restarted).
        restart: its restart type.
        restarts: how many times it was restarted.
    """

    id: str
    ref: pykka.ActorRef[Any] | None
    restart: Restart
    restarts: int
