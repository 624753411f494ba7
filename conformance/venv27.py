"""Build (once) the Python 2.7 virtualenv that runs Autobahn|Testsuite's ``wstest``.

``autobahntestsuite`` is Python 2 code. This makes ``conformance/.venv27``
from the pyenv Python 2.7.18 (or ``$PYTHON27``) with the pins of
``requirements-py27.txt``. Modern ``virtualenv`` (>= 20.22) cannot create
Python 2 environments and Python 2.7 ships no ``venv``, so a small Python 3
tool venv (``conformance/.venv-tools``) holds ``virtualenv`` 20.21.1, whose
bundled seed packages (pip 20.3.4, setuptools 44.1.1) still support 2.7.

The built venv is stamped with a hash of the requirements file, so editing
the pins rebuilds it and an unchanged one is reused.

Usage: ``python3 conformance/venv27.py`` (prints the path of ``wstest``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["VENV27", "ensure_wstest"]

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements-py27.txt"
TOOLS = HERE / ".venv-tools"
VENV27 = HERE / ".venv27"
_STAMP = VENV27 / ".requirements.sha256"
_VIRTUALENV_PIN = "virtualenv==20.21.1"  # the last release that creates Python 2.7 envs
_INSTALL_TIMEOUT = 600.0  # seconds; a cold install takes about 30 s


def _python27() -> Path:
    """The Python 2.7 interpreter: ``$PYTHON27`` or pyenv's 2.7.18."""
    given = os.environ.get("PYTHON27")
    if given:
        return Path(given)
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        raise SystemExit("no Python 2.7: install pyenv's 2.7.18 or set PYTHON27")
    root = subprocess.run(
        [pyenv, "root"], check=True, capture_output=True, text=True, timeout=30
    ).stdout.strip()
    python = Path(root) / "versions" / "2.7.18" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"no Python 2.7 at {python}: `pyenv install 2.7.18` or set PYTHON27")
    return python


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, timeout=_INSTALL_TIMEOUT)


def ensure_wstest() -> Path:
    """Return the path of ``wstest``, building the virtualenv first if needed."""
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    wstest = VENV27 / "bin" / "wstest"
    if wstest.exists() and _STAMP.exists() and _STAMP.read_text().strip() == wanted:
        return wstest
    if not (TOOLS / "bin" / "virtualenv").exists():
        _run(sys.executable, "-m", "venv", "--clear", TOOLS)
        _run(TOOLS / "bin" / "pip", "install", "--quiet", _VIRTUALENV_PIN)
    shutil.rmtree(VENV27, ignore_errors=True)
    _run(TOOLS / "bin" / "virtualenv", "--quiet", "--python", _python27(), VENV27)
    _run(VENV27 / "bin" / "pip", "install", "--quiet", "--no-cache-dir", "-r", REQUIREMENTS)
    _STAMP.write_text(wanted + "\n")
    return wstest


if __name__ == "__main__":
    print(ensure_wstest())
