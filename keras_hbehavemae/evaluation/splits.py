"""Seeded splits of sequences (clips, never single frames) for the probes.

Two splits, both drawn with `np.random.RandomState(seed)`, so that they are the splits of
scikit-learn (which is not needed at run time; the tests compare against it):

- `kfold_sequences(n, k, seed)`: k folds over the sequences, each held out once; the
  folds of `sklearn.model_selection.KFold(k, shuffle=True, random_state=seed)`.
- `split_sequences(n, seed, test_fraction)`: one train/held-out split; the split of
  `sklearn.model_selection.train_test_split(range(n), test_size=test_fraction,
  random_state=seed)`, the published protocol's split.

`make_splits` turns them into per-frame masks: one `SeedSplit` per seed, holding one
`Fold` (k-fold: k of them) of training and scored frames.

Example:

>>> split_sequences(8, seed=42, test_fraction=0.25)
(array([0, 2, 3, 4, 6, 7]), array([1, 5]))
>>> [fold.tolist() for fold in kfold_sequences(8, folds=4, seed=42)]
[[1, 5], [0, 7], [2, 4], [3, 6]]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.errors import invalid

#: "kfold": every sequence held out once per seed; "train_test_split": the published split.
SPLITS = ("kfold", "train_test_split")

FrameNumberMap = Mapping[str, tuple[int, int]]


def split_sequences(
    num_sequences: int, seed: int, test_fraction: float, *, min_held_out: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of sequence indices into sorted `(train, held_out)` index arrays.

    `ceil(test_fraction · num_sequences)` sequences are held out: the first ones of
    `RandomState(seed).permutation(num_sequences)`, the rest train. This is scikit-learn's
    `train_test_split(..., test_size=test_fraction, random_state=seed)`. At least
    `min_held_out` are held out (0 allows an empty held-out part), and at least one
    sequence is kept for training.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise invalid("test_fraction", test_fraction, "must be in [0, 1)")
    num_held_out = max(min_held_out, math.ceil(test_fraction * num_sequences))
    if num_held_out > num_sequences - 1:
        raise ValueError(
            f"cannot hold out {num_held_out} of {num_sequences} sequences and keep one to train"
        )
    order = np.random.RandomState(seed).permutation(num_sequences)
    return np.sort(order[num_held_out:]), np.sort(order[:num_held_out])


def kfold_sequences(num_sequences: int, folds: int, seed: int) -> list[np.ndarray]:
    """The held-out sequence indices of each of `folds` folds (sorted index arrays).

    The sequences are shuffled with `RandomState(seed)` and cut into `folds` consecutive
    parts, the first `num_sequences % folds` one longer: scikit-learn's
    `KFold(folds, shuffle=True, random_state=seed)`.
    """
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 2:
        raise invalid("folds", folds, "must be an integer >= 2")
    if folds > num_sequences:
        raise invalid("folds", folds, f"must be at most the number of sequences "
                      f"({num_sequences})")
    order = np.random.RandomState(seed).permutation(num_sequences)
    return [np.sort(part) for part in np.array_split(order, folds)]


def frame_sequence_index(
    sequence_ids: FrameNumberMap | np.ndarray, num_frames: int
) -> tuple[np.ndarray, list[Any]]:
    """Per-frame sequence index `[N]` (−1 = no sequence) and the sequence ids in order.

    `sequence_ids` is a frame number map (name → half-open `(start, end)`), or an
    array `[N]` with one sequence id per frame.
    """
    if isinstance(sequence_ids, Mapping):
        index = np.full(num_frames, -1, dtype=np.int64)
        names = list(sequence_ids)
        for position, name in enumerate(names):
            start, end = (int(value) for value in sequence_ids[name])
            if not 0 <= start <= end <= num_frames:
                raise ValueError(
                    f"sequence {name!r}: frames ({start}, {end}) are outside [0, {num_frames})"
                )
            if np.any(index[start:end] >= 0):
                raise ValueError(f"sequence {name!r} overlaps another sequence's frames")
            index[start:end] = position
        return index, names
    ids = np.asarray(sequence_ids)
    if ids.shape != (num_frames,):
        raise ValueError(f"sequence_ids must be [{num_frames}], got shape {ids.shape}")
    names, index = np.unique(ids, return_inverse=True)
    return index.astype(np.int64), names.tolist()


@dataclasses.dataclass
class Fold:
    """One probe fit: the frames it is fitted on and the frames it scores (bool `[N]`)."""

    train: np.ndarray
    scored: np.ndarray


@dataclasses.dataclass
class SeedSplit:
    """The folds of one seed. Their scored frames never overlap: each frame is scored at
    most once per seed (with k-fold, every frame of every sequence exactly once)."""

    seed: int
    folds: list[Fold]

    @property
    def scored(self) -> np.ndarray:
        return np.any([fold.scored for fold in self.folds], axis=0)


def make_splits(
    sequence_index: np.ndarray,
    names: list[Any],
    seeds: Sequence[int],
    *,
    split: str = "kfold",
    folds: int = 4,
    test_fraction: float = 0.25,
    evaluation_sequences: Sequence[Any] | None = None,
) -> list[SeedSplit]:
    """One `SeedSplit` per seed (see the module docstring and `probe_embeddings`).

    With `evaluation_sequences`, those sequences are scored by every seed and never fitted
    on; the other sequences are split with `split_sequences` and their held-out part is
    unused (the published protocol; `split` must be "train_test_split").
    """
    if split not in SPLITS:
        raise invalid("split", split, f"must be one of {SPLITS}")
    sequence_index = np.asarray(sequence_index)
    if evaluation_sequences is not None:
        if split != "train_test_split":
            raise invalid("split", split, "must be 'train_test_split' with evaluation "
                          "sequences (the published protocol)")
        missing = set(evaluation_sequences) - set(names)
        if missing:
            raise ValueError(f"evaluation sequences not in the frame map: {sorted(missing)[:5]}")
        evaluation = np.flatnonzero(np.isin(np.asarray(names, dtype=object),
                                            np.asarray(list(evaluation_sequences), dtype=object)))
        pool = np.setdiff1d(np.arange(len(names)), evaluation)
        scored = np.isin(sequence_index, evaluation)
        result = []
        for seed in seeds:
            train, _ = split_sequences(len(pool), seed, test_fraction, min_held_out=0)
            result.append(SeedSplit(int(seed), [Fold(np.isin(sequence_index, pool[train]),
                                                     scored)]))
        return result
    result = []
    for seed in seeds:
        if split == "kfold":
            held_out_parts = kfold_sequences(len(names), folds, seed)
        else:
            held_out_parts = [split_sequences(len(names), seed, test_fraction)[1]]
        seed_folds = []
        for held_out in held_out_parts:
            scored = np.isin(sequence_index, held_out)
            seed_folds.append(Fold((sequence_index >= 0) & ~scored, scored))
        result.append(SeedSplit(int(seed), seed_folds))
    return result
