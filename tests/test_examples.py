"""Every ``examples/*.py`` runs: its ``main()`` returns 0 and leaves no thread behind.

Examples are imported by path (``examples/`` is not a package), so a new
example file is picked up here without touching this test.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.usefixtures("thread_baseline")

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.py"))


def load(path: Path) -> ModuleType:
    """Import an example file as a module (``__name__`` is not ``"__main__"``)."""
    spec = importlib.util.spec_from_file_location(f"tether_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_examples() -> None:
    assert EXAMPLES, "no examples/*.py found"


# What each example prints (stdout), line by line; an example missing here prints nothing.
OUTPUT = {
    "asyncio_owner": [
        "fetched at once: [b'delayed', b'delayed', b'delayed']",
        "echo: Text(data='Hello!')",
        "echo: Binary(data=b'\\x00\\x01')",
    ],
    "owner_actor": ["echoed: ['Hello!', 'How are you?']"],
    "market_feed": [
        "up: http",
        "upgraded: subscribing to EURUSD",
        "confirmed: subscribe EURUSD",
        "down: ConnectionClosed, reconnecting with backoff",
        "up: http",
        "upgraded: subscribing to EURUSD",
        "confirmed: subscribe EURUSD",
        "down: ConnectionClosed, reconnecting with backoff",
        "up: http",
        "upgraded: subscribing to EURUSD",
        "confirmed: subscribe EURUSD",
    ],
    "supervised_fleet": [
        "billing: up (http)",
        "orders: up (http)",
        "search: up (http)",
        "orders: down, Crashed: connection actor crashed: "
        "RuntimeError('metrics hook cannot handle status 500')",
        "orders: restarted, up again (http)",
        "billing: GET / -> b'hello from tether\\n'",
        "orders: GET / -> b'hello from tether\\n'",
        "search: GET / -> b'hello from tether\\n'",
        "restarts per child: [0, 1, 0]",
    ],
    "plain_threads": [
        "up: http",
        "GET / -> b'hello from tether\\n'",
        "POST /echo -> 200 POST",
        "   body: b'a body'",
        "PUT /echo in pieces -> b'one, two'",
        "upgraded: mychat",
        "echo: Text(data='Hello!')",
        "echo: Binary(data=b'\\x00\\x01')",
        "parallel: [b'delayed', b'delayed', b'delayed']",
    ],
}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_main_returns_0_and_prints_its_story(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load(path)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"

    assert module.main() == 0
    assert capsys.readouterr().out.splitlines() == OUTPUT.get(path.stem, [])


def test_the_logging_event_handler_logs_each_phase(caplog: pytest.LogCaptureFixture) -> None:
    module = load(Path(__file__).parent.parent / "examples" / "logging_event_handler.py")

    def records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "tether.example"]

    with caplog.at_level(logging.DEBUG, logger="tether.example"):
        assert module.main() == 0
        # "terminate" is the connection actor's last act; it may come just
        # after close() has returned.
        deadline = time.monotonic() + 5.0
        while not any(r.getMessage().startswith("terminate") for r in records()):
            assert time.monotonic() < deadline, "no terminate phase logged"
            time.sleep(0.005)

    logged = records()
    phases = [r.getMessage().split(" ", 1)[0] for r in logged]
    assert phases == [
        "init",
        "domain_lookup_start",
        "domain_lookup_end",
        "connect_start",
        "connect_end",
        "request_start",
        "request_headers",
        "request_end",
        "response_start",
        "response_headers",
        "response_end",
        "GET",
        "disconnect",
        "terminate",
    ]
    levels = {r.getMessage().split(" ", 1)[0]: r.levelno for r in logged}
    assert levels["connect_start"] == logging.DEBUG
    assert levels["connect_end"] == logging.INFO
    assert levels["terminate"] == logging.INFO
    assert "'status': 200" in logged[phases.index("response_start")].getMessage()
