"""The probe protocol a reviewer can trust: the published split (checked against
scikit-learn), k-fold scoring of every frame, the spread across seeds, paired comparisons
against a control, the chance level and the raw + motion baseline."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from keras_hbehavemae.evaluation import (
    ProbeResult,
    chance_score,
    compare,
    frame_sequence_index,
    kfold_sequences,
    make_splits,
    motion_features,
    probe_embeddings,
    probe_table,
    split_sequences,
)
from keras_hbehavemae.evaluation.table import ProbeTable

pytestmark = pytest.mark.backend_independent

SEEDS = (0, 1, 7, 41, 42, 43, 2024)


# ------------------------------------------------------------------ the splits
@pytest.mark.parametrize("num_sequences", [8, 32, 533, 2668])
@pytest.mark.parametrize("test_fraction", [0.1, 0.25])
def test_published_split_equals_scikit_learn(num_sequences, test_fraction):
    model_selection = pytest.importorskip("sklearn.model_selection")
    for seed in SEEDS:
        train, held_out = model_selection.train_test_split(
            list(range(num_sequences)), test_size=test_fraction, random_state=seed)
        ours = split_sequences(num_sequences, seed, test_fraction)
        np.testing.assert_array_equal(ours[0], sorted(train))
        np.testing.assert_array_equal(ours[1], sorted(held_out))


@pytest.mark.parametrize("num_sequences,folds", [(8, 4), (32, 4), (33, 4), (10, 3)])
def test_kfold_equals_scikit_learn(num_sequences, folds):
    model_selection = pytest.importorskip("sklearn.model_selection")
    for seed in SEEDS:
        expected = [sorted(test) for _, test in model_selection.KFold(
            folds, shuffle=True, random_state=seed).split(np.arange(num_sequences))]
        assert [part.tolist() for part in kfold_sequences(num_sequences, folds, seed)] == (
            expected)


def test_split_arguments_are_checked():
    with pytest.raises(ValueError, match="folds"):
        kfold_sequences(3, 4, 0)
    with pytest.raises(ValueError, match="folds"):
        kfold_sequences(8, 1, 0)
    index, names = frame_sequence_index(np.repeat(np.arange(8), 5), 40)
    with pytest.raises(ValueError, match="split"):
        make_splits(index, names, (0,), split="random")
    with pytest.raises(ValueError, match="train_test_split"):
        make_splits(index, names, (0,), split="kfold", evaluation_sequences=[0, 1])


# ------------------------------------------------------------------ every frame scored
def _data(num_sequences=12, frames=30, dimension=5, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(num_sequences), frames)
    x = rng.normal(size=(len(ids), dimension))
    return rng, ids, x


def test_kfold_scores_every_held_out_frame_once_per_seed():
    rng, ids, x = _data()
    index, names = frame_sequence_index(ids, len(ids))
    for split in make_splits(index, names, (41, 42, 43), split="kfold", folds=4):
        assert len(split.folds) == 4
        times_scored = np.sum([fold.scored for fold in split.folds], axis=0)
        np.testing.assert_array_equal(times_scored, np.ones(len(ids)))  # each frame once
        for fold in split.folds:
            assert not np.any(fold.train & fold.scored)
            assert not set(ids[fold.train]) & set(ids[fold.scored])  # whole sequences
            np.testing.assert_array_equal(fold.train | fold.scored, np.ones(len(ids), bool))
    label = (x[:, 0] > 0).astype(float)
    label[rng.random(len(label)) < 0.2] = np.nan
    result = probe_embeddings(x, {"t": label}, {"t": "discrete"}, ids, seeds=(41, 42, 43))["t"]
    labelled = int(np.isfinite(label).sum())
    assert result.num_scored_frames == labelled
    assert result.seed_scored_frames == {41: labelled, 42: labelled, 43: labelled}
    assert all(len(folds) == 4 for folds in result.fold_scores[1.0].values())
    assert result.protocol == "kfold" and result.score > 0.9


def test_published_split_scores_its_held_out_part():
    rng, ids, x = _data(num_sequences=20)
    label = (x[:, 1] > 0).astype(float)
    result = probe_embeddings(x, {"t": label}, {"t": "discrete"}, ids, split="train_test_split",
                              test_fraction=0.25, seeds=(41, 42))["t"]
    assert result.protocol == "train_test_split" and result.folds == 1
    assert result.seed_scored_frames == {41: 5 * 30, 42: 5 * 30}


# ------------------------------------------------------------------ the spread
def _result(scores, seeds=(41, 42, 43), metric="macro_f1", chance=0.25):
    return ProbeResult("t", "discrete" if metric != "mse" else "continuous", metric, 1.0,
                       "kfold", 4, {1.0: dict(zip(seeds, scores, strict=True))},
                       {1.0: {seed: [] for seed in seeds}}, {1.0: 0.5}, 100,
                       dict.fromkeys(seeds, 100), chance)


def test_plus_minus_is_the_sample_standard_deviation_across_seeds():
    result = _result([0.5, 0.6, 0.7])  # mean 0.6, sample sd 0.1
    assert result.score == pytest.approx(0.6) and result.spread == pytest.approx(0.1)
    control = _result([0.30, 0.32, 0.34])
    table = ProbeTable(columns=["level_0", "control_level_0"], tasks=["t"],
                       results={"level_0": {"t": result}, "control_level_0": {"t": control}},
                       controls={"level_0": "control_level_0"})
    markdown = table.to_markdown()
    assert "| t | macro_f1 | 0.250 | **0.600 ± 0.100** ▲ | 0.320 ± 0.020 |" in markdown
    assert "standard deviation across 3 seeds (41, 42, 43)" in markdown
    row = table.rows()[0]
    assert row["level_0_sd"] == pytest.approx(0.1)
    assert [row[f"level_0_seed_{seed}"] for seed in (41, 42, 43)] == [0.5, 0.6, 0.7]
    assert row["level_0_gain"] == pytest.approx(0.28) and row["level_0_vs_control"] == "better"
    assert np.isnan(_result([0.5], seeds=(1,)).spread)  # one seed: no spread


def test_probed_table_cells_are_mean_and_spread_of_the_seed_scores(tmp_path):
    rng, ids, x = _data(num_sequences=16)
    labels = {"t": (x[:, 0] + rng.normal(0, 1.0, len(x)) > 0).astype(float)}
    table = probe_table({"level_0": x}, labels, {"t": "discrete"}, ids, seeds=(1, 2, 3, 4),
                        alphas=(1.0,))
    result = table.result("t", "level_0")
    values = result.seed_values()
    assert len(set(np.round(values, 12))) > 1  # the folds differ per seed
    assert result.score == pytest.approx(np.mean(values))
    assert result.spread == pytest.approx(np.std(values, ddof=1))
    table.write_csv(tmp_path / "table.csv")
    with open(tmp_path / "table.csv", newline="") as file:
        (row,) = list(csv.DictReader(file))
    assert float(row["level_0_sd"]) == pytest.approx(result.spread)
    assert [float(row[f"level_0_seed_{seed}"]) for seed in (1, 2, 3, 4)] == pytest.approx(values)


def test_paired_comparison_needs_more_than_two_seed_deviations():
    noisy = _result([0.50, 0.60, 0.70])
    assert compare(noisy, _result([0.45, 0.55, 0.65])).verdict == "same"  # within the spread
    assert compare(_result([0.50, 0.52, 0.51]), _result([0.40, 0.41, 0.39])).verdict == "better"
    assert compare(_result([0.40, 0.41, 0.39]), _result([0.50, 0.52, 0.51])).verdict == "worse"
    lower = compare(_result([1.0, 1.1, 1.05], metric="mse"), _result([2.0, 2.1, 2.0],
                                                                     metric="mse"))
    assert lower.gain > 0 and lower.verdict == "better"  # MSE: lower is better
    with pytest.raises(ValueError, match="seeds"):
        compare(_result([0.5, 0.5, 0.5]), _result([0.5, 0.5], seeds=(1, 2)))


def test_chance_level():
    assert chance_score(np.array([0, 1, 2, 2, 2, 1.0]), "macro_f1") == pytest.approx(1 / 3)
    assert chance_score(np.array([0, 0, 0, 1.0]), "f1") == pytest.approx(0.25)
    assert chance_score(np.array([1.0, 3.0]), "mse") == pytest.approx(1.0)
    rng, ids, x = _data(num_sequences=16)
    noise = {"t": rng.integers(0, 4, len(x)).astype(float)}  # unrelated to x
    result = probe_embeddings(x, noise, {"t": "discrete"}, ids, seeds=(1, 2, 3))["t"]
    assert result.chance == pytest.approx(0.25)
    assert abs(result.score - result.chance) < 0.05


# ------------------------------------------------------------------ controls and baselines
def test_motion_features_stay_inside_each_sequence():
    frame_map = {"a": (0, 5), "b": (5, 10)}
    x = np.concatenate([np.arange(5.0), 100.0 + 2 * np.arange(5.0)])[:, None]
    features = motion_features(x, frame_map, windows=(2, 4))
    assert features.shape == (10, 1 + 2 * 2)
    np.testing.assert_array_equal(features[:, 0], x[:, 0])
    np.testing.assert_array_equal(features[:, 1], [1, 2, 2, 2, 1, 2, 4, 4, 4, 2])  # window 2
    np.testing.assert_array_equal(features[:, 3], [2, 3, 4, 3, 2, 4, 6, 8, 6, 4])  # window 4
    np.testing.assert_array_equal(features[:, 2], np.abs(features[:, 1]))
    with pytest.raises(ValueError, match="motion windows"):
        motion_features(x, frame_map, windows=(1,))


def test_table_has_controls_baselines_and_a_summary(tmp_path):
    rng, ids, x = _data(num_sequences=16, dimension=6)
    labels = {"t": np.argmax(x[:, :3], axis=1).astype(float),
              "v": x[:, 3] + 0.1 * rng.normal(size=len(x))}
    types = {"t": "discrete", "v": "continuous"}
    control = {"level_0": rng.normal(size=x.shape), "level_1": rng.normal(size=x.shape)}
    table = probe_table({"level_0": x, "level_1": x[:, :2]}, labels, types, ids,
                        control_embeddings=control, baseline=x[:, 3:], motion_windows=(2, 8),
                        seeds=(1, 2, 3), alphas=(1.0,))
    assert table.columns == ["level_0", "level_1", "control_level_0", "control_level_1",
                             "raw_keypoints", "raw_motion"]
    assert table.level_columns == ["level_0", "level_1"]
    assert table.controls == {"level_0": "control_level_0", "level_1": "control_level_1"}
    assert table.comparison("t", "level_0").verdict == "better"
    summary = {row["task"]: row for row in table.summary()}
    assert summary["t"]["best_level"] == "level_0"
    assert summary["t"]["versus_control"].verdict == "better"
    assert summary["v"]["best_baseline"] in ("raw_keypoints", "raw_motion")
    markdown = table.to_markdown()
    assert "▲" in markdown and "Best level against the best control level" in markdown
    with pytest.raises(ValueError, match="not a level"):
        probe_table({"level_0": x}, labels, types, ids, control_embeddings={"level_9": x})


@pytest.mark.parametrize("standardize", [False, True])
def test_fits_from_group_moments_equal_direct_fits(standardize, monkeypatch):
    """The per-(sequence, class) moments give the coefficients of `ridge_path` on the rows."""
    from keras_hbehavemae.evaluation import moments
    from keras_hbehavemae.evaluation.ridge import (
        balanced_sample_weights,
        one_vs_rest_targets,
        ridge_path,
    )

    rng, ids, x = _data(num_sequences=10, dimension=6)
    x = (x * rng.uniform(0.1, 5.0, 6) + 30.0).astype(np.float32)  # a large mean, like embeddings
    fit_rows = np.flatnonzero(ids < 7)
    for kind, y in (("discrete", rng.integers(0, 3, len(x)).astype(float)),
                    ("discrete", (x[:, 0] > 30).astype(float)),
                    ("continuous", x[:, 1] * 2.0 + rng.normal(size=len(x)))):
        classes = np.unique(y) if kind == "discrete" else None
        fitter = moments.FoldFitter(x, y, np.isfinite(y), kind, classes, ids, 10, standardize,
                                    "auto")
        assert fitter.moments is not None
        path, _ = fitter.fit(fit_rows, [0.5, 2.0])
        if kind == "discrete":
            expected = ridge_path(x[fit_rows], one_vs_rest_targets(y[fit_rows], classes),
                                  [0.5, 2.0], balanced_sample_weights(y[fit_rows]),
                                  standardize=standardize)
        else:
            expected = ridge_path(x[fit_rows], y[fit_rows], [0.5, 2.0], standardize=standardize)
        for (coef, intercept), (want_coef, want_intercept) in zip(path, expected, strict=True):
            np.testing.assert_allclose(np.reshape(coef, np.shape(want_coef)), want_coef,
                                       rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(np.reshape(intercept, np.shape(want_intercept)),
                                       want_intercept, rtol=1e-4, atol=1e-4)
    labels = {"t": np.argmax(x[:, :3], axis=1).astype(float), "v": x[:, 2].astype(float)}
    types = {"t": "discrete", "v": "continuous"}
    fast = probe_embeddings(x, labels, types, ids, seeds=(1, 2), standardize=standardize)
    monkeypatch.setattr(moments, "MAX_MOMENT_BYTES", 0)  # every fold fitted on its rows
    direct = probe_embeddings(x, labels, types, ids, seeds=(1, 2), standardize=standardize)
    for task in labels:
        np.testing.assert_allclose(fast[task].seed_values(), direct[task].seed_values(),
                                   rtol=1e-5, atol=1e-8)
