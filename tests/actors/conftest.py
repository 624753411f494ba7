"""Fixtures and test actors shared by the actor-layer tests."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from tests.faults import FaultProxy
from tether.server import Server


@pytest.fixture
def server(thread_baseline: int) -> Iterator[Server]:
    """The embedded server on an ephemeral port, stopped at teardown."""
    with Server() as srv:
        yield srv


@pytest.fixture
def proxy(server: Server) -> Iterator[FaultProxy]:
    """A fault-injection proxy in front of ``server``."""
    with FaultProxy(server.port) as prx:
        yield prx


class Recorder(pykka.ThreadingActor):
    """An owner actor that only records the events it is told."""

    def __init__(self, seen: queue.Queue[Any]) -> None:
        super().__init__()
        self.seen = seen

    def on_receive(self, message: Any) -> None:
        self.seen.put(message)


@pytest.fixture(autouse=True)
def _lock_order(checked_lock_order: None) -> None:
    """Every one of the actor layer's tests checks tether's lock order (tests/conftest.py)."""
