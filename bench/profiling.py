"""Profile tether in one scenario with py-spy and summarise where the time goes.

``python bench/run.py --profile`` calls :func:`profile_all`: each scenario
runs in a fresh worker under ``py-spy record --gil`` (only samples of the
thread holding the GIL, i.e. Python CPU time, not waiting), and the
collapsed stacks are summarised as the functions with the most samples,
by self time and by inclusive time. Raw stacks and summaries are written
to ``bench/results/profile-<scenario>.{txt,raw}``.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

_FRAME = re.compile(r" \((?:.*/)?([^/:]+)(?::\d+)?\)$")


def _frame(raw: str) -> str:
    """``name (path/file.py:12)`` -> ``name (file.py)``."""
    return _FRAME.sub(r" (\1)", raw)


def summarise(raw: str, top: int = 20) -> str:
    """The ``top`` functions by self and by inclusive samples, in percent."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or "_find_and_load" in stack:  # imports are not the scenario
            continue
        count = int(count_text)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples with the GIL held", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("inclusive:")
    skip = ("threading.py", "worker.py", "<module>", "_bootstrap")
    lines += [
        f"  {100 * n / total:5.1f}%  {f}"
        for f, n in inclusive.most_common(top * 3)
        if not any(s in f for s in skip)
    ][: top * 2]
    return "\n".join(lines)


def profile(python: str, bench: Path, env: dict[str, str], body: dict[str, Any], out: Path) -> str:
    """Run one worker under py-spy; write and return the summary."""
    py_spy = str(Path(python).parent / "py-spy")
    raw_path = out.with_suffix(".raw")
    subprocess.run(
        [
            *(py_spy, "record", "--gil", "-r", "1000", "--format", "raw", "-o", str(raw_path)),
            *("--", python, str(bench / "worker.py"), json.dumps(body)),
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    summary = summarise(raw_path.read_text())
    out.write_text(summary + "\n")
    return summary


def profile_all(ports: tuple[int, int], bench: Path, results: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(bench), str(bench.parent)])}
    # Rate scenarios only: in a fan-out run the closing (after the timed
    # part) dominates what py-spy sees; bench/NOTES.md times its phases.
    cases: dict[str, dict[str, Any]] = {
        "small": {"scenario": "echo", "size": 32},
        "mib": {"scenario": "echo", "size": 1 << 20},
        "http": {"scenario": "http"},
    }
    results.mkdir(exist_ok=True)
    for name, case in cases.items():
        body = {"client": "tether", "ws_port": ports[0], "http_port": ports[1], "duration": 3.0}
        summary = profile(
            sys.executable, bench, env, {**body, **case}, results / f"profile-{name}.txt"
        )
        print(f"\n== profile: tether, {name}\n{summary}", flush=True)
