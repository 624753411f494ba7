"""Gun's ``gun_SUITE`` connect-phase timeout cases, and what each bound does.

Gun's cases (``connect_timeout``, ``domain_lookup_timeout``,
``tls_handshake_timeout`` and their ``_infinity`` twins) open
``localhost:12345`` with the option and check that the connection got as
far as its ``init`` event: the value was accepted. Here too, with
tether's "no limit", ``None`` (``math.inf`` is refused at the call, as for
every option in seconds); and each bound is shown to end its own phase.

Bounds: ``connect_timeout`` bounds a whole attempt (tether's, from before
these options: DNS, TCP and the TLS handshake), ``domain_lookup_timeout``
the lookup and ``tls_handshake_timeout`` the handshake (Gun's). A lookup
cannot be made to stall on the loopback, so the one that does is the
transport's resolver hook, held by the test.
"""

from __future__ import annotations

import math
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tether
from tests.actors.test_lifecycle import silent_port
from tests.conftest import ConnectionTracker, events_until_gave_up
from tests.gun._events import Events
from tests.gun.conftest import WAIT
from tether.actors import _transport

pytestmark = pytest.mark.usefixtures("thread_baseline")

OPTIONS = ("connect_timeout", "domain_lookup_timeout", "tls_handshake_timeout")


def accepted(open_conn: ConnectionTracker, port: int, option: str, value: float | None) -> Events:
    """Gun's do_timeout: the option given, the connection begins (its init phase)."""
    events = Events()
    conn = open_conn("localhost", port, retry=0, event_handler=events, **{option: value})
    data = events.next("init")
    assert getattr(data["opts"], option) == value
    assert getattr(conn.opts, option) == value
    return events


@pytest.mark.parametrize("option", OPTIONS)
def test_timeout_option_is_accepted(
    option: str, open_conn: ConnectionTracker, refused_port: int
) -> None:
    """gun_SUITE:connect_timeout, domain_lookup_timeout, tls_handshake_timeout (1000 ms)."""
    events = accepted(open_conn, refused_port, option, 1.0)
    phase = {"connect_timeout": "connect_start", "domain_lookup_timeout": "domain_lookup_start"}
    if option in phase:  # the phase it bounds says so (a TCP attempt has no handshake)
        assert events.next(phase[option])["timeout"] == 1.0


@pytest.mark.parametrize("option", OPTIONS)
def test_timeout_option_infinity_is_accepted(
    option: str, open_conn: ConnectionTracker, refused_port: int
) -> None:
    """gun_SUITE:connect_timeout_infinity, domain_lookup_timeout_infinity,
    tls_handshake_timeout_infinity: no limit is ``None``; ``math.inf`` is refused at the call.
    """
    accepted(open_conn, refused_port, option, None)
    with pytest.raises(ValueError, match=option):
        tether.open("localhost", refused_port, **{option: math.inf})


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("value", [0, -1.0, math.nan, "1", True])
def test_timeout_option_is_validated(option: str, value: object) -> None:
    """A bound must be a positive, finite number of seconds (the error names the option)."""
    with pytest.raises((TypeError, ValueError), match=option):
        tether.open("localhost", 1, **{option: value})


def test_connect_timeout_ends_a_tcp_connect_that_hangs(open_conn: ConnectionTracker) -> None:
    """gun_SUITE:connect_timeout, in effect: connect_end carries the timeout as its error."""
    events = Events()
    with silent_port() as port:
        conn = open_conn("127.0.0.1", port, retry=0, connect_timeout=0.2, event_handler=events)
        data = events.next("connect_end")
        assert isinstance(data["error"], tether.ConnectTimeout)
        assert conn.wait_stopped(WAIT)


class StalledLookup:
    """The resolver hook: the lookup of ``name`` hangs until released; others are real."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.asked = threading.Event()
        self.release = threading.Event()
        self._real: Callable[..., Any] = _transport.resolve

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host != self.name:
            return self._real(host, port, *args, **kwargs)
        self.asked.set()
        self.release.wait(WAIT)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


@pytest.fixture
def stalled(thread_baseline: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    lookup = StalledLookup("stalls.example")
    monkeypatch.setattr(_transport, "resolve", lookup)
    yield lookup
    lookup.release.set()  # its thread ends (the connection gave up on it long ago)


def test_domain_lookup_timeout_ends_a_lookup_that_hangs(
    open_conn: ConnectionTracker, stalled: StalledLookup
) -> None:
    """gun_SUITE:domain_lookup_timeout, in effect: the attempt fails at the bound."""
    events = Events()
    conn = open_conn(stalled.name, 80, retry=0, domain_lookup_timeout=0.2, event_handler=events)
    assert stalled.asked.wait(WAIT)
    data = events.next("domain_lookup_end")
    assert isinstance(data["error"], tether.ConnectTimeout)
    assert "domain_lookup_timeout" in str(data["error"])
    final = events_until_gave_up(conn)[-1]
    assert isinstance(final.reason, tether.RetriesExhausted)  # type: ignore[attr-defined]
    assert final.reason.last_reason is data["error"]  # type: ignore[attr-defined]
    assert "connect_start" not in events.names()


def test_connect_timeout_bounds_the_lookup_too(
    open_conn: ConnectionTracker, stalled: StalledLookup
) -> None:
    """connect_timeout bounds the whole attempt, its lookup included (tether's, as before)."""
    events = Events()
    conn = open_conn(stalled.name, 80, retry=0, connect_timeout=0.2, event_handler=events)
    data = events.next("domain_lookup_end")
    assert isinstance(data["error"], tether.ConnectTimeout)
    assert "domain_lookup_timeout" not in str(data["error"])
    assert conn.wait_stopped(WAIT)


def silent_tls_server(listener: socket.socket) -> socket.socket:
    """Accept, read the ClientHello, and never answer (the caller closes it)."""
    accepted_sock, _ = listener.accept()
    accepted_sock.settimeout(WAIT)
    assert accepted_sock.recv(5)[:1] == b"\x16"  # a TLS handshake record
    return accepted_sock


@pytest.mark.parametrize("connect_timeout", [None, 5.0])
def test_tls_handshake_timeout_ends_a_handshake_that_hangs(
    connect_timeout: float | None, open_conn: ConnectionTracker
) -> None:
    """gun_SUITE:tls_handshake_timeout, in effect: the handshake's own bound ends it.

    Also when a larger ``connect_timeout`` bounds the attempt: the phase's
    bound comes first.
    """
    events = Events()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        conn = open_conn(
            "localhost",
            listener.getsockname()[1],
            transport="tls",
            retry=0,
            tls_handshake_timeout=0.2,
            connect_timeout=connect_timeout,
            event_handler=events,
        )
        with silent_tls_server(listener):
            data = events.next("tls_handshake_end")
            assert isinstance(data["error"], tether.ConnectTimeout)
            assert "tls_handshake_timeout" in str(data["error"])
            assert data["timeout"] == 0.2
            final = events_until_gave_up(conn)[-1]
    assert final.reason.last_reason is data["error"]  # type: ignore[attr-defined]
    assert "connect_end" in events.names()  # the TCP connect itself succeeded
