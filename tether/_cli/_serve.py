"""``tether serve``: run the embedded HTTP/Websocket server until interrupted."""

from __future__ import annotations

import sys
from typing import TextIO

from tether.server import Server

__all__ = ["serve"]


def serve(host: str, port: int, out: TextIO = sys.stdout) -> int:
    """Run the embedded server until Ctrl-C (or SIGINT); return the exit status."""
    server = Server(host, port).start()
    out.write(f"tether server on {server.url} (Websocket echo at /websocket); Ctrl-C stops it\n")
    out.flush()
    server.serve_forever()
    return 0
