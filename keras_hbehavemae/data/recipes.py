"""The published data recipes by dataset name, and `PretrainingData` (train + held-out split).

Where each dataset keeps its splits is `layouts`; this module wires the published
per-window recipe (augmentation, normalisation, window strides) around them.

Example:

>>> import numpy as np
>>> data = PretrainingData("arrays", train=[np.zeros((50, 1, 4), "float32")], test=None,
...                        num_frames=20, sliding_window=5)
>>> data.num_train_windows, data.steps_per_epoch(global_batch_size=4)
(10, 2)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.data.layouts import layout, read_file, read_split, split_path
from keras_hbehavemae.data.normalisation import ArenaNormalisation
from keras_hbehavemae.data.sequences import KeypointSequences
from keras_hbehavemae.data.synthetic import write_synthetic_dataset
from keras_hbehavemae.data.windows import WindowPlan, end_padded_windows, training_windows
from keras_hbehavemae.files.atomic import TEMPORARY_PREFIX

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
        padding: "both_ends" (Shot7M2, MABe22) or "end_only" (hBABEL).
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

    def train_dataset(self, global_batch_size: int, seed: int, input_size=None,
                      shard: tuple[int, int] | None = None, first_step: int = 0):
        """Endless `tf.data` of training batches; every pass over the windows is reshuffled.

        `shard=(count, index)`: yield only this process's block of every global batch
        (see `pipeline.window_dataset`). `first_step`: start with the batch that step
        would get (the stream is the same whatever the start: a resumed run continues it).
        """
        from keras_hbehavemae.data.pipeline import make_pretraining_dataset

        return make_pretraining_dataset(
            self.train, self.num_frames, global_batch_size, self.sliding_window,
            self.sampling_rate, self.augment, self.normalise, shuffle=True, seed=seed,
            drop_remainder=True, repeat=True, expected_input_size=input_size,
            padding=self.padding, shard=shard, first_window=first_step * global_batch_size)

    def test_dataset(self, batch_size: int, input_size=None, drop_remainder: bool = False,
                     shard: tuple[int, int] | None = None):
        """The held-out windows in order, unaugmented (None without a held-out split);
        `shard` as in `train_dataset` (it needs `drop_remainder`)."""
        if self.test is None:
            return None
        from keras_hbehavemae.data.pipeline import make_evaluation_dataset

        if shard is not None:
            return make_evaluation_dataset(
                self.test, self.num_frames, batch_size, self.sliding_window,
                self.sampling_rate, self.normalise, expected_input_size=input_size,
                padding=self.padding, drop_remainder=True, shard=shard)
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


def ensure_synthetic_dataset(directory: str, seed: int = 0, num_train_sequences: int = 32,
                             num_test_sequences: int = 8, num_frames_per_sequence: int = 1800,
                             *, flag: str = "--path_to_data_dir") -> dict[str, str]:
    """`train.npy`/`test.npy` of the synthetic dataset in `directory`, generated if absent.

    A folder is never written into unless it is new or empty: a folder that holds both
    files is used as it is, whatever their size; a new or empty folder gets the generated
    files (written whole, never over an existing file); any other folder is refused.
    Temporary files that an interrupted generation left (`.partial-*`) do not count.

    Raises:
        FileExistsError: `directory` is a file, or a folder with other content (the message
            names `flag`, the folder and what it holds).
    """
    paths = {split: os.path.join(directory, f"{split}.npy") for split in ("train", "test")}
    if all(os.path.isfile(path) for path in paths.values()):
        return paths
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise FileExistsError(f"{flag} {directory!r}: is a file, not a folder; synthetic data "
                              "is generated into a new or empty folder")
    if os.path.isdir(directory):
        content = sorted(name for name in os.listdir(directory)
                         if not name.startswith(TEMPORARY_PREFIX))
        if content:
            shown = ", ".join(content[:5]) + (", ..." if len(content) > 5 else "")
            raise FileExistsError(
                f"{flag} {directory!r}: the folder holds {shown} but not both train.npy and "
                "test.npy of the synthetic dataset; synthetic data is generated only into a "
                "new or empty folder, and nothing was written. For your own data give its "
                "--dataset (e.g. keypoints or mabe_mice); for synthetic data choose a new "
                f"folder, or leave out {flag} (the run's own OUTPUT_DIR/data is used)")
    return write_synthetic_dataset(directory, num_train_sequences, num_test_sequences,
                                   num_frames_per_sequence, seed=seed)


def load_pretraining_data(
    dataset: str,
    path: str,
    input_size: Sequence[int],
    *,
    sliding_window: int | None = None,
    sampling_rate: int = 1,
    fill_holes: bool = False,
    data_augment: bool = False,
    held_out_path: str | None = None,
) -> PretrainingData:
    """Reads a dataset by name and wires the published per-window recipe.

    Args:
        dataset: one of `DATASETS`.
        path: the data folder (see the layouts table), or one file: the training split,
            read whatever its name.
        input_size: the model's (T, H, W); T is the window length, (H, W) is checked.
        sliding_window: stride between window starts (default: the published one).
        sampling_rate: stride between frames inside a window.
        fill_holes: MABe hole filling (mouse datasets only; off in the published run).
        data_augment: arena augmentation (mouse datasets only; published MABe22: on).
        held_out_path: a file holding the held-out split, whatever its name (default: the
            folder's held-out split; none for a file `path`).

    Raises:
        ValueError: unknown dataset, options the dataset does not support, or data whose
            frame shape does not fit `input_size`.
        FileNotFoundError: missing files.
    """
    spec = layout(dataset)
    if not spec.mice and (fill_holes or data_augment):
        raise ValueError(
            f"--fill_holes/--data_augment apply to the mouse datasets only, not {dataset!r} "
            "(Shot7M2, hBABEL and generic keypoints are used unaugmented)")
    if sliding_window is None:
        sliding_window = spec.sliding_window
    num_frames, expected_hw = int(input_size[0]), tuple(int(v) for v in input_size[1:])
    source = os.fspath(path) if held_out_path is None else {
        "train": os.fspath(path), "held_out": os.fspath(held_out_path)}
    options = dict(num_frames=num_frames, sampling_rate=sampling_rate,
                   sliding_window=sliding_window, padding=spec.padding, source=source)
    if held_out_path is not None and not os.path.isfile(held_out_path):
        raise FileNotFoundError(f"--held_out_path {held_out_path!r}: no such file")
    if os.path.isfile(path):  # explicit files: no fixed names
        train = read_file(dataset, path, expected_hw, fill_holes)
        test = None
    elif not os.path.isdir(path):
        raise FileNotFoundError(f"--path_to_data_dir {path!r}: no such file or folder")
    elif dataset == "keypoints":
        # `train/` and an optional `test/` folder, or one folder of training arrays.
        train_folder = split_path(dataset, path, "train", must_exist=False)
        if not os.path.isdir(train_folder):
            train, test = read_file(dataset, path, expected_hw), None
        else:
            test_folder = split_path(dataset, path, spec.held_out_split, must_exist=False)
            test = (read_file(dataset, test_folder, expected_hw)
                    if os.path.isdir(test_folder) and held_out_path is None else None)
            train = read_file(dataset, train_folder, expected_hw)
    else:
        train = read_split(dataset, path, "train", expected_hw, fill_holes)
        test = None if held_out_path is not None else read_split(
            dataset, path, spec.held_out_split, expected_hw, fill_holes)
    if held_out_path is not None:
        test = read_file(dataset, held_out_path, expected_hw, fill_holes)
    if not spec.mice:
        return PretrainingData(dataset, train, test, **options)
    from keras_hbehavemae.data.augment import ArenaAugmentation

    return PretrainingData(dataset, train, test,
                           augment=ArenaAugmentation() if data_augment else None,
                           normalise=ArenaNormalisation(), **options)
