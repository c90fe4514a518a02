"""Window index logic: counts and exact padding for training, hBABEL and extraction."""

from __future__ import annotations

import numpy as np
import pytest
from window_references import edge_pad, gather_windows

from keras_hbehavemae.data.windows import (
    end_padded_windows,
    extraction_windows,
    training_padding,
    training_windows,
)

pytestmark = pytest.mark.backend_independent


def test_published_window_counts():
    assert training_padding(900) == (60, 59) and training_padding(400) == (60, 59)
    assert len(training_windows([1800], num_frames=400, sliding_window=17)) == 90  # Shot7M2
    assert len(training_windows([1800], num_frames=900, sliding_window=17)) == 60  # MABe22
    plan = training_windows([1800] * 5, num_frames=900)
    assert plan.windows_per_sequence().tolist() == [60] * 5
    assert plan.starts[-1] == 59 * 17 and plan.starts[-1] <= 1919 - 900


def test_training_windows_replicate_edges_60_before_59_after():
    sequence = np.arange(1800)
    plan = training_windows([1800], num_frames=900)
    windows = gather_windows([sequence], plan)
    padded = edge_pad(sequence, 60, 59)
    assert padded.shape == (1919,)
    np.testing.assert_array_equal(padded[:61], 0)
    np.testing.assert_array_equal(padded[-60:], 1799)
    for window, start in zip(windows, plan.starts, strict=True):
        np.testing.assert_array_equal(window, padded[start : start + 900])
    np.testing.assert_array_equal(windows[0][:61], 0)  # 60 replicated + the real frame 0
    np.testing.assert_array_equal(windows[0][61:64], [1, 2, 3])
    # The last window ends at padded frame 59 * 17 + 899 = 1902, before the last pad frame.
    assert plan.padded_frame_indices()[-1, -1] == 1902


def test_short_windows_pad_less_and_short_sequences_still_give_one_window():
    assert training_padding(32) == (16, 15)
    plan = training_windows([10], num_frames=32, sliding_window=17)
    assert len(plan) == 1  # 10 + 31 < 32 frames, so it is edge-padded at the end
    window = gather_windows([np.arange(10)], plan)[0]
    np.testing.assert_array_equal(window, [0] * 17 + list(range(1, 10)) + [9] * 6)


def test_sampling_rate_strides_inside_a_window():
    plan = training_windows([300], num_frames=32, sliding_window=17, sampling_rate=3)
    indices = plan.padded_frame_indices()
    np.testing.assert_array_equal(np.diff(indices, axis=1), 3)
    padded_length, span = 300 + 16 + 15, 31 * 3 + 1
    assert indices[-1, -1] <= padded_length - 1
    assert len(plan) == (padded_length - span) // 17 + 1


@pytest.mark.parametrize(
    ("length", "expected_starts"),
    [(42, [0]), (450, [0]), (472, [0, 11, 22]), (1000, list(range(0, 551, 11)))],
)
def test_hbabel_windows(length, expected_starts):
    plan = end_padded_windows([length], num_frames=450, sliding_window=11)
    np.testing.assert_array_equal(plan.starts, expected_starts)
    windows = gather_windows([np.arange(length)], plan)
    np.testing.assert_array_equal(windows[0][: min(length, 450)], np.arange(min(length, 450)))
    if length < 450:  # end-only edge padding
        np.testing.assert_array_equal(windows[0][length:], length - 1)


@pytest.mark.parametrize(("length", "num_frames"), [(1, 4), (10, 4), (57, 16)])
def test_extraction_windows_cover_every_frame_num_frames_times(length, num_frames):
    plan = extraction_windows([length], num_frames)
    assert len(plan) == length + num_frames - 1
    padded = plan.padded_frame_indices()
    np.testing.assert_array_equal(padded[:, 0], np.arange(length + num_frames - 1))
    windows = gather_windows([np.arange(length)], plan)
    np.testing.assert_array_equal(windows[0], 0)
    np.testing.assert_array_equal(windows[-1], length - 1)
    # Original frame f is padded frame f + num_frames - 1 and lies in num_frames windows.
    for frame in range(length):
        assert (padded == frame + num_frames - 1).sum() == num_frames


def test_several_sequences_and_invalid_arguments():
    plan = training_windows([1800, 100, 2000], num_frames=400)
    counts = plan.windows_per_sequence()
    assert counts.tolist() == [90, 1, (2000 + 119 - 400) // 17 + 1]  # short: one padded window
    np.testing.assert_array_equal(plan.frame_indices().max(axis=1) < 2000, True)
    with pytest.raises(ValueError, match="sliding_window must be a positive integer"):
        training_windows([100], num_frames=10, sliding_window=0)
    with pytest.raises(ValueError, match="at least one frame"):
        training_windows([0], num_frames=10)
