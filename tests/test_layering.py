"""The layers stay apart: the protocol layer is sans-I/O, the actors know no supervisor.

Reads the source (no import), so a forbidden import anywhere in a module,
under ``TYPE_CHECKING`` or inside a function included, fails the test.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TETHER = ROOT / "tether"

# I/O, threads, clocks, actors: none of it belongs in a sans-I/O layer.
SANS_IO_FORBIDDEN = (
    "socket",
    "selectors",
    "threading",
    "asyncio",
    "time",
    "pykka",
    "tether.actors",
    "tether.supervision",
    "tether.pool",
    "tether.server",
)


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module ``path`` imports, relative imports resolved, ``from`` targets included."""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package.pop()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            # `from tether import actors` imports the module tether.actors.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def violations(path: Path, forbidden: tuple[str, ...], root: Path = ROOT) -> list[str]:
    return sorted(
        name
        for name in imported_modules(path, root)
        if any(name == bad or name.startswith(bad + ".") for bad in forbidden)
    )


SANS_IO_MODULES = [*sorted((TETHER / "protocol").rglob("*.py")), TETHER / "testing" / "_pair.py"]


def test_the_sans_io_modules_exist():
    names = {module_name(p) for p in SANS_IO_MODULES}
    assert {"tether.protocol", "tether.protocol._client", "tether.testing._pair"} <= names


@pytest.mark.parametrize("path", SANS_IO_MODULES, ids=module_name)
def test_sans_io_modules_import_no_io_threads_clocks_or_actors(path):
    assert violations(path, SANS_IO_FORBIDDEN) == []


@pytest.mark.parametrize("path", sorted((TETHER / "actors").rglob("*.py")), ids=module_name)
def test_actors_do_not_import_supervision(path):
    assert violations(path, ("tether.supervision",)) == []


BELOW_POOLS = sorted(
    p for layer in ("protocol", "actors", "supervision") for p in (TETHER / layer).rglob("*.py")
)


@pytest.mark.parametrize("path", BELOW_POOLS, ids=module_name)
def test_the_layers_below_pools_do_not_import_them(path):
    # Pools are a face over supervised connections: tether.pool -> supervision -> actors.
    assert violations(path, ("tether.pool",)) == []


def test_pools_import_no_server_or_testing_helpers():
    for path in sorted((TETHER / "pool").rglob("*.py")):
        assert violations(path, ("tether.server", "tether.testing")) == [], path


def test_pair_helper_imports_only_the_protocol_leaves_h11_and_wsproto():
    imports = imported_modules(TETHER / "testing" / "_pair.py")
    tops = {name.split(".")[0] for name in imports}
    assert tops - set(sys.stdlib_module_names) <= {"tether", "h11", "wsproto"}
    leaves = (
        "tether.protocol",
        "tether._events",
        "tether._frames",
        "tether._errors",
        "tether._options",
    )
    assert sorted(n for n in imports if n.startswith("tether") and not n.startswith(leaves)) == []


# The checker itself must see every form of import, or the tests above prove nothing.


@pytest.mark.parametrize(
    ("source", "where", "expected"),
    [
        ("import socket", "tether/protocol/_x.py", ["socket"]),
        ("import time as clock", "tether/protocol/_x.py", ["time"]),
        ("from threading import Lock", "tether/protocol/_x.py", ["threading", "threading.Lock"]),
        (
            "from asyncio.events import get_event_loop",
            "tether/protocol/_x.py",
            ["asyncio.events", "asyncio.events.get_event_loop"],
        ),
        (
            "from ..actors import _handle",
            "tether/protocol/_x.py",
            ["tether.actors", "tether.actors._handle"],
        ),
        ("from .. import supervision", "tether/protocol/_x.py", ["tether.supervision"]),
        ("from . import _http", "tether/protocol/__init__.py", []),
        ("from tether import server", "tether/testing/_pair.py", ["tether.server"]),
        ("def f():\n    import pykka", "tether/protocol/_x.py", ["pykka"]),
        ("import timeit, selectors", "tether/protocol/_x.py", ["selectors"]),
    ],
)
def test_the_checker_catches_every_import_form(tmp_path, source, where, expected):
    path = tmp_path / where
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    assert violations(path, SANS_IO_FORBIDDEN, tmp_path) == expected


# tether.ray is an optional extra: only `import tether.ray` may import Ray.
OUTSIDE_RAY = sorted(p for p in TETHER.rglob("*.py") if "ray" not in p.relative_to(TETHER).parts)


@pytest.mark.parametrize("path", OUTSIDE_RAY, ids=module_name)
def test_nothing_outside_tether_ray_imports_it_or_ray(path):
    assert violations(path, ("tether.ray", "ray")) == []


def test_tether_ray_sits_on_supervision_and_actors_not_on_pools_or_servers():
    for path in sorted((TETHER / "ray").rglob("*.py")):
        assert violations(path, ("tether.pool", "tether.server", "tether.testing")) == [], path


def test_import_tether_does_not_import_ray():
    code = "import sys, tether; print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
