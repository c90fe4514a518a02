"""Determinism: the same seed on the same backend gives the same masks, and two fresh training
runs give the same losses step by step and the same weights."""

import os

import h5py
import numpy as np
import pytest
from helpers import TINY_CONFIG, build_pretrainer, compiled, to_numpy

from keras_hbehavemae import HBehaveMAEConfig

CONFIG = HBehaveMAEConfig(**TINY_CONFIG, norm_loss=True)


def keypoints(batch=8, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 32, 4, 12)).astype("float32")


def test_same_seed_gives_same_masks():
    masks = []
    for _ in range(2):
        model = build_pretrainer(CONFIG, seed=7)
        masks.append(to_numpy(compiled(model, lambda x, m=model: m(x)["mask"])(keypoints(4))))
    np.testing.assert_array_equal(masks[0], masks[1])


def checkpoint_arrays(path) -> dict:
    arrays = {}
    with h5py.File(path) as file:
        file.visititems(lambda name, item: arrays.setdefault(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
    return arrays


@pytest.mark.slow
def test_same_seed_gives_the_same_losses_and_weights_in_two_fresh_runs(finished_run,
                                                                       poisoned_run):
    """Weight initialisation, window shuffling and masks all follow `TrainingConfig.seed`: two
    fresh runs of one configuration (the second one poisoned when epoch 2 begins, see
    conftest.py) agree exactly, step by step, until the poison."""
    first_dir, first_losses = finished_run
    assert len(first_losses) == 8 and len(set(first_losses)) == 8  # 4 epochs of 2 steps
    assert len(poisoned_run.losses) == 5 and np.isnan(poisoned_run.losses[4])
    assert poisoned_run.losses[:4] == first_losses[:4]
    name = "checkpoint-epoch0000.weights.h5"  # kept by both (epoch 0 is a milestone)
    first = checkpoint_arrays(first_dir / name)
    second = checkpoint_arrays(os.path.join(poisoned_run.output_dir, name))
    assert first.keys() == second.keys() and first
    for key, value in first.items():
        np.testing.assert_array_equal(second[key], value, err_msg=key)
