"""OTP-style supervisors on pykka: strategies, restart types, intensity, trees.

A ``SupervisorActor`` holds its children in start order (a dict by id:
lookups are O(1), insertion order is the start order). When a child
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
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pykka
from pykka.messages import ProxyGetAttr

from tether._errors import SupervisorGaveUp, SupervisorStopped
from tether.actors import ChildExited, Supervised, starting_child
from tether.actors._lazy import LazyThreadingActor
from tether.actors._mailbox import Reraise
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
class _StartChildLater:
    """Told, not asked: start a child without the caller waiting (see ``start_child_later``).

    ``inline``: the child's start never blocks (a connection's), so the
    telling thread may run it while the supervisor is idle (``_run_inline``).
    """

    spec: ChildSpec
    inline: bool = False


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
    # Lists, not deques: they hold at most max_restarts entries, and an
    # empty deque was ~760 B per child (a connection is one).
    history: list[float] = field(default_factory=list)


def _prune(history: list[float], now: float, period: float) -> None:
    """Forget the restarts (oldest first) that are older than ``period``."""
    old = 0
    while old < len(history) and now - history[old] > period:
        old += 1
    del history[:old]


class SupervisorActor(Supervised, LazyThreadingActor):
    """The supervisor itself; users hold a ``Supervisor`` handle instead.

    Its thread starts with the first message that has to wait for it
    (``LazyThreadingActor``): a connection's start, told by ``tether.open``
    while the supervisor is idle, runs on the opening thread instead
    (``_run_inline``), and wakes no thread. Everything else (asks, a user's
    ``start_child_later``, exits and restarts) runs on the supervisor's own
    thread, as before: a user's child may block in its ``start`` or
    ``on_start``, and a restart may start one.
    """

    def __init__(
        self, strategy: Strategy, max_restarts: int, period: float, clock: Callable[[], float]
    ) -> None:
        super().__init__()
        self._strategy = strategy
        self._max_restarts = max_restarts
        self._period = period
        self._clock = clock
        self._children: dict[str, _Child] = {}
        self._history: list[float] = []
        self._stopping = False
        self._mailbox.bind(self._run_inline, self.actor_stopped)

    def _run_inline(self, message: object) -> bool:
        """Start a connection on the telling thread (it holds the turn); False for the rest.

        Why: under a fan-out, each ``tether.open`` woke this thread, which
        then took the GIL from the opening thread and the I/O thread. The
        work is the same; the hand-offs go: a 500-connection fan-out makes
        half (shared Inbox) to a fifth (asyncio loop) of the context
        switches, and the asyncio loop's takes ~5 % less time
        (``bench/NOTES.md``, "Fan-out: thread hand-offs").
        """
        if type(message) is _StartChildLater and message.inline:
            self._start_child_later(message.spec)
            return True
        return False

    # -- pykka hooks ---------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        """Child reports (told) and handle requests (asked)."""
        match message:
            case Reraise(error=error):
                raise error  # a start run inline raised past _start_child_later
            case ChildExited(child_id=child_id, urn=urn, reason=reason):
                self._on_child_exit(child_id, urn, reason)
            case _StartChild(spec=spec):
                return self._start_child(spec)
            case _StartChildLater(spec=spec):
                self._start_child_later(spec)
            case _WhichChildren():
                return [
                    ChildInfo(c.spec.id, c.ref, c.spec.restart, c.restarts)
                    for c in self._children.values()
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

    def _start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a tether.ChildSpec, not {type(spec).__name__}")
        if spec.id in self._children:
            raise ValueError(f"a child with id {spec.id!r} already exists")
        ref = self._spawn(spec)
        self._children[spec.id] = _Child(spec, ref)
        return ref

    def _start_child_later(self, spec: ChildSpec) -> None:
        # Nobody waits for an answer: a failure to start ends the child for
        # good, reported through its on_exit (the caller's only channel).
        #
        # The start itself is the synchronous one, on_start included, although
        # nobody waits for it: the caller is free at once either way, and
        # skipping the wait for on_start bought nothing measurable (1,000
        # connections opened in a row, 5 runs each way: the same time and CPU
        # within the noise; bench fanout, 7 runs each way: total time within
        # 2 %). The wait is ~1/3 of the supervisor's time per child under
        # fan-out load, but while it waits the child and the other
        # connections run: the work the GIL serialises is the same. Waiting
        # keeps OTP's order (a child's on_start has run before the next child
        # starts) and makes a failing on_start a start failure (reported, not
        # restarted), as for start_child.
        try:
            self._start_child(spec)
        except Exception as exc:
            log.warning("starting child %r failed: %r", spec.id, exc)
            _notify_exit(spec, exc)

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
        child = self._children.get(child_id)
        if child is None or child.ref is None or child.ref.actor_urn != urn or self._stopping:
            return  # stale: a generation we replaced or stopped ourselves
        child.ref = None
        restart = child.spec.restart
        if restart == "temporary" or (restart == "transient" and reason is None):
            del self._children[child_id]
            _notify_exit(child.spec, reason)
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
                del self._children[spec.id]
                _notify_exit(spec, reason)
                return False
            child.history.append(now)
        _prune(self._history, now, self._period)
        self._history.append(now)
        if len(self._history) > self._max_restarts:
            self._give_up(reason)
        return True

    def _restart_group(self, child: _Child) -> tuple[_Child, BaseException] | None:
        """Restart ``child`` per the strategy; the first member that fails to start, if any."""
        if self._strategy == "one_for_one":
            group = [child]
        else:
            # Only on a restart of a group: O(children) here is fine.
            group = list(self._children.values())
            if self._strategy == "rest_for_one":
                group = group[group.index(child) :]
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
        child = self._children.get(child_id)
        if child is None:
            raise KeyError(f"no child with id {child_id!r}")
        self._stop_child(child)
        del self._children[child_id]
        _notify_exit(child.spec, SupervisorStopped("terminated by its supervisor"))

    def _stop_all(self, reason: BaseException) -> None:
        self._stopping = True
        for spec in self._take_later_starts():
            _notify_exit(spec, reason)  # never started: they end with the others
        children, self._children = self._children, {}
        for child in reversed(children.values()):
            self._stop_child(child)
            _notify_exit(child.spec, reason)

    def _take_later_starts(self) -> list[ChildSpec]:
        """Take the children told to start that this supervisor will now never start.

        pykka drops told messages left in a stopped actor's mailbox; these
        must end visibly instead (``start_child_later`` covers the rest).
        """
        specs: list[ChildSpec] = []
        others = []
        while not self.actor_inbox.empty():
            envelope = self.actor_inbox.get()
            if isinstance(envelope.message, _StartChildLater):
                specs.append(envelope.message.spec)
            else:
                others.append(envelope)
        for envelope in others:  # asks among them fail with ActorDeadError
            self.actor_inbox.put(envelope)
        return specs


def _notify_exit(spec: ChildSpec, reason: BaseException | None) -> None:
    if spec.on_exit is None:
        return
    try:
        spec.on_exit(reason)
    except Exception:
        log.exception("on_exit of child %r failed", spec.id)


def _once(
    on_exit: Callable[[BaseException | None], None],
) -> Callable[[BaseException | None], None]:
    """``on_exit`` that runs on the first call only (thread-safe)."""
    lock = threading.Lock()
    called = False

    def call_once(reason: BaseException | None) -> None:
        nonlocal called
        with lock:
            if called:
                return
            called = True
        on_exit(reason)

    return call_once


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

    Create it with [`start`][tether.Supervisor.start]; ``actor_ref`` is its pykka ref.
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

    def start_child_later(self, spec: ChildSpec) -> None:
        """Tell the supervisor to start a child; return without waiting (tether extension).

        ``tether.open`` starts connections this way, so that opening costs
        the caller a message, not a thread start. Calls made afterwards on
        this handle from the same thread (``which_children``,
        ``terminate_child``) see the child: the supervisor handles its
        messages in order.

        Nobody waits for the start, so its failure (the id is taken,
        ``start`` raises or returns no ``pykka.ActorRef``, the supervisor
        stops first) is reported to ``spec.on_exit`` with the exception,
        as the end of the child; the supervisor stays up. An exception in
        the child's ``on_start`` is such a failure too (not restarted), as
        for [`start_child`][tether.Supervisor.start_child]. ``spec.on_exit`` is
        called at most once.

        Raises:
            TypeError: ``spec`` is not a ``ChildSpec``.
            SupervisorStopped: the supervisor had stopped already.
        """
        self._start_later(spec, inline=False)

    def _start_connection_later(self, spec: ChildSpec) -> None:
        """``start_child_later`` for a child whose start never blocks (``tether.open``'s).

        A ``ConnectionActor``'s ``on_start`` runs inside its ``start`` and
        only begins a non-blocking connect, so the calling thread may start
        it itself while the supervisor is idle (see ``SupervisorActor._run_inline``).
        """
        self._start_later(spec, inline=True)

    def _start_later(self, spec: ChildSpec, *, inline: bool) -> None:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child needs a tether.ChildSpec, not {type(spec).__name__}")
        on_exit = None
        if spec.on_exit is not None:
            # Called by the supervisor, or below if the supervisor stopped in
            # between: whichever comes first.
            on_exit = _once(spec.on_exit)
            spec = dataclasses.replace(spec, on_exit=on_exit)
        try:
            self.actor_ref.tell(_StartChildLater(spec, inline))
        except pykka.ActorDeadError:
            raise SupervisorStopped("the supervisor has stopped") from None
        if not self.actor_ref.is_alive() and on_exit is not None:
            # It stopped after the message was queued: its on_stop took the
            # message and reported it, or pykka dropped it (queued after
            # on_stop looked); report it here in case it was dropped.
            on_exit(SupervisorStopped("the supervisor has stopped"))

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
