"""Test-suite setup: shared helpers importable, the quick and slow tiers, one leg for
backend-independent tests.

- `@pytest.mark.slow`: subprocesses, training runs, SavedModels, benchmarks and wheels.
  Plain `pytest` skips them (`-m "not slow"` in `pyproject.toml`); `pytest -m slow` runs
  only them. `.ci/run` runs both tiers.
- `pytestmark = pytest.mark.backend_independent` (pure numpy, geometry, configuration,
  data, probes, pickle readers): collected under every backend but run only under
  `KERAS_BACKEND=tensorflow` (or wherever `HBEHAVEMAE_BACKEND_INDEPENDENT=1` is set), so a
  CI run does not repeat them three times.
"""

from __future__ import annotations

import os
import pathlib
import sys

import keras

TESTS = pathlib.Path(__file__).resolve().parent
for folder in (TESTS, TESTS.parent / "benchmarks"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# The leg that runs the backend-independent tests.
INDEPENDENT_LEG = "tensorflow"


def _runs_backend_independent_tests() -> bool:
    flag = os.environ.get("HBEHAVEMAE_BACKEND_INDEPENDENT")
    if flag is not None:
        return flag == "1"
    return keras.config.backend() == INDEPENDENT_LEG


def pytest_collection_modifyitems(config, items):
    if _runs_backend_independent_tests():
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("backend_independent") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
