"""Supervised: pykka actors that report their own exit to their supervisor.

pykka has no links or monitors (its issue #42 "Supervision" is open since
2014), so a child tells its supervisor how it ended: ``on_stop`` reports a
normal exit, ``on_failure`` a crash with its exception. A subclass that
overrides either hook without calling ``super()`` still reports: the hooks
are wrapped when the subclass is defined. A failure in ``on_start`` (where
pykka calls neither hook) is caught by the supervisor's synchronous start,
and actors that do not derive from this class are watched by a thread
waiting on their ``actor_stopped`` event.

The supervisor is found without any constructor argument: it calls the
child's start function on its own thread with a thread-local context set,
and pykka runs ``__init__`` in the caller's thread, where this class reads it.

This lives in the actor layer because connection actors are ``Supervised``;
``tether.supervision`` builds the supervisors on top of it.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pykka

from tether.actors._lazy import StopFlag

__all__ = ["ChildExited", "StartSignal", "Supervised", "starting_child", "unsupervised"]

_context = threading.local()


@dataclass(frozen=True, slots=True)
class ChildExited:
    """Told to a supervisor: child ``child_id`` (generation ``urn``) exited.

    ``reason`` is None for a normal exit, else the exception that crashed it.
    """

    child_id: str
    urn: str
    reason: BaseException | None


class StartSignal:
    """Set when a ``Supervised`` child's ``on_start`` has returned or raised.

    The supervisor's synchronous start waits on it. Asking the child
    instead would race a child that exits right after ``on_start``.
    """

    def __init__(self) -> None:
        # Set before the supervisor waits when on_start runs on its thread (a
        # LazyThreadingActor's): a StopFlag then builds no Condition.
        self.event: threading.Event = StopFlag()
        self.error: BaseException | None = None
        self.attached = False  # a Supervised actor picked this signal up


@contextmanager
def starting_child(
    supervisor: pykka.ActorRef[Any], child_id: str, signal: StartSignal | None = None
) -> Iterator[None]:
    """Let a ``Supervised`` actor created in this block know its supervisor and id."""
    previous = getattr(_context, "value", None)
    _context.value = (supervisor, child_id, signal)
    try:
        yield
    finally:
        _context.value = previous


@contextmanager
def unsupervised() -> Iterator[None]:
    """Let a ``Supervised`` actor created in this block know it has no supervisor.

    For an actor started directly inside a supervisor's start function
    (before that function builds its own child), which would otherwise take
    the child's place.
    """
    previous = getattr(_context, "value", None)
    _context.value = None
    try:
        yield
    finally:
        _context.value = previous


def _wrap(hook: Callable[..., None], crash: bool) -> Callable[..., None]:
    @functools.wraps(hook)
    def wrapper(self: Supervised, *args: Any) -> None:
        try:
            hook(self, *args)
        finally:
            reason = args[1] if crash and len(args) > 1 else None
            self.report_exit(_crash_reason(reason) if crash else None)

    return wrapper


def _wrap_start(hook: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(hook)
    def on_start(self: Supervised) -> None:
        signal = self._start_signal
        try:
            hook(self)
        except BaseException as exc:
            if signal is not None:
                signal.error = exc
            raise
        finally:
            if signal is not None:
                signal.event.set()
                # Read by the supervisor only, which holds it while it waits:
                # kept here, its Event was ~1 KiB per connection for nothing.
                self._start_signal = None

    return on_start


def _crash_reason(value: object) -> BaseException:
    if isinstance(value, BaseException):
        return value
    return RuntimeError(f"actor crashed: {value!r}")


class Supervised(pykka.ThreadingActor):
    """Base class for pykka actors that report their exit to a tether supervisor.

    Use it for your own actors to give the supervisor the exact crash
    reason (``transient`` children need it). Outside a supervisor it
    behaves exactly like ``pykka.ThreadingActor``.
    """

    use_daemon_thread = True

    def __init__(self) -> None:
        super().__init__()
        context = getattr(_context, "value", None)
        self.supervisor_ref: pykka.ActorRef[Any] | None = context[0] if context else None
        self.child_id: str | None = context[1] if context else None
        self._start_signal: StartSignal | None = context[2] if context else None
        if self._start_signal is not None:
            self._start_signal.attached = True
        self._exit_reported = False
        # Only the first actor built in the start function is the child.
        _context.value = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "on_start" in cls.__dict__:
            cls.on_start = _wrap_start(cls.__dict__["on_start"])  # type: ignore[method-assign,assignment]
        if "on_stop" in cls.__dict__:
            cls.on_stop = _wrap(cls.__dict__["on_stop"], crash=False)  # type: ignore[method-assign]
        if "on_failure" in cls.__dict__:
            cls.on_failure = _wrap(cls.__dict__["on_failure"], crash=True)  # type: ignore[method-assign]

    def on_start(self) -> None:
        """Nothing to set up (the supervisor learns that it ran)."""

    def on_stop(self) -> None:
        """A normal exit: report it."""
        self.report_exit(None)

    def on_failure(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        """A crash: report it with its exception."""
        self.report_exit(_crash_reason(exc_value))

    def report_exit(self, reason: BaseException | None) -> None:
        """Tell the supervisor how this actor ended (once; later calls do nothing)."""
        if self._exit_reported or self.supervisor_ref is None or self.child_id is None:
            return
        self._exit_reported = True
        # If the supervisor is gone, it stopped us or gave up: nobody to tell.
        with contextlib.suppress(pykka.ActorDeadError):
            self.supervisor_ref.tell(ChildExited(self.child_id, self.actor_urn, reason))


# The base class's own on_start signals too (subclasses get it from __init_subclass__).
Supervised.on_start = _wrap_start(Supervised.__dict__["on_start"])  # type: ignore[method-assign,assignment]
