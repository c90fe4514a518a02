"""A synthetic, hierarchical mouse-triplet behaviour dataset (the package's default data).

No download needed: `generate_synthetic_behaviour` draws, from a seed, keypoint
trajectories of several mice (default 3 mice × 12 MABe body parts × (x, y) in an
850 × 850 pixel arena) together with per-frame labels at three timescales. The
result has the MABe22 dict layout, so `read_mabe_mouse_triplets` reads it and the
MABe22 pipeline (augmentation in pixels, then (v − 425) / 425) applies unchanged.

The behaviour is generated top-down, each level changing only the *statistics*
of the level below:

1. **Activities** (300–900 frames; `ACTIVITIES`) are shared by all mice of a
   sequence. An activity sets the *order* of actions, not their frequency: each
   action is followed by a preferred successor that depends on the activity
   (`ACTION_SUCCESSORS`), and every activity's transition matrix leaves all six
   actions equally frequent. It also slowly drives a group *cohesion* (how
   strongly the mice are drawn together; the continuous label), which shows up
   in inter-mouse distances over minutes. So no single frame, and no clip
   shorter than a few actions, reveals the activity: it must be inferred from
   action-to-action transitions of the three mice and from distances accumulated
   over hundreds of frames.
2. **Actions** (30–120 frames; `ACTIONS`) are drawn per mouse. An action sets
   which movemes occur (`MOVEME_FREQUENCIES`), their amplitude, and the steering
   (towards or away from the nearest mouse).
3. **Movemes** (5–20 frames; `MOVEMES`) are short stereotyped kinematic
   primitives: a step, a dart, a turn, a head scan, a grooming stroke, rearing
   (body shortening), sniffing, a pause. Each has its own duration range and
   speed/turn/posture profile over its phase.

Consecutive segments of one level always differ, so label runs equal segments.
Labels of the first mouse ("action", "moveme") and of the group ("activity",
"cohesion") are stored per frame as float32; the first segment of each level
starts at a random phase before frame 0.

Generation is vectorised over sequences and mice (a Python loop runs over
segments and over frames, not over sequences): about 300 sequences × 1800 frames
take a few seconds on one core. The arrays depend on the seed and on
`num_sequences` (sequences are drawn jointly).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_hbehavemae.data.synthetic_motion import CHUNK, body_keypoints, trajectories
from keras_hbehavemae.files.atomic import write_new_files_atomically

ACTIVITIES = ("settled", "roaming", "huddling")
ACTIONS = ("rest", "groom", "explore", "rear", "approach", "avoid")
MOVEMES = (
    "pause", "step", "dart", "turn_left", "turn_right",
    "head_scan", "groom_stroke", "rear_up", "sniff",
)  # fmt: skip

ACTIVITY_DURATION = (300, 900)
ACTION_DURATION = (30, 120)
#: (shortest, longest) frames of each moveme, in `MOVEMES` order.
MOVEME_DURATIONS = np.array(
    [[6, 14], [8, 14], [5, 8], [8, 16], [8, 16], [10, 18], [12, 20], [14, 20], [6, 10]]
)

#: The preferred next action of each action, per activity (rows `ACTIVITIES`, columns
#: the current action in `ACTIONS` order): settled pairs actions (rest <-> groom,
#: explore <-> rear, approach <-> avoid), roaming cycles forwards (i -> i + 2) and
#: huddling backwards (i -> i - 2). Each is a permutation without fixed points.
ACTION_SUCCESSORS = np.array([[1, 0, 3, 2, 5, 4], [2, 3, 4, 5, 0, 1], [4, 5, 0, 1, 2, 3]])
SUCCESSOR_PROBABILITY = 0.6


def _action_transitions() -> np.ndarray:
    """P(next action | activity, action) `[3, 6, 6]`: the preferred successor with
    `SUCCESSOR_PROBABILITY`, the other four different actions evenly otherwise.

    Every matrix is doubly stochastic, so actions are equally frequent (1/6) in
    every activity: only their order tells the activities apart.
    """
    num_actions = len(ACTIONS)
    others = (1.0 - SUCCESSOR_PROBABILITY) / (num_actions - 2)
    transitions = np.full((len(ACTIVITIES), num_actions, num_actions), others)
    rows = np.arange(num_actions)
    transitions[:, rows, rows] = 0.0
    for activity, successors in enumerate(ACTION_SUCCESSORS):
        transitions[activity, rows, successors] = SUCCESSOR_PROBABILITY
    return transitions


ACTION_TRANSITIONS = _action_transitions()

#: P(moveme | action), rows `ACTIONS`, columns `MOVEMES`.
MOVEME_FREQUENCIES = np.array(
    [
        [0.55, 0.02, 0.00, 0.04, 0.04, 0.15, 0.08, 0.00, 0.12],  # rest
        [0.25, 0.00, 0.00, 0.02, 0.02, 0.08, 0.55, 0.00, 0.08],  # groom
        [0.06, 0.38, 0.04, 0.14, 0.14, 0.10, 0.00, 0.04, 0.10],  # explore
        [0.15, 0.08, 0.00, 0.05, 0.05, 0.15, 0.00, 0.42, 0.10],  # rear
        [0.04, 0.45, 0.20, 0.06, 0.06, 0.04, 0.00, 0.00, 0.15],  # approach
        [0.04, 0.30, 0.45, 0.08, 0.08, 0.03, 0.00, 0.00, 0.02],  # avoid
    ]
)
ACTION_AMPLITUDE = np.array([0.6, 1.0, 1.0, 1.0, 1.3, 1.6])


def _categorical(rng: np.random.Generator, probabilities: np.ndarray) -> np.ndarray:
    """One draw per row of `[S, K]` unnormalised probabilities."""
    cumulative = np.cumsum(probabilities, axis=1)
    threshold = rng.random(len(probabilities)) * cumulative[:, -1]
    return np.minimum((threshold[:, None] >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _segments(
    rng: np.random.Generator,
    num_streams: int,
    num_frames: int,
    probabilities_at: Callable[[np.ndarray, np.ndarray], np.ndarray],
    durations: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws segment sequences for many streams at once.

    `probabilities_at(previous_label, start_frame)` returns `[S, K]` weights of the
    next label (previous −1 at the first segment); `durations` is `[K, 2]`.
    Returns `starts`, `labels` and `lengths`, each `[S, n_segments]`.
    """
    starts, labels, lengths = [], [], []
    start = np.zeros(num_streams, dtype=np.int64)
    previous = np.full(num_streams, -1)
    while not starts or (start < num_frames).any():
        weights = probabilities_at(previous, np.clip(start, 0, num_frames - 1))
        if (previous >= 0).any():
            weights = weights * (np.arange(weights.shape[1]) != previous[:, None])
        label = _categorical(rng, weights)
        length = rng.integers(durations[label, 0], durations[label, 1] + 1)
        if not starts:  # begin mid-segment so boundaries do not align with frame 0
            start = -rng.integers(0, length)
        starts.append(start)
        labels.append(label)
        lengths.append(length)
        start, previous = start + length, label
    return np.stack(starts, 1), np.stack(labels, 1), np.stack(lengths, 1)


