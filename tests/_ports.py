"""Free ports on 127.0.0.1 for the servers the tests start as processes of their own.

Why this exists: the tests run real programs (squid, tinyproxy, dante,
microsocks, nghttpd) as child processes, and each needs a port to be told on
its command line or in its config; a test also wants a port that refuses
connections. They all take it from here.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
