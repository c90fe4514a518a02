"""tf.data pipelines: shapes, determinism, batching and the augment-then-normalise order.
Windows that do not fit the model: tests/faults/test_input_faults.py."""

from __future__ import annotations

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from window_references import gather_windows  # noqa: E402

from keras_hbehavemae.data.augment import ArenaAugmentation  # noqa: E402
from keras_hbehavemae.data.normalisation import ArenaNormalisation  # noqa: E402
from keras_hbehavemae.data.pipeline import (  # noqa: E402
    make_evaluation_dataset,
    make_pretraining_dataset,
)
from keras_hbehavemae.data.readers import read_mabe_mouse_triplets  # noqa: E402
from keras_hbehavemae.data.synthetic import generate_synthetic_behaviour  # noqa: E402
from keras_hbehavemae.data.windows import training_windows  # noqa: E402

pytestmark = pytest.mark.backend_independent

NUM_FRAMES = 32


@pytest.fixture(scope="module")
def sequences() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.uniform(300, 550, (length, 3, 24)).astype(np.float32) for length in (90, 61, 75)]


def _epochs(dataset: tf.data.Dataset, count: int = 2) -> list[np.ndarray]:
    return [np.concatenate([batch.numpy() for batch in dataset]) for _ in range(count)]


def _windows_expected(sequences: list[np.ndarray]) -> int:
    return len(training_windows([len(s) for s in sequences], NUM_FRAMES, sliding_window=5))


def test_yields_only_x_with_the_model_shape(sequences):
    dataset = make_pretraining_dataset(
        sequences, NUM_FRAMES, batch_size=8, sliding_window=5, expected_input_size=(32, 3, 24)
    )
    assert isinstance(dataset.element_spec, tf.TensorSpec)
    assert dataset.element_spec.shape.as_list() == [8, NUM_FRAMES, 3, 24]
    assert dataset.element_spec.dtype == tf.float32
    assert int(dataset.cardinality()) == _windows_expected(sequences) // 8


def test_drop_remainder(sequences):
    total = _windows_expected(sequences)
    assert total % 8 != 0
    kept = make_pretraining_dataset(
        sequences, NUM_FRAMES, batch_size=8, sliding_window=5, drop_remainder=False
    )
    sizes = [batch.shape[0] for batch in kept]
    assert sum(sizes) == total and sizes[-1] == total % 8
    dropped = make_pretraining_dataset(sequences, NUM_FRAMES, batch_size=8, sliding_window=5)
    assert [batch.shape[0] for batch in dropped] == [8] * (total // 8)
    with pytest.raises(ValueError, match="fewer than batch_size=1000"):
        make_pretraining_dataset(sequences, NUM_FRAMES, batch_size=1000, sliding_window=5)


def test_deterministic_for_a_seed_and_reshuffled_every_epoch(sequences):
    def build(seed: int) -> tf.data.Dataset:
        return make_pretraining_dataset(
            sequences, NUM_FRAMES, batch_size=8, sliding_window=5, seed=seed,
            augment=ArenaAugmentation(), normalise=ArenaNormalisation(),
        )  # fmt: skip

    first, again, other = _epochs(build(0)), _epochs(build(0)), _epochs(build(1))
    for epoch in range(2):
        np.testing.assert_array_equal(first[epoch], again[epoch])
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0], other[0])


def test_evaluation_windows_are_in_order_and_normalised_after_augmentation(sequences):
    normalise = ArenaNormalisation()
    evaluation = make_evaluation_dataset(
        sequences, NUM_FRAMES, batch_size=8, sliding_window=5, normalise=normalise
    )
    plan = training_windows([len(s) for s in sequences], NUM_FRAMES, sliding_window=5)
    expected = normalise(gather_windows(sequences, plan))
    np.testing.assert_allclose(_epochs(evaluation, 1)[0], expected, rtol=0, atol=1e-6)

    def add_a_pixel(window, seed):  # the augmentation must see pixels
        return window + 425.0

    augmented = make_pretraining_dataset(
        sequences, NUM_FRAMES, batch_size=8, sliding_window=5, shuffle=False,
        drop_remainder=False, augment=add_a_pixel, normalise=normalise,
    )  # fmt: skip
    np.testing.assert_allclose(_epochs(augmented, 1)[0], expected + 1.0, atol=1e-6)


def test_end_only_padding_and_extraction(sequences):
    end_only = make_evaluation_dataset(
        sequences, 70, batch_size=4, sliding_window=11, padding="end_only"
    )
    windows = _epochs(end_only, 1)[0]
    assert len(windows) == 2 + 1 + 1  # 90 frames: starts 0, 11; 61 and 75 frames: start 0
    np.testing.assert_array_equal(windows[1], sequences[0][11:81])
    np.testing.assert_array_equal(windows[2][:61], sequences[1])
    np.testing.assert_array_equal(windows[2][61:], np.repeat(sequences[1][-1:], 9, axis=0))


def test_synthetic_mabe_data_end_to_end():
    data = generate_synthetic_behaviour(2, num_frames_per_sequence=240, seed=0)
    sequences = read_mabe_mouse_triplets(data)
    dataset = make_pretraining_dataset(
        sequences, 60, batch_size=4, sliding_window=17, augment=ArenaAugmentation(),
        normalise=ArenaNormalisation(), expected_input_size=(60, 3, 24), repeat=True,
    )  # fmt: skip
    batches = [batch.numpy() for batch in dataset.take(8)]  # more than one epoch
    assert all(batch.shape == (4, 60, 3, 24) for batch in batches)
    values = np.concatenate(batches)
    assert np.isfinite(values).all() and np.abs(values).max() < 1.05


def _stream(sequences, **options) -> tf.data.Dataset:
    return make_pretraining_dataset(
        sequences, NUM_FRAMES, batch_size=8, sliding_window=5, seed=3, repeat=True,
        augment=ArenaAugmentation(), normalise=ArenaNormalisation(), **options)


def _batches(dataset: tf.data.Dataset, count: int) -> np.ndarray:
    return np.stack([batch.numpy() for batch in dataset.take(count)])


def test_endless_stream_is_the_same_for_every_iterator_and_starts_anywhere(sequences):
    per_pass = _windows_expected(sequences) // 8  # each pass drops its own last partial batch
    stream = _stream(sequences)
    first = _batches(stream, 2 * per_pass + 1)
    np.testing.assert_array_equal(_batches(stream, 2 * per_pass + 1), first)  # a new iterator
    assert not np.array_equal(first[0], first[per_pass])  # every pass is reshuffled
    resumed = _batches(_stream(sequences, first_window=(per_pass + 1) * 8), per_pass)
    np.testing.assert_array_equal(resumed, first[per_pass + 1:2 * per_pass + 1])
    with pytest.raises(ValueError, match="first_window must be"):
        make_pretraining_dataset(sequences, NUM_FRAMES, batch_size=8, first_window=8)


def test_process_shards_of_a_batch_are_its_blocks(sequences):
    whole = _batches(_stream(sequences), 3)  # [steps, 8, T, H, W]
    blocks = [_batches(_stream(sequences, shard=(2, index)), 3) for index in range(2)]
    assert blocks[0].shape[1] == 4
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), whole)  # same windows, seeds
    with pytest.raises(ValueError, match=r"shard=\(3, 0\) is invalid for batch_size=8"):
        _stream(sequences, shard=(3, 0))