def _per_frame(starts: np.ndarray, num_frames: int) -> np.ndarray:
    """`[S, T]` index of the segment (column of `starts`) covering each frame."""
    num_streams, num_segments = starts.shape
    span = int(max(starts.max(), num_frames) - starts.min()) + 1
    row_offset = (np.arange(num_streams) * span)[:, None]
    keys = (starts + row_offset).ravel()
    queries = np.arange(num_frames)[None, :] + row_offset
    flat_index = np.searchsorted(keys, queries, side="right") - 1
    return flat_index - (np.arange(num_streams) * num_segments)[:, None]


def _hierarchy(
    rng: np.random.Generator, num_sequences: int, num_mice: int, num_frames: int
) -> dict[str, np.ndarray]:
    """Draws activities `[N, T]`, actions and movemes `[N, M, T]`, and moveme phases."""
    streams = num_sequences * num_mice
    activity_durations = np.array([ACTIVITY_DURATION] * len(ACTIVITIES))
    uniform = np.ones((num_sequences, len(ACTIVITIES)))
    starts, labels, _ = _segments(
        rng, num_sequences, num_frames, lambda previous, frame: uniform, activity_durations
    )
    activity = np.take_along_axis(labels, _per_frame(starts, num_frames), axis=1)
    stream_activity = np.repeat(activity, num_mice, axis=0)

    def action_weights(previous: np.ndarray, frame: np.ndarray) -> np.ndarray:
        current = stream_activity[np.arange(streams), frame]
        transitions = ACTION_TRANSITIONS[current, np.maximum(previous, 0)]
        return np.where((previous >= 0)[:, None], transitions, 1.0)

    action_durations = np.array([ACTION_DURATION] * len(ACTIONS))
    starts, labels, _ = _segments(rng, streams, num_frames, action_weights, action_durations)
    action = np.take_along_axis(labels, _per_frame(starts, num_frames), axis=1)

    def moveme_weights(previous: np.ndarray, frame: np.ndarray) -> np.ndarray:
        return MOVEME_FREQUENCIES[action[np.arange(streams), frame]]

    starts, labels, lengths = _segments(rng, streams, num_frames, moveme_weights, MOVEME_DURATIONS)
    segment = _per_frame(starts, num_frames)
    moveme = np.take_along_axis(labels, segment, axis=1)
    start = np.take_along_axis(starts, segment, axis=1)
    length = np.take_along_axis(lengths, segment, axis=1)
    # Amplitude: set by the action at the moveme's start, with ±15 % jitter.
    segment_action = action[np.arange(streams)[:, None], np.clip(starts, 0, num_frames - 1)]
    segment_amplitude = ACTION_AMPLITUDE[segment_action] * rng.uniform(0.85, 1.15, starts.shape)
    shape = (num_sequences, num_mice, num_frames)
    return {
        "activity": activity,
        "action": action.reshape(shape),
        "moveme": moveme.reshape(shape),
        "phase": ((np.arange(num_frames) - start) / length).reshape(shape),
        "moveme_length": length.reshape(shape),
        "amplitude": np.take_along_axis(segment_amplitude, segment, axis=1).reshape(shape),
    }


