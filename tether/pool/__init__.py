"""Pools: Gun's ``gun_pool``, a supervised set of connections to one host.

``tether.start_pool(host, port, size=n, **open_opts)`` returns a
[`Pool`][tether.Pool] whose request methods send each request on a
connection that is up and has room (HTTP/1.1: idle). Depends on
``tether.supervision`` (its connections run under a supervisor of its
own); nothing below imports it.
"""

from tether.pool._pool import DEFAULT_CHECKOUT_TIMEOUT as DEFAULT_CHECKOUT_TIMEOUT
from tether.pool._pool import DEFAULT_SIZE as DEFAULT_SIZE
from tether.pool._pool import Pool as Pool
from tether.pool._pool import start_pool as start_pool
from tether.pool._slots import PoolConnectionInfo as PoolConnectionInfo
from tether.pool._slots import PoolConnectionState as PoolConnectionState
from tether.pool._slots import PoolInfo as PoolInfo
from tether.pool._slots import PoolState as PoolState

__all__ = [
    "DEFAULT_CHECKOUT_TIMEOUT",
    "DEFAULT_SIZE",
    "Pool",
    "PoolConnectionInfo",
    "PoolConnectionState",
    "PoolInfo",
    "PoolState",
    "start_pool",
]
