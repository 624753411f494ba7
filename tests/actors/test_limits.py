"""Limits on loopback, against the embedded server: header count and size, message size.

Each over-limit answer ends the same way for the owner: an ``Error`` for
the stream whose reason is a ``tether.RemoteProtocolError`` naming the
option, then ``Down`` with that reason (the stream is not listed again as
killed), then, with ``retry=0``, the final ``Error``.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

import pytest

import tether
from tests.conftest import ConnectionTracker, events_until_gave_up
from tether.actors import _messages as msg
from tether.server import Server

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0

# Fields the server adds to every /headers/<N> and /header-bytes/<N> answer.
CONTENT_FIELDS = 2  # content-type, content-length


def get(conn: tether.Connection, path: str) -> tuple[tether.StreamRef, object]:
    """``GET path`` on a connection that is up; the stream and its first event."""
    assert conn.await_up(timeout=WAIT) == "http"
    stream = conn.get(path)
    return stream, conn.await_(stream, timeout=WAIT)


def assert_refused(
    conn: tether.Connection, stream: tether.StreamRef, option: str, first: object
) -> tether.RemoteProtocolError:
    """``first`` and what follows it: Error(stream), Down(reason, nothing killed), final Error."""
    error, down, final = [first, *events_until_gave_up(conn)]
    assert isinstance(error, tether.Error), error
    assert error.stream is stream
    reason = error.reason
    assert type(reason) is tether.RemoteProtocolError, reason
    assert option in str(reason)
    assert isinstance(down, tether.Down), down
    assert down.reason is reason
    assert down.killed_streams == ()
    assert isinstance(final, tether.Error)
    assert isinstance(final.reason, tether.RetriesExhausted)
    return reason


# -- header count ------------------------------------------------------------------------


def test_a_response_with_100_header_fields_is_accepted(server: Server, open_conn):
    conn = open_conn(server.host, server.port, retry=0)
    _, response = get(conn, f"/headers/{100 - CONTENT_FIELDS}")
    assert isinstance(response, tether.Response), response
    assert len(response.headers) == 100
    assert conn.await_body(response.stream, timeout=WAIT) == b"many headers"


def test_101_header_fields_are_an_error_and_down_by_default(server: Server, open_conn):
    conn = open_conn(server.host, server.port, retry=0)
    stream, first = get(conn, f"/headers/{101 - CONTENT_FIELDS}")
    assert "101 header fields" in str(assert_refused(conn, stream, "max_headers", first))


def test_max_headers_none_accepts_thousands(server: Server, open_conn: ConnectionTracker):
    conn = open_conn(server.host, server.port, retry=0, http_opts={"max_headers": None})
    _, response = get(conn, "/headers/3000")
    assert isinstance(response, tether.Response), response
    assert len(response.headers) == 3000 + CONTENT_FIELDS


def test_a_custom_max_headers_is_enforced(server: Server, open_conn: ConnectionTracker):
    conn = open_conn(server.host, server.port, retry=0, http_opts=tether.HttpOpts(max_headers=5))
    stream, first = get(conn, "/headers/4")
    assert_refused(conn, stream, "max_headers", first)


# -- header block size --------------------------------------------------------------------


def test_a_head_under_the_size_limit_is_accepted(server: Server, open_conn):
    conn = open_conn(server.host, server.port, retry=0, http_opts={"max_header_block_size": 4096})
    _, response = get(conn, "/header-bytes/3000")
    assert isinstance(response, tether.Response), response
    assert ("x-filler", "a" * 3000) in response.headers


@pytest.mark.parametrize(
    ("limit", "size"),
    [(4096, 8000), (100_000, 1_000_000)],
    ids=["whole-head-in-one-read", "head-over-many-reads"],
)
def test_a_head_over_the_size_limit_is_an_error_and_down(server: Server, open_conn, limit, size):
    conn = open_conn(server.host, server.port, retry=0, http_opts={"max_header_block_size": limit})
    stream, first = get(conn, f"/header-bytes/{size}")
    assert_refused(conn, stream, "max_header_block_size", first)


def test_a_head_that_never_ends_stops_at_the_size_limit(server: Server, open_conn):
    """The server writes header lines until the client goes away (or 256 MiB).

    A client that buffered the head would see the server give up and close
    (ConnectionClosed); tether stops at the limit with its own error. (When
    the server notices is up to the kernels: a zero window can keep its send
    waiting; the server's stop ends it.)
    """
    conn = open_conn(server.host, server.port, retry=0)
    stream, first = get(conn, "/endless-head")
    assert_refused(conn, stream, "max_header_block_size", first)


# -- message size ---------------------------------------------------------------------------


def upgraded(server: Server, open_conn, ws_opts: dict[str, object]) -> tether.Connection:
    conn = open_conn(server.host, server.port, retry=0, ws_opts=ws_opts)
    assert conn.await_up(timeout=WAIT) == "http"
    stream = conn.ws_upgrade("/ws")
    upgrade = conn.await_(stream, timeout=WAIT)
    assert isinstance(upgrade, tether.Upgrade), upgrade
    extensions = dict(upgrade.headers).get("sec-websocket-extensions", "")
    assert ("permessage-deflate" in extensions) == ws_opts.get("compress", False)
    return conn


@pytest.mark.parametrize("frames", [1, 3], ids=["one-frame", "fragmented"])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "deflate"])
def test_a_message_one_byte_over_max_message_size_closes_with_1009(
    server: Server, open_conn, frames, compress
):
    conn = upgraded(server, open_conn, {"max_message_size": 1000, "compress": compress})
    conn.ws_send(f"!big 1000 {frames}")
    at_limit = conn.inbox.receive(timeout=WAIT)
    assert isinstance(at_limit, tether.Ws), at_limit
    assert at_limit.frame == tether.Binary(b"x" * 1000)
    stream = at_limit.stream
    conn.ws_send(f"!big 1001 {frames}")
    error, down, final = events_until_gave_up(conn)
    assert isinstance(error, tether.Error), error
    assert error.stream is stream
    assert isinstance(error.reason, tether.RemoteProtocolError)
    assert error.reason.close_code == 1009
    assert "max_message_size" in str(error.reason)
    assert isinstance(down, tether.Down), down
    assert down.protocol == "ws"
    assert down.reason is error.reason
    assert isinstance(final, tether.Error)


def test_a_small_compressed_message_inflating_past_the_limit_is_refused(server: Server, open_conn):
    """2 MB of ``x`` travels as about 2 KB with permessage-deflate; the 1 MiB default holds."""
    conn = upgraded(server, open_conn, {"compress": True})
    conn.ws_send("!big 2000000")
    error, down, _ = events_until_gave_up(conn)
    assert isinstance(error, tether.Error), error
    assert isinstance(error.reason, tether.RemoteProtocolError)
    assert error.reason.close_code == 1009
    assert isinstance(down, tether.Down)


def test_refused_upgrades_are_not_kept_for_the_life_of_the_connection(
    connect: Callable[..., tether.Connection],
) -> None:
    # Each ws_upgrade is remembered until its answer (for reupgrade and
    # keepalive); a refused one (403, then its body) must be forgotten then,
    # or a long-lived connection retrying upgrades grows without bound.
    conn = connect(retry=0)
    assert conn.await_up(5.0) == "http"
    for _ in range(50):
        stream = conn.ws_upgrade("/forbidden")
        assert conn.await_body(stream, 5.0) is not None
    conn.info(5.0)  # the actor is past the last answer
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, msg.WsUpgrade)]
    assert len(alive) <= 1, f"{len(alive)} refused upgrades still held"