def _label_info() -> dict[str, dict[str, Any]]:
    return {
        "activity": {"task_type": "discrete", "timescale": "activity",
                     "class_names": list(ACTIVITIES)},
        "action": {"task_type": "discrete", "timescale": "action", "class_names": list(ACTIONS)},
        "moveme": {"task_type": "discrete", "timescale": "moveme", "class_names": list(MOVEMES)},
        "cohesion": {"task_type": "continuous", "timescale": "activity"},
    }  # fmt: skip


def generate_synthetic_behaviour(
    num_sequences: int,
    num_frames_per_sequence: int = 1800,
    seed: int | Sequence[int] = 0,
    num_mice: int = 3,
    arena_size: float = 850.0,
    name_prefix: str = "synthetic",
) -> dict[str, Any]:
    """Draws a synthetic hierarchical behaviour dataset in the MABe22 dict layout.

    Args:
        num_sequences: number of sequences.
        num_frames_per_sequence: frames per sequence (MABe22: 1800 at 30 Hz).
        seed: NumPy seed (an int or a sequence of ints); the same seed and sizes
            give identical arrays.
        num_mice: individuals per sequence (at least 2, for the social actions).
        arena_size: arena width and height in pixels.
        name_prefix: sequence names are f"{name_prefix}_{index:05d}".

    Returns:
        `{"sequences": {name: {"keypoints": float32 [T, num_mice, 12, 2],
        "labels": {"activity", "action", "moveme", "cohesion": float32 [T]}}},
        "label_info": {label: {"task_type", "timescale", "class_names"}}}`.
        Discrete labels hold class indices into `ACTIVITIES`, `ACTIONS` and
        `MOVEMES`; "action" and "moveme" describe the first mouse.

    Example:
        >>> data = generate_synthetic_behaviour(2, num_frames_per_sequence=300, seed=1)
        >>> entry = data["sequences"]["synthetic_00000"]
        >>> entry["keypoints"].shape, sorted(entry["labels"])
        ((300, 3, 12, 2), ['action', 'activity', 'cohesion', 'moveme'])
    """
    if num_sequences < 1 or num_frames_per_sequence < 1:
        raise ValueError("num_sequences and num_frames_per_sequence must be positive")
    if num_mice < 2:
        raise ValueError(f"num_mice must be at least 2, got {num_mice}")
    rng = np.random.default_rng(seed)
    hierarchy = _hierarchy(rng, num_sequences, num_mice, num_frames_per_sequence)
    motion = trajectories(rng, hierarchy, arena_size)
    sequences = {}
    for chunk_start in range(0, num_sequences, CHUNK):
        chunk = slice(chunk_start, min(chunk_start + CHUNK, num_sequences))
        chunk_hierarchy = {name: values[chunk] for name, values in hierarchy.items()}
        chunk_motion = {name: values[chunk] for name, values in motion.items()}
        keypoints = body_keypoints(rng, chunk_hierarchy, chunk_motion, arena_size)
        for offset, index in enumerate(range(chunk.start, chunk.stop)):
            sequences[f"{name_prefix}_{index:05d}"] = {
                "keypoints": keypoints[offset],
                "labels": {
                    "activity": hierarchy["activity"][index].astype(np.float32),
                    "action": hierarchy["action"][index, 0].astype(np.float32),
                    "moveme": hierarchy["moveme"][index, 0].astype(np.float32),
                    "cohesion": motion["cohesion"][index].astype(np.float32),
                },
            }
    return {"sequences": sequences, "label_info": _label_info()}


