"""OTP-style supervisors on pykka: strategies, restart types, intensity, trees.

A :class:`SupervisorActor` holds its children in start order. When a child
exits (it reports itself, see ``tether.actors.Supervised``; other actors
are watched), the supervisor decides by the child's restart type, counts
the restart in a sliding window and restarts per its strategy:

- ``one_for_one``: only that child;
- ``one_for_all``: stop the others (reverse start order), restart all;
- ``rest_for_one``: stop the children started after it, restart it and them.

More than ``max_restarts`` restarts within ``period`` seconds and the
supervisor gives up: it stops every child in reverse order and crashes,
which its own supervisor (if any) sees as a crashed child.

Rules that keep it deadlock-free: children only ``tell`` their supervisor;
every wait (starting or stopping a child) has a timeout; a child's slot
is cleared *before* the supervisor stops it, so the report of an exit the
supervisor caused is recognised as stale and ignored.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
from pykka.messages import ProxyGetAttr

from tether._errors import SupervisorGaveUp, SupervisorStopped
from tether.actors import ChildExited, Supervised, starting_child
from tether.actors._supervised import StartSignal
from tether.supervision._spec import (
    STRATEGIES,
    ChildInfo,
    ChildSpec,
    Strategy,
    check_intensity,
)

__all__ = ["Supervisor", "SupervisorActor"]

log = logging.getLogger("tether.supervision")

_CALL_TIMEOUT = 10.0
_names = itertools.count(1)


# -- messages (asked by the Supervisor handle) -------------------------------------


@dataclass(frozen=True, slots=True)
class _StartChild:
    spec: ChildSpec


@dataclass(frozen=True, slots=True)
class _WhichChildren:
    pass


@dataclass(frozen=True, slots=True)
class _TerminateChild:
    child_id: str


@dataclass(eq=False, slots=True)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None
    restarts: int = 0
    history: deque[float] = field(default_factory=deque)


def _prune(history: deque[float], now: float, period: float) -> None:
    while history and now - history[0] > period:
        history.popleft()


class SupervisorActor(Supervised):
    """The supervisor itself; users hold a :class:`Supervisor` handle instead."""

    def __init__(
        self, strategy: Strategy, max_restarts: int, period: float, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self._strategy = strategy
        self._max_restarts = max_restarts
        self._period = period
        self._clock = clock
        self._children: list[_Child] = []
        self._history: deque[float] = deque()
        self._stopping = False

    # -- pykka hooks ---------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Child reports (told) and handle requests (asked)."""
        match message:
            case ChildExited(child_id=child_id, urn=urn, reason=reason):
                self._on_child_exit(child_id, urn, reason)
            case _StartChild(spec=spec):
                return self._start_child(spec)
            case _WhichChildren():
                return [
                    ChildInfo(c.spec.id, c.ref, c.spec.restart, c.restarts) for c in self._children
                ]
            case _TerminateChild(child_id=child_id):
                self._terminate_child(child_id)
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        """Stopped (``Supervisor.stop`` or a parent): stop the children, newest first."""
        self._stop_all(SupervisorStopped("the supervisor was stopped"))

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        """Gave up (or crashed): make sure no child outlives the supervisor."""
        self._stop_all(SupervisorStopped("the supervisor gave up", gave_up=True))

    # -- starting ------------------------------------------------------------------

    def _find(self, child_id: str) -> _Child | None:
        return next((c for c in self._children if c.spec.id == child_id), None)

    def _start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a tether.ChildSpec, not {type(spec).__name__}")
        if self._find(spec.id) is not None:
            raise ValueError(f"a child with id {spec.id!r} already exists")
        ref = self._spawn(spec)
        self._children.append(_Child(spec, ref))
        return ref

    def _spawn(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Start one generation of a child and wait until its ``on_start`` ran (OTP start_link)."""
        signal = StartSignal()
        with starting_child(self.actor_ref, spec.id, signal):
            ref = spec.start()
        if not isinstance(ref, pykka.ActorRef):
            raise TypeError(
                f"the start function of child {spec.id!r} returned "
                f"{type(ref).__name__}, not a pykka.ActorRef"
            )
        if signal.attached:
            # A Supervised child says when on_start is over, even if it stops
            # right after (a connection whose only attempt failed): asking it
            # something would race that exit.
            if not signal.event.wait(spec.shutdown):
                ref.stop(block=False)
                raise TimeoutError(
                    f"child {spec.id!r} did not finish on_start within {spec.shutdown} s"
                )
            if signal.error is not None:
                raise RuntimeError(
                    f"child {spec.id!r} failed in on_start: {signal.error!r}"
                ) from signal.error
            return ref
        # Any other pykka actor: ask it something (answered once on_start is
        # over), and watch it, since it will not report its exit itself.
        try:
            ref.ask(ProxyGetAttr(attr_path=("actor_urn",)), timeout=spec.shutdown)
        except pykka.ActorDeadError:
            raise RuntimeError(f"child {spec.id!r} stopped during on_start") from None
        except pykka.Timeout:
            ref.stop(block=False)
            raise TimeoutError(
                f"child {spec.id!r} did not finish on_start within {spec.shutdown} s"
            ) from None
        _watch(self.actor_ref, spec.id, ref)
        return ref

    # -- exits and restarts --------------------------------------------------------------

    def _on_child_exit(self, child_id: str, urn: str, reason: BaseException | None) -> None:
        child = self._find(child_id)
        if child is None or child.ref is None or child.ref.actor_urn != urn or self._stopping:
            return  # stale: a generation we replaced or stopped ourselves
        child.ref = None
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and reason is None):
            self._children.remove(child)
            _notify_exit(child, reason)
            return
        assert reason is not None or restart == "permanent"
        self._restart(child, reason)

    def _restart(self, child: _Child, reason: BaseException | None) -> None:
        # A restart whose start fails counts as another crash of that child;
        # loop (not recurse) until one succeeds or a budget runs out.
        failed: tuple[_Child, BaseException | None] | None = (child, reason)
        while failed is not None:
            child, reason = failed
            if not self._count_restart(child, reason):
                return
            failed = self._restart_group(child)

    def _count_restart(self, child: _Child, reason: BaseException | None) -> bool:
        """Record one restart; False if the child's own budget is spent (it is removed).

        Raises ``SupervisorGaveUp`` past the supervisor's intensity.
        """
        now = self._clock()
        spec = child.spec
        if spec.max_restarts is not None:
            _prune(child.history, now, spec.period)
            if len(child.history) >= spec.max_restarts:
                # This child's own budget is spent: it stops, the others go on.
                self._children.remove(child)
                _notify_exit(child, reason)
                return False
            child.history.append(now)
        _prune(self._history, now, self._period)
        self._history.append(now)
        if len(self._history) > self._max_restarts:
            self._give_up(reason)
        return True

    def _restart_group(self, child: _Child) -> tuple[_Child, BaseException] | None:
        """Restart ``child`` per the strategy; the first member that fails to start, if any."""
        index = self._children.index(child)
        if self._strategy == "one_for_one":
            group = [child]
        elif self._strategy == "one_for_all":
            group = list(self._children)
        else:
            group = self._children[index:]
        for sibling in reversed(group):
            if sibling is not child:
                self._stop_child(sibling)
        for member in group:
            if member.ref is not None:
                continue  # already running (restarted in an earlier pass)
            try:
                member.ref = self._spawn(member.spec)
            except Exception as exc:
                log.warning("restarting child %r failed: %r", member.spec.id, exc)
                return member, exc
            member.restarts += 1
        return None

    def _give_up(self, reason: BaseException | None) -> None:
        self._stop_all(SupervisorStopped("the supervisor gave up", gave_up=True))
        # Raising from a told message makes pykka stop this actor and call
        # on_failure, which reports the crash to our own supervisor.
        raise SupervisorGaveUp(self._max_restarts, self._period, reason)

    # -- stopping ----------------------------------------------------------------------

    def _stop_child(self, child: _Child) -> None:
        ref, child.ref = child.ref, None  # first: its own exit report is now stale
        if ref is None:
            return
        try:
            ref.stop(block=True, timeout=child.spec.shutdown)
        except pykka.Timeout:
            log.warning(
                "child %r did not stop within %s s; abandoned", child.spec.id, child.spec.shutdown
            )
        except pykka.ActorDeadError:
            pass  # already gone

    def _terminate_child(self, child_id: str) -> None:
        child = self._find(child_id)
        if child is None:
            raise KeyError(f"no child with id {child_id!r}")
        self._stop_child(child)
        self._children.remove(child)
        _notify_exit(child, SupervisorStopped("terminated by its supervisor"))

    def _stop_all(self, reason: BaseException) -> None:
        self._stopping = True
        children, self._children = self._children, []
        for child in reversed(children):
            self._stop_child(child)
            _notify_exit(child, reason)


def _notify_exit(child: _Child, reason: BaseException | None) -> None:
    if child.spec.on_exit is None:
        return
    try:
        child.spec.on_exit(reason)
    except Exception:
        log.exception("on_exit of child %r failed", child.spec.id)


def _watch(supervisor: pykka.ActorRef[Any], child_id: str, ref: pykka.ActorRef[Any]) -> None:
    """Notice when an actor that does not report its exit stops (reason unknown: a crash)."""

    def wait() -> None:
        ref.actor_stopped.wait()
        with contextlib.suppress(pykka.ActorDeadError):
            supervisor.tell(
                ChildExited(
                    child_id,
                    ref.actor_urn,
                    RuntimeError(f"{ref.actor_class.__name__} stopped without reporting why"),
                )
            )

    threading.Thread(target=wait, daemon=True, name=f"tether-watch-{child_id}").start()


class Supervisor:
    """A thread-safe handle to one supervisor. Every method is thread-safe.

    Create it with :meth:`start`; ``actor_ref`` is its pykka ref.
    """

    def __init__(self, actor_ref: pykka.ActorRef[Any]) -> None:
        self.actor_ref = actor_ref

    def __repr__(self) -> str:
        state = "alive" if self.is_alive() else "stopped"
        return f"<tether.Supervisor {self.actor_ref.actor_urn[-8:]} {state}>"

    @classmethod
    def start(
        cls,
        strategy: Strategy = "one_for_one",
        max_restarts: int = 3,
        period: float = 5.0,
        parent: Supervisor | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> Supervisor:
        """Start a supervisor (Elixir's defaults: 3 restarts in 5 s).

        Args:
            strategy: ``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``.
            max_restarts: more restarts than this within ``period`` and the
                supervisor gives up.
            period: the intensity window, in seconds.
            parent: start it as a *temporary* child of this supervisor:
                stopped with it, reported to it when it gives up, not restarted.
            clock: monotonic seconds, for tests.

        Raises:
            ValueError: an unknown strategy or a negative intensity.
        """
        if strategy not in STRATEGIES:
            raise ValueError(
                f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}"
            )
        check_intensity(max_restarts, period)

        def factory() -> pykka.ActorRef[Any]:
            return SupervisorActor.start(strategy, max_restarts, period, clock)

        if parent is None:
            return cls(factory())
        spec = ChildSpec(id=f"supervisor-{next(_names)}", start=factory, restart="temporary")
        return cls(parent.start_child(spec))

    def _ask(self, message: object) -> Any:
        try:
            return self.actor_ref.ask(message, timeout=_CALL_TIMEOUT)
        except pykka.ActorDeadError:
            raise SupervisorStopped("the supervisor has stopped") from None

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Start a child and return its ref; its ``on_start`` has run when this returns.

        Raises:
            ValueError: the id is taken.
            TypeError: ``start`` did not return a ``pykka.ActorRef``.
            Exception: whatever ``start`` raised, or the child's start failure;
                the supervisor stays up.
        """
        ref: pykka.ActorRef[Any] = self._ask(_StartChild(spec))
        return ref

    def which_children(self) -> list[ChildInfo]:
        """The children, in start order."""
        children: list[ChildInfo] = self._ask(_WhichChildren())
        return children

    def terminate_child(self, child_id: str) -> None:
        """Stop a child for good (it is not restarted) and forget it.

        Raises:
            KeyError: no child has that id.
        """
        self._ask(_TerminateChild(child_id))

    def is_alive(self) -> bool:
        """False once the supervisor stopped or gave up."""
        return self.actor_ref.is_alive()

    def stop(self, timeout: float = _CALL_TIMEOUT) -> bool:
        """Stop the children in reverse start order, then the supervisor.

        Returns False if it had stopped already.
        """
        try:
            return bool(self.actor_ref.stop(block=True, timeout=timeout))
        except pykka.ActorDeadError:
            return False
