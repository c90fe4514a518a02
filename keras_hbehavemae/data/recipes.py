"""The published data recipes by dataset name, and `PretrainingData` (train + held-out split).

| dataset | files under `path` | reader | per window | held-out split |
|---|---|---|---|---|
| `synthetic` | `train.npy`, `test.npy` (`write_synthetic_dataset`) | MABe22 | augment (opt.), (v−425)/425 | test |
| `mabe_mice` | `mouse_triplet_train.npy`, `mouse_triplet_test.npy` | MABe22 | augment (published: on), (v−425)/425 | test |
| `shot7m2` | `train/train_dictionary_poses.npy`, `test/test_dictionary_poses.npy` | Shot7M2 | nothing | test |
| `hbabel` | `babel-smplh-30fps-male/{train,val}_proc_realigned_procrustes.pth.tar` (or `train.npy`/`val.npy`) | hBABEL | nothing; end-only padding | val |
| `keypoints` | `train/` and optional `test/` folders (or one folder) | generic arrays | nothing | test, if present |

Example:

>>> import numpy as np
>>> data = PretrainingData("arrays", train=[np.zeros((50, 1, 4), "float32")], test=None,
...                        num_frames=20, sliding_window=5)
>>> data.num_train_windows, data.steps_per_epoch(global_batch_size=4)
(10, 2)
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.data.normalisation import ArenaNormalisation
from keras_hbehavemae.data.readers import (
    read_hbabel,
    read_keypoint_arrays,
    read_mabe_mouse_triplets,
    read_shot7m2,
)
from keras_hbehavemae.data.sequences import KeypointSequences
from keras_hbehavemae.data.synthetic import write_synthetic_dataset
from keras_hbehavemae.data.windows import WindowPlan, end_padded_windows, training_windows

DATASETS = ("synthetic", "mabe_mice", "shot7m2", "hbabel", "keypoints")

#: Published window strides (SPEC §9.1, §9.4).
SLIDING_WINDOW = {"synthetic": 17, "mabe_mice": 17, "shot7m2": 17, "hbabel": 11, "keypoints": 17}

Sequences = KeypointSequences | Sequence[np.ndarray]


def _arrays(sequences: Sequences) -> list[np.ndarray]:
    if isinstance(sequences, KeypointSequences):
        return list(sequences.keypoints)
    return [np.asarray(array, np.float32) for array in sequences]


@dataclasses.dataclass(frozen=True)
class PretrainingData:
    """Training and held-out sequences plus how to cut them into model windows.

    Args:
        name: the dataset name (recorded in the run configuration).
        train: the training sequences, `[T_i, H, W]` each.
        test: the held-out sequences for `test_loss`, or None.
        num_frames: window length (the model's T).
        sliding_window: stride between window starts.
        sampling_rate: stride between frames inside a window.
        padding: "both_ends" (SPEC §9.1) or "end_only" (hBABEL, §9.4).
        augment: optional `augment(window, seed)`, training windows only.
        normalise: optional `normalise(window)`, after `augment`, on both splits.
        source: free-form, JSON-serialisable description of where the data came from.
    """

    name: str
    train: Sequences
    test: Sequences | None
    num_frames: int
    sliding_window: int = 17
    sampling_rate: int = 1
    padding: str = "both_ends"
    augment: Callable | None = None
    normalise: Callable | None = None
    source: Any = None

    def _plan(self, sequences: Sequences) -> WindowPlan:
        lengths = [array.shape[0] for array in _arrays(sequences)]
        make = training_windows if self.padding == "both_ends" else end_padded_windows
        return make(lengths, self.num_frames, self.sliding_window, self.sampling_rate)

    @property
    def feature_shape(self) -> tuple[int, int]:
        """`(H, W)` of one frame."""
        return tuple(_arrays(self.train)[0].shape[1:])

    @property
    def num_train_windows(self) -> int:
        return len(self._plan(self.train))

    @property
    def num_test_windows(self) -> int:
        return 0 if self.test is None else len(self._plan(self.test))

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Full batches in one pass over the training windows (the last partial one dropped).

        Raises:
            ValueError: if there are fewer windows than one batch.
        """
        steps = self.num_train_windows // global_batch_size
        if steps < 1:
            raise ValueError(
                f"the {self.name} training split has {self.num_train_windows} windows, fewer "
                f"than one batch of {global_batch_size}; use a smaller --batch_size or more data")
        return steps

    def train_dataset(self, global_batch_size: int, seed: int, input_size=None):
        """Endless `tf.data` of training batches; every pass over it is one reshuffled epoch."""
        from keras_hbehavemae.data.pipeline import make_pretraining_dataset

        dataset = make_pretraining_dataset(
            self.train, self.num_frames, global_batch_size, self.sliding_window,
            self.sampling_rate, self.augment, self.normalise, shuffle=True, seed=seed,
            drop_remainder=True, expected_input_size=input_size, padding=self.padding)
        return dataset.repeat()

    def test_dataset(self, batch_size: int, input_size=None, drop_remainder: bool = False):
        """The held-out windows in order, unaugmented (None without a held-out split)."""
        if self.test is None:
            return None
        from keras_hbehavemae.data.pipeline import make_evaluation_dataset

        dataset = make_evaluation_dataset(
            self.test, self.num_frames, batch_size, self.sliding_window, self.sampling_rate,
            self.normalise, expected_input_size=input_size, padding=self.padding)
        if drop_remainder:
            dataset = dataset.unbatch().batch(batch_size, drop_remainder=True)
        return dataset

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary (part of the run configuration)."""
        return {
            "dataset": self.name,
            "source": self.source,
            "num_frames": int(self.num_frames),
            "feature_shape": list(self.feature_shape),
            "sliding_window": int(self.sliding_window),
            "sampling_rate": int(self.sampling_rate),
            "padding": self.padding,
            "augment": None if self.augment is None else type(self.augment).__name__,
            "normalise": None if self.normalise is None else repr(self.normalise),
            "train_sequences": len(_arrays(self.train)),
            "train_windows": self.num_train_windows,
            "test_sequences": 0 if self.test is None else len(_arrays(self.test)),
            "test_windows": self.num_test_windows,
        }


def _require_file(path: str, dataset: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path}: not found; --dataset {dataset} expects this file under "
            "--path_to_data_dir")
    return path


def ensure_synthetic_dataset(directory: str, seed: int = 0, num_train_sequences: int = 32,
                             num_test_sequences: int = 8,
                             num_frames_per_sequence: int = 1800) -> dict[str, str]:
    """`train.npy`/`test.npy` of the synthetic dataset in `directory`, generated if absent.

    Existing files are used as they are, whatever their size.
    """
    paths = {split: os.path.join(directory, f"{split}.npy") for split in ("train", "test")}
    if all(os.path.isfile(path) for path in paths.values()):
        return paths
    return write_synthetic_dataset(directory, num_train_sequences, num_test_sequences,
                                   num_frames_per_sequence, seed=seed)


def _load_joblib(path: str):
    try:
        import joblib
    except ImportError:
        raise ValueError(
            f"{path}: the published hBABEL files are joblib pickles; install joblib "
            "(pip install joblib), or save the list of dicts as train.npy / val.npy") from None
    return joblib.load(path)  # the user's own preprocessed file (SPEC §9.4)


def _read_hbabel_split(path: str, split: str, expected_hw) -> KeypointSequences:
    published = os.path.join(path, "babel-smplh-30fps-male",
                             f"{split}_proc_realigned_procrustes.pth.tar")
    if os.path.isfile(published):
        return read_hbabel(_load_joblib(published), expected_hw=expected_hw)
    for name in (f"{split}.npy", f"{split}.pkl"):
        if os.path.isfile(os.path.join(path, name)):
            return read_hbabel(os.path.join(path, name), expected_hw=expected_hw)
    raise FileNotFoundError(
        f"{published}: not found (nor {split}.npy / {split}.pkl in {path}); --dataset hbabel "
        "expects the processed splits of SPEC §9.4 under --path_to_data_dir")


def _read_keypoint_folders(path: str, expected_hw):
    train_folder, test_folder = os.path.join(path, "train"), os.path.join(path, "test")
    if not os.path.isdir(train_folder):
        return read_keypoint_arrays(path, expected_hw=expected_hw), None
    test = (read_keypoint_arrays(test_folder, expected_hw=expected_hw)
            if os.path.isdir(test_folder) else None)
    return read_keypoint_arrays(train_folder, expected_hw=expected_hw), test


def load_pretraining_data(
    dataset: str,
    path: str,
    input_size: Sequence[int],
    *,
    sliding_window: int | None = None,
    sampling_rate: int = 1,
    fill_holes: bool = False,
    data_augment: bool = False,
) -> PretrainingData:
    """Reads a dataset by name and wires the published per-window recipe (SPEC §9).

    Args:
        dataset: one of `DATASETS`.
        path: the data folder (see the module table).
        input_size: the model's (T, H, W); T is the window length, (H, W) is checked.
        sliding_window: stride between window starts (default: the published one).
        sampling_rate: stride between frames inside a window.
        fill_holes: MABe hole filling (mouse datasets only; off in the published run).
        data_augment: arena augmentation (mouse datasets only; published MABe22: on).

    Raises:
        ValueError: unknown dataset, options the dataset does not support, or data whose
            frame shape does not fit `input_size`.
        FileNotFoundError: missing files.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset: {dataset!r} is not one of {DATASETS}")
    mice = dataset in ("synthetic", "mabe_mice")
    if not mice and (fill_holes or data_augment):
        raise ValueError(
            f"--fill_holes/--data_augment apply to the mouse datasets only, not {dataset!r} "
            "(Shot7M2, hBABEL and generic keypoints are used unaugmented)")
    num_frames, expected_hw = int(input_size[0]), tuple(int(v) for v in input_size[1:])
    options = dict(
        num_frames=num_frames, sampling_rate=sampling_rate,
        sliding_window=sliding_window or SLIDING_WINDOW[dataset], source=os.fspath(path))
    if mice:
        from keras_hbehavemae.data.augment import ArenaAugmentation

        names = (("train.npy", "test.npy") if dataset == "synthetic" else
                 ("mouse_triplet_train.npy", "mouse_triplet_test.npy"))
        train, test = (
            read_mabe_mouse_triplets(_require_file(os.path.join(path, name), dataset),
                                     fill_holes=fill_holes, expected_hw=expected_hw)
            for name in names)
        return PretrainingData(dataset, train, test, augment=ArenaAugmentation()
                               if data_augment else None, normalise=ArenaNormalisation(),
                               **options)
    if dataset == "shot7m2":
        train, test = (
            read_shot7m2(_require_file(os.path.join(path, split, f"{split}_dictionary_poses.npy"),
                                       dataset), expected_hw=expected_hw)
            for split in ("train", "test"))
        return PretrainingData(dataset, train, test, **options)
    if dataset == "hbabel":
        train, test = (_read_hbabel_split(path, split, expected_hw) for split in ("train", "val"))
        return PretrainingData(dataset, train, test, padding="end_only", **options)
    train, test = _read_keypoint_folders(path, expected_hw)
    return PretrainingData(dataset, train, test, **options)