def write_synthetic_dataset(
    directory: str | os.PathLike[str],
    num_train_sequences: int = 256,
    num_test_sequences: int = 64,
    num_frames_per_sequence: int = 1800,
    seed: int = 0,
    num_mice: int = 3,
) -> dict[str, str]:
    """Writes `train.npy` and `test.npy` (independent draws) readable by `read_mabe_mouse_triplets`.

    Both files are written whole or not at all, and never over an existing file: if
    `train.npy` or `test.npy` is already in `directory`, nothing is written.

    Args:
        directory: created if needed.
        num_train_sequences: sequences in `train.npy`.
        num_test_sequences: sequences in `test.npy`.
        num_frames_per_sequence: frames per sequence.
        seed: the train split uses seed `[seed, 0]`, the test split `[seed, 1]`.
        num_mice: individuals per sequence.

    Returns:
        `{"train": path, "test": path}`.

    Raises:
        FileExistsError: `train.npy` or `test.npy` exists in `directory`.

    Example:
        >>> import tempfile
        >>> paths = write_synthetic_dataset(tempfile.mkdtemp(), 2, 1, num_frames_per_sequence=200)
        >>> sorted(os.path.basename(path) for path in paths.values())
        ['test.npy', 'train.npy']
    """
    paths = {split: os.path.join(os.fspath(directory), f"{split}.npy")
             for split in ("train", "test")}
    for path in paths.values():
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: already exists; synthetic data is never written "
                                  "over a file. Choose a new or empty folder")
    os.makedirs(directory, exist_ok=True)
    writers = {}
    for split_index, (split, count) in enumerate(
        [("train", num_train_sequences), ("test", num_test_sequences)]
    ):
        data = generate_synthetic_behaviour(
            count, num_frames_per_sequence, seed=[seed, split_index], num_mice=num_mice,
            name_prefix=split,
        )  # fmt: skip
        content = np.array(data, dtype=object)
        writers[paths[split]] = lambda temporary, c=content: np.save(temporary, c,
                                                                     allow_pickle=True)
    write_new_files_atomically(writers)
    return paths
