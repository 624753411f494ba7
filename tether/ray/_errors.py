"""The errors of ``tether.ray``: a host that died under a call, and the ``Down`` it leaves.

Both are ``TetherError``s, so they pickle as values (``tether._errors``).
"""

from __future__ import annotations

from tether._errors import CallError, ReportedError

__all__ = ["FleetStopped", "HostDown", "HostRestarted"]


class HostDown(CallError):
    """A call on a fleet connection met its host dead or restarting (raised at the call).

    The call may or may not have been carried out: a host that died after
    it ran leaves no answer. The connection itself is re-opened by the
    restarted host (its owner sees ``Down`` with [`HostRestarted`][tether.ray.HostRestarted],
    then ``Up``); calls made once it is ``Up`` again go through.

    Attributes:
        fleet: the fleet's name.
        index: the host's index in the fleet.
    """

    def __init__(self, fleet: str, index: int, cause: str) -> None:
        super().__init__(f"host {index} of fleet {fleet!r} is down or restarting: {cause}")
        self.fleet = fleet
        self.index = index


class HostRestarted(ReportedError):
    """The reason of the ``Down`` an owner receives when a host process died and came back.

    A dead process cannot say goodbye: its connections' owners hear nothing
    when it dies. The restarted host tells each owner of a connection it
    re-opens this ``Down`` first (``killed_streams`` and
    ``unprocessed_streams`` empty: which streams were in flight died with
    the process), then the connection's ``Up``.

    Attributes:
        fleet: the fleet's name.
        index: the host's index in the fleet.
        generation: how many times this host has been started before (1: its first restart).
    """

    def __init__(self, fleet: str, index: int, generation: int) -> None:
        super().__init__(
            f"host {index} of fleet {fleet!r} died and was restarted (start #{generation + 1}):"
            " the connection was lost with its process"
        )
        self.fleet = fleet
        self.index = index
        self.generation = generation


class FleetStopped(CallError):
    """A call on a fleet, or on one of its connections, after ``Fleet.stop()``."""
