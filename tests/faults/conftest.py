"""Models and runs that several fault tests share, each built once per session (under JAX a
first eager model build, or the compilation of a training step, takes tens of seconds)."""

from __future__ import annotations

import types

import pytest
from helpers import (
    GOLDEN_NAMES,
    PoisonWeights,
    StepLosses,
    build_pretrainer,
    load_golden,
    run_small_pretraining,
)

from keras_hbehavemae.training.callbacks import NonFiniteLossError


@pytest.fixture(scope="session")
def tiny_pretrainer():
    """The tiny golden-fixture pretrainer (TINY, `multi`, `norm_loss`; U = 16, K = 4).

    Shared: tests must neither change its weights nor compile it.
    """
    config, _, _ = load_golden(GOLDEN_NAMES[0])
    return build_pretrainer(config, seed=0)


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """A finished `run_small_pretraining`: `(output_dir, per-step losses)`. Tests that damage
    the run folder work on a copy."""
    output_dir = tmp_path_factory.mktemp("finished") / "run"
    return output_dir, run_small_pretraining(output_dir)


@pytest.fixture(scope="session")
def poisoned_run(tmp_path_factory):
    """The same run with one weight set to NaN when epoch 2 begins: its output folder, the
    `NonFiniteLossError` it stopped with, the files present before epoch 2 and the per-step
    losses (the first 4 are those of a healthy run)."""
    output_dir = tmp_path_factory.mktemp("poisoned") / "run"
    poison, losses, error = PoisonWeights(2, str(output_dir)), StepLosses(), None
    try:
        run_small_pretraining(output_dir, losses, callbacks=[poison])
    except NonFiniteLossError as caught:  # the tests check it
        error = caught
    return types.SimpleNamespace(output_dir=str(output_dir), error=error,
                                 files_before=poison.files_before, losses=losses.losses)
