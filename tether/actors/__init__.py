"""The actor layer: pykka actors, sockets and threads live here and only here.

``ConnectionActor`` owns one socket at a time and drives a sans-I/O
:class:`tether.protocol.ClientProtocol`; ``Connection`` is the thread-safe
handle users hold; ``Inbox`` is the owner for plain threads.
"""

from __future__ import annotations

import atexit

import pykka

from tether.actors._async_inbox import AsyncInbox as AsyncInbox
from tether.actors._connection import ConnectionActor as ConnectionActor
from tether.actors._handle import Connection as Connection
from tether.actors._handle import ConnectionInfo as ConnectionInfo
from tether.actors._handle import ConnectionState as ConnectionState
from tether.actors._handle import Owner as Owner
from tether.actors._handle import StreamInfo as StreamInfo
from tether.actors._inbox import Inbox as Inbox
from tether.actors._owner import OwnerActor as OwnerActor
from tether.actors._pooled import ActorPool as ActorPool
from tether.actors._pooled import PooledOwnerActor as PooledOwnerActor
from tether.actors._supervised import ChildExited as ChildExited
from tether.actors._supervised import Supervised as Supervised
from tether.actors._supervised import starting_child as starting_child

__all__ = [
    "ActorPool",
    "AsyncInbox",
    "ChildExited",
    "Connection",
    "ConnectionActor",
    "ConnectionInfo",
    "ConnectionState",
    "Inbox",
    "Owner",
    "OwnerActor",
    "PooledOwnerActor",
    "StreamInfo",
    "Supervised",
    "starting_child",
]

# How long interpreter exit waits for connections to close their sockets.
_EXIT_GRACE = 1.0


@atexit.register
def _close_connections_at_exit() -> None:
    # Connection actors run on daemon threads so that a forgotten connection
    # does not keep the interpreter alive; close their sockets on the way out.
    refs = pykka.ActorRegistry.get_by_class(ConnectionActor)
    futures = []
    for ref in refs:
        try:
            futures.append(ref.stop(block=False))
        except pykka.ActorDeadError:
            continue
    for future in futures:
        try:
            future.get(timeout=_EXIT_GRACE / max(len(futures), 1))
        except (pykka.Timeout, pykka.ActorDeadError):
            continue
