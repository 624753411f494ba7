"""The Gun 1.0 Websocket guide, scenario by scenario, against every real server in SERVERS.

Every test goes through the public API only: ``tether.open`` with the
default ``Inbox`` owner, request calls, ``ws_upgrade``/``ws_send`` and the
``await_*`` helpers (or ``conn.inbox.receive``) to see what the owner sees.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import tether
from tests.conftest import inbox_of
from tests.interop.servers import LoopServer, on_servers

pytestmark = pytest.mark.usefixtures("thread_baseline")

WAIT = 5.0

Connect = Callable[..., tether.Connection]


# -- helpers -------------------------------------------------------------------------


def next_event(conn: tether.Connection, timeout: float = WAIT) -> object:
    """The next event the (Inbox) owner of ``conn`` receives."""
    return inbox_of(conn).receive(timeout=timeout)


def events_until(conn: tether.Connection, last: type, timeout: float = WAIT) -> list[object]:
    """Receive events up to and including the first instance of ``last``."""
    seen: list[object] = []
    while not seen or not isinstance(seen[-1], last):
        seen.append(next_event(conn, timeout))
    return seen


def upgraded(connect: Connect, **options: object) -> tuple[tether.Connection, tether.StreamRef]:
    """A connection upgraded to Websocket on ``/websocket`` with the ``mychat`` subprotocol."""
    conn = connect(**options)
    assert conn.await_up() == "http"
    stream = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    event = conn.await_(stream)
    assert isinstance(event, tether.Upgrade), event
    return conn, stream


def get_hello(conn: tether.Connection) -> None:
    """``GET /`` works on ``conn``: 200 with body ``hello``."""
    stream = conn.get("/")
    response = conn.await_(stream)
    assert isinstance(response, tether.Response)
    assert response.status == 200
    assert conn.await_body(stream) == b"hello"


# -- 1. HTTP before the upgrade -------------------------------------------------------


def test_http_get_before_any_upgrade(connect: Connect) -> None:
    conn = connect()
    assert isinstance(conn.inbox, tether.Inbox)  # the default owner
    assert conn.await_up() == "http"
    stream = conn.get("/")
    response = conn.await_(stream)
    assert isinstance(response, tether.Response)
    assert response.conn is conn
    assert response.stream is stream
    assert response.status == 200
    assert not response.fin
    assert conn.await_body(stream) == b"hello"


@on_servers(websockets="its server takes GET requests only (it closes on a POST)")
def test_http_post_round_trip(connect: Connect, server: LoopServer) -> None:
    conn = connect()
    conn.await_up()
    stream = conn.post("/echo", [("content-type", "application/octet-stream")], b"ping \x00\xff")
    assert conn.await_body(stream) == b"ping \x00\xff"
    seen = server.next_request()
    assert (seen.method, seen.path, seen.version) == ("POST", "/echo", (1, 1))


# -- 2. Upgrade with the mychat subprotocol, then a text frame ---------------------


def test_upgrade_with_subprotocol_then_text_echo(connect: Connect, server: LoopServer) -> None:
    conn = connect()
    conn.await_up()
    get_hello(conn)  # HTTP first, then the upgrade on the same connection (the guide)
    stream = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    event = conn.await_(stream)
    assert isinstance(event, tether.Upgrade)
    assert event.stream is stream
    assert event.protocols == ("websocket",)
    assert ("sec-websocket-protocol", "mychat") in event.headers
    assert conn.upgraded

    server.next_request()  # GET /
    handshake = server.next_request()
    assert handshake.path == "/websocket"
    assert handshake.header("sec-websocket-protocol") == "mychat"

    conn.ws_send(tether.Text("Hello!"))
    echoed = conn.await_(stream)
    assert echoed == tether.Ws(conn, stream, tether.Text("Hello!"))


# -- 3. A list of frames, echoed in order ------------------------------------------------


def test_list_of_frames_echoed_in_order(connect: Connect) -> None:
    conn, stream = upgraded(connect)
    conn.ws_send([tether.Text("a"), tether.Binary(b"b"), "c", b"d"])
    frames = []
    for _ in range(4):
        event = conn.await_(stream)
        assert isinstance(event, tether.Ws)
        frames.append(event.frame)
    assert frames == [tether.Text("a"), tether.Binary(b"b"), tether.Text("c"), tether.Binary(b"d")]


# -- 4. Requests refused after the upgrade -----------------------------------------------


def test_requests_refused_after_upgrade(connect: Connect) -> None:
    conn, stream = upgraded(connect)
    assert conn.upgraded
    with pytest.raises(tether.UpgradedError):
        conn.get("/")
    with pytest.raises(tether.UpgradedError):
        conn.post("/echo", body=b"x")
    with pytest.raises(tether.UpgradedError):
        conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    # Nothing was sent: the Websocket carries on, and no event came for the refused calls.
    conn.ws_send("still here")
    assert conn.await_(stream) == tether.Ws(conn, stream, tether.Text("still here"))
    assert len(inbox_of(conn)) == 0


# -- 5. Refusals arrive as responses; the connection still does HTTP ---------------------


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [("/forbidden", 403, b"forbidden"), ("/plain", 200, b"plain http")],
)
def test_refused_upgrade_is_a_response(
    connect: Connect, server: LoopServer, path: str, status: int, body: bytes
) -> None:
    conn = connect()
    conn.await_up()
    stream = conn.ws_upgrade(path)
    response = conn.await_(stream)
    assert isinstance(response, tether.Response)
    assert response.status == status
    assert conn.await_body(stream) == body
    assert not conn.upgraded
    if server.closes_after_refused_upgrade:
        # Nothing was in flight: tether reconnects at once, still speaking HTTP.
        down, up = events_until(conn, tether.Up)
        assert isinstance(down, tether.Down)
        assert (down.killed_streams, down.unprocessed_streams) == ((), ())
        assert up == tether.Up(conn, "http")
    get_hello(conn)


# -- 6. No upgrade on HTTP/1.0 --------------------------------------------------------


def test_upgrade_on_http10_is_an_error(connect: Connect) -> None:
    conn = connect(http_opts={"version": "HTTP/1.0"})
    conn.await_up()
    stream = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    error = conn.await_(stream)
    assert isinstance(error, tether.Error)
    assert error.stream is stream
    assert isinstance(error.reason, tether.UpgradeError)
    assert not conn.upgraded


def test_http10_get_works(connect: Connect, server: LoopServer) -> None:
    conn = connect(http_opts={"version": "HTTP/1.0"})
    conn.await_up()
    get_hello(conn)
    expected = None if server.name == "websockets" else (1, 0)  # websockets does not say
    assert server.next_request().version == expected
    # HTTP/1.0 has no keep-alive: the server closes after the response, and
    # tether reconnects at once (nothing was in flight).
    down, up = events_until(conn, tether.Up)
    assert isinstance(down, tether.Down)
    assert down.protocol == "http"
    assert isinstance(down.reason, tether.ConnectionClosed)
    assert (down.killed_streams, down.unprocessed_streams) == ((), ())
    assert up == tether.Up(conn, "http")
    get_hello(conn)


# -- 7. A Close frame, then Down and Up ------------------------------------------------------


def test_close_frame_then_down_then_up_speaking_http(connect: Connect, server: LoopServer) -> None:
    # retry_timeout=30: the Up can only come within WAIT if the first retry is
    # immediate, as in Gun.
    conn, stream = upgraded(connect, retry_timeout=30)
    conn.ws_send(tether.Close())
    events = events_until(conn, tether.Up)

    *before_up, up = events
    downs = [e for e in before_up if isinstance(e, tether.Down)]
    assert len(downs) == 1, events
    down = downs[0]
    assert before_up[-1] is down  # Down comes right before Up
    # Anything before the Down is the server's answer to our close frame.
    assert all(e == tether.Ws(conn, stream, tether.Close(1000, "")) for e in before_up[:-1])
    assert down.protocol == "ws"
    assert isinstance(down.reason, tether.WsClosed)
    assert down.reason.code == 1000
    assert not down.reason.by_server
    assert stream in down.killed_streams
    assert up == tether.Up(conn, "http")
    assert server.next_ws_end().close_code == 1000

    # Reconnected, not re-upgraded: HTTP works again.
    assert not conn.upgraded
    assert conn.is_alive()
    get_hello(conn)


# -- 8. The server drops the connection: Down, Up, and (if asked) the upgrade again ------


def test_server_drop_then_down_then_up_speaking_http(connect: Connect, server: LoopServer) -> None:
    conn, stream = upgraded(
        connect, retry_timeout=30
    )  # Up within WAIT: the first retry is at once
    assert server.drop_connections() == 1
    down, up = events_until(conn, tether.Up)
    assert isinstance(down, tether.Down)
    assert down.protocol == "ws"
    assert stream in down.killed_streams
    assert up == tether.Up(conn, "http")
    assert not conn.upgraded
    get_hello(conn)


def test_server_drop_with_reupgrade_upgrades_again_and_echoes(
    connect: Connect, server: LoopServer
) -> None:
    conn, first = upgraded(connect, retry_timeout=30, ws_opts={"reupgrade": True})
    assert server.drop_connections() == 1
    down, up, upgrade = events_until(conn, tether.Upgrade)
    assert isinstance(down, tether.Down)
    assert first in down.killed_streams
    assert up == tether.Up(conn, "http")
    assert isinstance(upgrade, tether.Upgrade)
    assert upgrade.stream != first  # a new stream, the same path and headers
    assert ("sec-websocket-protocol", "mychat") in upgrade.headers
    conn.ws_send("after the drop")
    assert conn.await_(upgrade.stream) == tether.Ws(
        conn, upgrade.stream, tether.Text("after the drop")
    )


# -- 9. permessage-deflate ----------------------------------------------------------------


def test_deflate_is_negotiated_and_echoes(connect: Connect) -> None:
    conn = connect(ws_opts={"compress": True})
    conn.await_up()
    stream = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    upgrade = conn.await_(stream)
    assert isinstance(upgrade, tether.Upgrade)
    extensions = [v for n, v in upgrade.headers if n == "sec-websocket-extensions"]
    assert any(v.startswith("permessage-deflate") for v in extensions), upgrade.headers
    # Compressible messages, several in a row: the compression context carries over.
    messages = [
        tether.Text("hello " * 200),
        tether.Binary(bytes(range(256)) * 20),
        tether.Text(""),
    ]
    conn.ws_send(messages * 2)
    echoed = [conn.await_(stream) for _ in range(len(messages) * 2)]
    assert echoed == [tether.Ws(conn, stream, m) for m in messages * 2]


# -- the contract around the seed --------------------------------------------------------


def test_request_racing_the_upgrade_ends_as_an_error_for_its_stream(connect: Connect) -> None:
    conn = connect()
    conn.await_up()
    upgrade = conn.ws_upgrade("/websocket", [("sec-websocket-protocol", "mychat")])
    try:
        raced = conn.get("/")  # queued behind the upgrade request
    except tether.UpgradedError:
        # The upgrade completed first after all: then the call itself refuses.
        assert conn.upgraded
        return
    assert isinstance(conn.await_(upgrade), tether.Upgrade)
    error = conn.await_(raced)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.UpgradedError)
    conn.ws_send("after the race")
    assert conn.await_(upgrade) == tether.Ws(conn, upgrade, tether.Text("after the race"))


def test_ws_upgrade_options_per_call(connect: Connect) -> None:
    # ws_opts from open, overridden by ws_upgrade(opts=...): a tiny
    # max_message_size on this upgrade makes the echo of a bigger message an Error.
    conn = connect(ws_opts={"max_message_size": 1 << 20})
    conn.await_up()
    stream = conn.ws_upgrade("/websocket", opts={"max_message_size": 4})
    assert isinstance(conn.await_(stream), tether.Upgrade)
    conn.ws_send("tiny")
    assert conn.await_(stream) == tether.Ws(conn, stream, tether.Text("tiny"))
    conn.ws_send("too large")
    error = conn.await_(stream)
    assert isinstance(error, tether.Error)
    assert isinstance(error.reason, tether.RemoteProtocolError)
    assert error.reason.close_code == 1009


def test_pings_are_silenced_unless_asked_for(connect: Connect) -> None:
    conn, stream = upgraded(connect)
    conn.ws_send([tether.Ping(b"quiet"), "after the ping"])
    # the server answers the ping; the pong is not told to the owner by default.
    assert conn.await_(stream) == tether.Ws(conn, stream, tether.Text("after the ping"))

    loud, loud_stream = upgraded(connect, ws_opts={"silence_pings": False})
    loud.ws_send([tether.Ping(b"loud"), "after the ping"])
    assert loud.await_(loud_stream) == tether.Ws(loud, loud_stream, tether.Pong(b"loud"))
    assert loud.await_(loud_stream) == tether.Ws(loud, loud_stream, tether.Text("after the ping"))


def test_shutdown_of_a_websocket_closes_it_cleanly_without_reconnecting(
    connect: Connect, server: LoopServer
) -> None:
    conn, stream = upgraded(connect)
    conn.shutdown()
    assert conn.wait_stopped(WAIT)
    # A close handshake, not a cut: 1001, going away, as Gun's shutdown.
    assert server.next_ws_end().close_code == 1001
    *before, down = events_until(conn, tether.Down)
    # The server's answer: an echo of 1001, or aiohttp's 1000.
    assert before in (
        [tether.Ws(conn, stream, tether.Close(1001, ""))],
        [tether.Ws(conn, stream, tether.Close(1000, ""))],
    )
    assert isinstance(down, tether.Down)
    assert down.protocol == "ws"
    assert stream in down.killed_streams
    assert len(inbox_of(conn)) == 0  # and no Up: it stopped for good


def test_close_of_a_websocket_is_brutal(connect: Connect, server: LoopServer) -> None:
    conn, stream = upgraded(connect)
    conn.close()
    assert conn.wait_stopped(WAIT)
    down = next_event(conn)
    assert isinstance(down, tether.Down)
    assert down.protocol == "ws"
    assert isinstance(down.reason, tether.ClosedByUser)
    assert stream in down.killed_streams
    assert len(inbox_of(conn)) == 0
    assert server.next_ws_end().close_code not in (1000, 1001)  # no close handshake (Gun's close)
    assert not conn.upgraded
    with pytest.raises(tether.NotUpgradedError):
        conn.ws_send("too late")
