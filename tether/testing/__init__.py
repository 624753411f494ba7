"""Test helpers for code built on tether's sans-I/O protocol layer.

:class:`ProtocolPair` runs a :class:`tether.protocol.ClientProtocol` against
an in-memory h11/wsproto server, with no socket, thread or clock.
"""

from tether.testing._clock import FakeClock as FakeClock
from tether.testing._clock import use_fake_clock as use_fake_clock
from tether.testing._pair import ProtocolPair as ProtocolPair
from tether.testing._pair import split_at as split_at

__all__ = ["FakeClock", "ProtocolPair", "split_at", "use_fake_clock"]
