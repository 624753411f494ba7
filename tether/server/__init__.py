"""An embedded HTTP/1.1 and Websocket server for tether's tests, demo and benchmarks.

It is a real peer on a real socket (h11 for HTTP, wsproto for Websocket),
with routes that exercise what a client must handle: keep-alive, chunked
bodies, trailers, 1xx responses, closes and drops, and a Websocket echo
that misbehaves on command. Only the standard library, h11 and wsproto are
used, so it never depends on the client it tests.
"""

from tether.server._server import Server as Server

__all__ = ["Server"]
