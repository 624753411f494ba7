"""Every ```python block of ``docs/*.md`` and ``README.md`` runs, page by page, in order.

The blocks of one ``docs/`` page share one namespace, as a reader
following the page would (a page that needs a server starts the embedded
one in its first block and stops it in its last). Each block of
``README.md`` runs alone, in a fresh namespace: a reader copies any one of
them, so each has its own imports and starts and stops its own server.

A fragment that cannot run on its own (a ``case`` clause, a method body)
is fenced ```py instead: it is highlighted the same, but not run, and
there is a small budget for them. Every page (every README block) must
leave no connection, actor or server thread behind.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest

import tether
from tether._cli._exit import ExitCode
from tether.server import Server

ROOT = Path(__file__).parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FRAGMENT_BUDGET = 10

_FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page (indented ones too, e.g. in lists)."""
    found = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, info = opening["indent"], opening["info"].strip()
        body = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i])
            i += 1
        code = textwrap.dedent("\n".join(body)) if indent else "\n".join(body)
        found.append(Block(page, i - len(body), info, code + "\n"))
        i += 1
    return found


RUNNABLE = [page for page in PAGES if any(b.info == "python" for b in blocks(page))]
# README.md: each block on its own; docs/: each page's blocks together, in order.
README = ROOT / "README.md"
SAMPLES = [
    *([b] for b in blocks(README) if b.info == "python"),
    *([b for b in blocks(page) if b.info == "python"] for page in RUNNABLE if page != README),
]


def _sample_id(sample: list[Block]) -> str:
    first = sample[0]
    return f"{first.page.name}:{first.line}" if first.page == README else first.page.name


def _clean_up(namespace: dict[str, Any]) -> None:
    """After a failed page: stop what it started, so the failure is not followed by leaks."""
    for value in namespace.values():
        if isinstance(value, tether.Connection):
            value.close()
        elif isinstance(value, pykka.ActorRef):
            value.stop(block=False)
        elif isinstance(value, tether.Supervisor):
            value.stop()
    for value in namespace.values():
        if isinstance(value, Server):
            value.stop()


def test_pages_have_runnable_samples() -> None:
    names = {page.name for page in RUNNABLE}
    assert {"README.md", "index.md", "http.md", "websocket.md"} <= names


def test_fragments_are_few_and_fenced_as_py() -> None:
    every = [b for page in PAGES for b in blocks(page)]
    fragments = [f"{b.page.name}:{b.line}" for b in every if b.info == "py"]
    assert len(fragments) <= FRAGMENT_BUDGET, f"too many non-runnable fragments: {fragments}"
    odd = [
        f"{b.page.name}:{b.line} {b.info!r}"
        for b in every
        if b.info.startswith("py") and b.info not in ("python", "py")
    ]
    assert not odd, f"fence Python as ```python (run) or ```py (fragment): {odd}"


def test_the_cli_page_lists_every_exit_code() -> None:
    page = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = [int(code) for code in re.findall(r"^\| (\d+) \|", page, re.MULTILINE)]
    assert documented == [*(code.value for code in ExitCode), 130]


def test_readme_blocks_each_run_alone() -> None:
    readme = [sample for sample in SAMPLES if sample[0].page == README]
    assert len(readme) >= 2
    assert all(len(sample) == 1 for sample in readme)


@pytest.mark.usefixtures("thread_baseline")
@pytest.mark.parametrize("sample", SAMPLES, ids=_sample_id)
def test_page_samples_run(sample: list[Block], capsys: pytest.CaptureFixture[str]) -> None:
    page = sample[0].page
    namespace: dict[str, Any] = {"__name__": f"docs_{page.stem}"}
    try:
        for block in sample:
            # Padded so that a traceback points at the line of the page.
            source = "\n" * block.line + block.code
            code = compile(source, str(page), "exec")
            exec(code, namespace)
    except BaseException:
        _clean_up(namespace)
        raise
    capsys.readouterr()  # the samples print; pytest shows it only on failure
