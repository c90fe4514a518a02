"""`TrainingConfig`: the training settings of a run, validated (published values as defaults).

Example:

>>> TrainingConfig(batch_size=4, epochs=2, warmup_epochs=0).blr
0.00016
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from keras_hbehavemae.errors import invalid

PRECISIONS = ("float32", "mixed_bfloat16")
DISTRIBUTIONS = (None, "data_parallel", "multi_worker")




@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainingConfig:
    """The training settings of a run (published values as defaults; docs/model.md,
    "Training recipe").

    Args:
        batch_size: windows per device and step.
        epochs: training epochs.
        warmup_epochs: linear learning-rate warmup, in (fractional) epochs, < `epochs`.
        blr: base learning rate; the peak is blr·effective_batch/256 unless `lr` is given.
        lr: absolute peak learning rate (overrides `blr`).
        min_lr: final learning rate of the half-cosine.
        weight_decay: AdamW decoupled weight decay (1-D variables excluded).
        clip_grad: global gradient-norm clip, > 0 (None: no clipping).
        seed: weight initialisation, data shuffling, augmentation and mask seed.
        precision: "float32" (published) or "mixed_bfloat16".
        distribute: None (one device), "data_parallel" (the local devices: JAX
            `DataParallel`, TensorFlow `MirroredStrategy`) or "multi_worker" (the devices of
            several processes; see `training.distribution`). Not torch. `batch_size` stays
            per device.
        steps_per_epoch: optional cap on the steps per epoch (smoke runs); by default one
            epoch is one pass over the training windows.
        checkpoint_every: milestone checkpoints kept for good (epoch % n == 0 and the
            last epoch; published 20).
        keep_last: newest checkpoints kept besides the milestones (at least 1).
        test_every: held-out `test_loss` at epoch % n == 0 (published 5).
        log_every_n_steps: per-step TensorBoard scalars every n steps.
    """

    batch_size: int
    epochs: int
    warmup_epochs: float
    blr: float = 1.6e-4
    lr: float | None = None
    min_lr: float = 0.0
    weight_decay: float = 0.05
    clip_grad: float | None = 0.02
    seed: int = 0
    precision: str = "float32"
    distribute: str | None = None
    steps_per_epoch: int | None = None
    checkpoint_every: int = 20
    keep_last: int = 2
    test_every: int = 5
    log_every_n_steps: int = 1

    def __post_init__(self):
        positive_ints = ("batch_size", "epochs", "checkpoint_every", "keep_last", "test_every",
                         "log_every_n_steps")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise invalid(name, value, "must be a positive integer")
        if self.steps_per_epoch is not None and (
                not isinstance(self.steps_per_epoch, int) or self.steps_per_epoch < 1):
            raise invalid("steps_per_epoch", self.steps_per_epoch,
                          "must be a positive integer or None")
        if not 0 <= self.warmup_epochs < self.epochs:
            raise invalid("warmup_epochs", self.warmup_epochs,
                          f"must lie in [0, epochs={self.epochs})")
        for name in ("blr", "lr", "min_lr", "weight_decay", "clip_grad"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0):
                raise invalid(name, value, "must be a finite number >= 0")
        if self.lr is not None and self.lr <= 0:
            raise invalid("lr", self.lr, "must be > 0")
        if self.blr <= 0:
            raise invalid("blr", self.blr, "must be > 0")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise invalid("clip_grad", self.clip_grad, "must be > 0, or None for no clipping")
        if self.lr is not None and self.min_lr > self.lr:
            raise invalid("min_lr", self.min_lr, f"must not exceed the peak lr = {self.lr}")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                or not 0 <= self.seed < 2**32):
            raise invalid("seed", self.seed, "must be an integer in [0, 2**32)")
        if self.precision not in PRECISIONS:
            raise invalid("precision", self.precision, f"must be one of {PRECISIONS}")
        if self.distribute not in DISTRIBUTIONS:
            raise invalid("distribute", self.distribute,
                          "must be None, 'data_parallel' or 'multi_worker'")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
