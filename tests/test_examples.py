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


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_main_returns_0(path: Path) -> None:
    module = load(path)
    assert callable(getattr(module, "main", None)), f"{path.name} has no main()"

    assert module.main() == 0


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
        "connect_start",
        "connect_end",
        "request_start",
        "response_start",
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
