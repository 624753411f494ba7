"""The API reference (``docs/reference.md``, rendered by mkdocstrings) without building it.

mkdocstrings renders docstrings as Markdown: a Sphinx role such as
``:class:`~tether.Connection``` shows up raw on the page. These tests read
the docstrings the reference renders straight from the source (``ast``:
attribute docstrings too, which ``__doc__`` does not keep) and look for
reStructuredText that Markdown does not understand. They also check that
every class ``tether`` exports has its own entry.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import tether

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "docs" / "reference.md"
_DIRECTIVE = re.compile(r"^::: (\S+)$", re.MULTILINE)
# Sphinx roles (:class:`x`, :meth:`x`, ...) and rST literal blocks ("Example::").
_RST = re.compile(
    r":(?:class|meth|func|attr|mod|data|exc|obj|const|ref):`|::[ \t]*$", re.MULTILINE
)


def _resolve(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        module, _, attr = name.rpartition(".")
        return getattr(importlib.import_module(module), attr)


def _collect(path: str, node: ast.AST, found: dict[str, str]) -> None:
    """Docstrings of ``node`` and of its public members, as mkdocstrings walks them."""
    assert isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    doc = ast.get_docstring(node)
    if doc:
        found[path] = doc
    if not isinstance(node, ast.Module | ast.ClassDef):
        return
    body = node.body
    for i, stmt in enumerate(body):
        match stmt:
            case (
                ast.FunctionDef(name=name)
                | ast.AsyncFunctionDef(name=name)
                | ast.ClassDef(name=name)
            ) if not name.startswith("_"):
                _collect(f"{path}.{name}", stmt, found)
            case (
                ast.Assign(targets=[ast.Name(id=name)]) | ast.AnnAssign(target=ast.Name(id=name))
            ) if not name.startswith("_") and i + 1 < len(body):
                following = body[i + 1]
                match following:
                    case ast.Expr(value=ast.Constant(value=str(text))):
                        found[f"{path}.{name}"] = textwrap.dedent(text)
                    case _:
                        pass
            case _:
                pass


def _find(tree: ast.Module, qualname: str) -> ast.AST:
    node: ast.AST = tree
    for part in qualname.split("."):
        assert isinstance(node, ast.Module | ast.ClassDef)
        node = next(
            stmt
            for stmt in node.body
            if isinstance(stmt, ast.ClassDef | ast.FunctionDef) and stmt.name == part
        )
    return node


def rendered_docstrings() -> dict[str, str]:
    """Every docstring the reference page renders, by the path it is rendered under."""
    found: dict[str, str] = {}
    for name in _DIRECTIVE.findall(REFERENCE.read_text(encoding="utf-8")):
        if name.startswith("tether.ray.") and importlib.util.find_spec("ray") is None:
            continue  # the optional extra tether[ray] is not installed (tests/ray skip too)
        obj = _resolve(name)
        module = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
        tree = ast.parse(inspect.getsource(module))
        node = tree if obj is module else _find(tree, obj.__qualname__)
        _collect(name, node, found)
    return found


def test_the_reference_renders_no_restructuredtext() -> None:
    docstrings = rendered_docstrings()
    assert len(docstrings) > 100  # the walk found the members too
    assert "tether.Connection.update_flow" in docstrings
    leftovers = {
        path: [line.strip() for line in doc.splitlines() if _RST.search(line)]
        for path, doc in docstrings.items()
        if _RST.search(doc)
    }
    assert not leftovers, (
        "Sphinx roles or rST literal blocks in rendered docstrings; write "
        "[`Name`][tether.Name] to link, ``name`` for code, and a fenced block for code: "
        f"{leftovers}"
    )


@pytest.mark.parametrize(
    "name", [n for n in tether.__all__ if inspect.isclass(getattr(tether, n))]
)
def test_every_exported_class_has_an_entry(name: str) -> None:
    entries = _DIRECTIVE.findall(REFERENCE.read_text(encoding="utf-8"))
    assert f"tether.{name}" in entries
