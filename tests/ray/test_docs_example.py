"""docs/fleets.md's worked example runs, as a reader would run it: a script of its own.

It is fenced as a fragment (```py) so that tests/test_docs.py, which runs
the pages' blocks in this process, does not start a Ray cluster; here it
runs in a subprocess with its own ``ray.init``, and what it prints is checked.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray import NO_RAY
from tests.test_docs import blocks

pytest.importorskip("ray", reason=NO_RAY)

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "fleets.md"
RUN_TIMEOUT = 180.0  # a cluster's start, two hosts, one restart, on a loaded 2-core machine


def example() -> str:
    (code,) = [b.code for b in blocks(PAGE) if b.info == "py" and "Fleet.start" in b.code]
    return code


def test_the_fan_in_example_runs_and_its_feeds_come_back(tmp_path):
    script = tmp_path / "fan_in.py"
    script.write_text(example(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # Ray's raylet reports the killed worker on stdout too: the example's lines are literals.
    printed = [line for line in result.stdout.splitlines() if line[:1] in ("(", "[", "{")]
    first, log, ticks = (ast.literal_eval(line) for line in printed)
    symbols = ["BTCUSD", "ETHUSD", "EURUSD", "USDJPY", "GBPUSD", "XAUUSD"]
    assert first == ([], dict.fromkeys(symbols, 1))
    lost = sorted(ticks)
    assert "BTCUSD" in lost
    assert set(lost) < set(symbols)  # the other host's feeds are not in it
    assert log == [f"{symbol} down: HostRestarted" for symbol in lost]
    assert ticks == dict.fromkeys(ticks, 2)
