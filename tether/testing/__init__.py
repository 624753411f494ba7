"""Test helpers for code built on tether's sans-I/O protocol layer.

:class:`ProtocolPair` runs a :class:`tether.protocol.ClientProtocol` against
an in-memory h11/wsproto server, with no socket, thread or clock.
"""

from tether.testing._pair import ProtocolPair as ProtocolPair
from tether.testing._pair import split_at as split_at

__all__ = ["ProtocolPair", "split_at"]
