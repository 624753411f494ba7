"""A pykka ``ThreadingActor`` whose thread starts only when a message has to wait for it.

Why: pykka starts an actor's thread in ``Actor.start()``, and
``Thread.start`` waits until the new thread runs: under fan-out load that
was most of the cost of opening a connection (the supervisor starts them
one after another), and each thread's stack and bookkeeping most of a
connection's memory (``bench/NOTES.md``). With the
:mod:`~tether.actors._mailbox` inbox, the threads that tell a connection
its messages handle them inline, and the actor thread often never handles
anything. So :class:`LazyThreadingActor` leaves starting it to the
mailbox, which starts it (once) the first time a message is queued that
no teller will handle.

This module is the one place that relies on pykka's private runtime
hooks, as in pykka 4.1 to 4.5 (``tests/actors/test_lazy.py`` pins them,
and this module refuses to load without them):

- ``Actor.start()`` builds the actor, registers it and calls
  ``_start_actor_loop()`` once; ``ThreadingActor``'s starts a thread
  running ``_actor_loop``.
- ``_actor_loop`` is ``_actor_loop_setup()`` (``on_start``; if it raises,
  pykka logs it and stops the actor), ``_actor_loop_running()`` (messages
  from the inbox until ``actor_stopped`` is set) and
  ``_actor_loop_teardown()`` (what is still queued: asks are answered
  with ``ActorDeadError``).
- ``pykka.messages._ActorStop`` is what ``stop()`` sends; handling it sets
  ``actor_stopped``, so the loop returns right after it.

Only ``_start_actor_loop`` is overridden; the three parts of the loop are
pykka's own, called as they are, so failure and stop semantics stay
pykka's: ``on_failure`` after a crash and ``on_stop`` after a stop run in
the loop, queued asks of a stopped actor fail with ``ActorDeadError``, a
``BaseException`` stops every actor.

Where things run:

- ``on_start`` runs in ``start()``'s caller (for a supervised child, the
  thread holding the supervisor's turn: its own, or the one calling
  ``tether.open``; the synchronous start thus finds it done), once,
  before any message: what is told meanwhile is queued. If it raises, the
  actor is stopped as pykka would and the teardown runs right there.
  Then that thread handles what was told meanwhile, as a teller would.
- The loop runs on the actor thread once the mailbox has started it.
- A stop that finds no thread started and nothing queued before it is
  handled by pykka's loop run on the thread that hands it over (the one
  that told it, or the teller whose turn ends with it queued): ``on_stop``
  runs there, and no thread is started only to stop.
- ``use_daemon_thread`` is read when the thread starts, not in ``start()``.

``actor_stopped`` is a :class:`StopFlag`: a ``threading.Event`` whose
Condition is built by the first thread that waits for it (pykka only sets
it and reads ``is_set``), set on the actor and its ``ActorRef`` (both
public attributes) right after pykka's ``__init__``.
"""

from __future__ import annotations

import itertools
import threading
from typing import cast

import pykka
import pykka.messages

from tether.actors._mailbox import Mailbox

__all__ = ["LazyThreadingActor"]

# pykka's private names this module relies on (see above).
_HOOKS = ("_start_actor_loop", "_actor_loop_setup", "_actor_loop_running", "_actor_loop_teardown")
_missing = [name for name in _HOOKS if not callable(getattr(pykka.ThreadingActor, name, None))]
_ActorStop: type | None = getattr(pykka.messages, "_ActorStop", None)
if _missing or _ActorStop is None:
    raise ImportError(
        f"tether needs pykka's actor-loop hooks ({', '.join(_HOOKS)}, messages._ActorStop); "
        f"this pykka ({getattr(pykka, '__version__', '?')}) lacks "
        f"{', '.join(_missing) or 'messages._ActorStop'}"
    )
_STOP: type = _ActorStop

_thread_numbers = itertools.count(1)

# Guards building a StopFlag's Condition, and its flag against that (short,
# rare: one set per actor, and the waits on a stopped actor).
_flags_lock = threading.Lock()


class StopFlag(threading.Event):
    """A ``threading.Event`` whose Condition is built by the first thread that waits.

    An Event builds a Condition (with a Lock and a deque) at once: ~1.1 KiB
    per connection, of which pykka's ``actor_stopped`` only needs
    ``is_set`` and ``set`` unless someone waits for the actor to stop (and
    a supervised child's start signal is set before its supervisor waits).
    Thread-safe, as an Event.
    """

    def __init__(self) -> None:  # not Event's: it builds the Condition
        self._flag = False
        self._waited: threading.Condition | None = None

    def set(self) -> None:
        """Set the flag and wake the threads waiting for it."""
        with _flags_lock:
            self._flag = True
            waited = self._waited
        if waited is not None:
            with waited:  # a waiter holds it from its look at the flag until it waits
                waited.notify_all()

    def clear(self) -> None:
        """Reset the flag."""
        with _flags_lock:
            self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the flag is set or ``timeout`` seconds passed; the flag."""
        with _flags_lock:
            if self._flag:
                return True  # no Condition needed
            if self._waited is None:
                self._waited = threading.Condition(threading.Lock())
            waited = self._waited
        with waited:
            return waited.wait_for(lambda: self._flag, timeout)


def _ends_loop(message: object) -> bool:
    """Whether handling ``message`` ends pykka's loop (a stop): it can run on any thread."""
    return isinstance(message, _STOP)


class LazyThreadingActor(pykka.ThreadingActor):
    """A ``ThreadingActor`` with a :class:`Mailbox` that starts its thread when needed.

    Subclasses bind the mailbox (``self._mailbox.bind``) to say which
    messages tellers may handle inline; a message nobody may handle
    inline starts the thread, which then lives until the actor stops, as
    any ``ThreadingActor``'s.
    """

    @staticmethod
    def _create_actor_inbox() -> Mailbox:
        return Mailbox()

    def __init__(self) -> None:
        super().__init__()
        stopped = StopFlag()
        self.actor_stopped = self.actor_ref.actor_stopped = stopped
        self._mailbox = cast(Mailbox, self.actor_inbox)
        self._actor_thread: threading.Thread | None = None

    def _start_actor_loop(self) -> None:
        # pykka's hook, called once by Actor.start(): instead of a thread
        # running _actor_loop, on_start here and the rest of the loop later.
        mailbox = self._mailbox
        mailbox.make_lazy(self._start_thread, self._run_loop, _ends_loop)
        self._actor_loop_setup()
        if self.actor_stopped.is_set():
            # on_start failed (pykka logged it and stopped the actor): the
            # loop would end at once; its teardown answers what was asked.
            self._actor_loop_teardown()
            return
        mailbox.open()

    def _run_loop(self) -> None:
        """Run the rest of pykka's actor loop here (after ``on_start``) until the actor stops."""
        self._actor_loop_running()
        self._actor_loop_teardown()

    def _start_thread(self) -> None:
        """Start the actor thread (the mailbox calls it once, not under its lock)."""
        thread = threading.Thread(
            target=self._run_loop,
            name=f"{type(self).__name__}-{next(_thread_numbers)}",
            daemon=self.use_daemon_thread,
        )
        self._actor_thread = thread
        thread.start()
