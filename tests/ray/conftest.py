"""A local Ray cluster for the fleet tests: started once per module, shut down after.

``ray.init(num_cpus=2)`` as the CI machine has; its workers import
``tether`` and ``tests`` from this checkout (``PYTHONPATH``). Without Ray
(a Python version Ray has no wheel for) every test here is skipped,
naming the version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ray import NO_RAY

try:
    import ray
except ImportError:  # each test module skips itself, naming the Python version
    ray = None

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """A local Ray cluster (2 CPUs, no dashboard), in a namespace of the module's own."""
    if ray is None:
        pytest.skip(NO_RAY)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace="tether-tests",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()
