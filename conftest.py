"""Test-suite setup: a JAX compilation cache, shared helpers importable, the quick and slow
tiers, one leg for backend-independent tests.

- JAX compiles every eager operation the first time it sees a shape, so a fresh process
  spends tens of seconds building even the tiny model (measured on the loaded 2-core
  machine: 37–49 s for a backbone, 3 s with a warm cache). The tests therefore share a
  persistent compilation cache (`JAX_COMPILATION_CACHE_DIR`, set before JAX is imported and
  inherited by the subprocesses the tests start), unless the caller set one.
- `@pytest.mark.slow`: subprocesses, training runs, SavedModels, benchmarks and wheels.
  Plain `pytest` skips them (`-m "not slow"` in `pyproject.toml`); `pytest -m slow` runs
  only them. `.ci/run` runs both tiers. Both run in two pytest-xdist workers that take
  whole files (`-n 2 --dist loadfile` in `pyproject.toml`): most of a slow test is a
  subprocess importing TensorFlow or building a model, so two workers halve the wall time
  on 2 cores.
- `pytestmark = pytest.mark.backend_independent` (pure numpy, geometry, configuration,
  data, probes, pickle readers): collected under every backend but run only under
  `KERAS_BACKEND=tensorflow` (or wherever `HBEHAVEMAE_BACKEND_INDEPENDENT=1` is set), so a
  CI run does not repeat them three times.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "keras_hbehavemae_tests_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import keras  # noqa: E402  (after the JAX settings)
import pytest  # noqa: E402, F401

ROOT = pathlib.Path(__file__).resolve().parent
for folder in (ROOT / "tests", ROOT / "benchmarks"):
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
