"""Linear probes: closed-form ridge, the seeded sequence-level protocol, tables, the script."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from keras_hbehavemae.evaluation import (
    RidgeClassifier,
    RidgeRegression,
    f1_binary,
    f1_macro,
    frame_sequence_index,
    load_embedding_folder,
    load_labels_file,
    mean_squared_error,
    probe_embeddings,
    probe_table,
    ridge_path,
    split_sequences,
    write_labels_file,
    write_table_csv,
    write_table_markdown,
)
from keras_hbehavemae.evaluation.ridge import balanced_sample_weights
from keras_hbehavemae.evaluation.splits import make_splits

pytestmark = pytest.mark.backend_independent

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]
NUM_SEQUENCES, FRAMES_PER_SEQUENCE = 40, 50


def _frames(dimension: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(NUM_SEQUENCES * FRAMES_PER_SEQUENCE, dimension)).astype(np.float32)
    ids = np.repeat(np.arange(NUM_SEQUENCES), FRAMES_PER_SEQUENCE)
    return rng, x, ids


def _lstsq_ridge(x, y, alpha, weights, scale=None):
    """Ridge as ordinary least squares on an augmented system with an unpenalised intercept."""
    x = np.asarray(x, np.float64)
    scale = np.ones(x.shape[1]) if scale is None else scale
    root = np.sqrt(weights)[:, None]
    design = np.vstack([
        np.hstack([x / scale, np.ones((len(x), 1))]) * root,
        np.hstack([np.sqrt(alpha) * np.eye(x.shape[1]), np.zeros((x.shape[1], 1))]),
    ])  # fmt: skip
    target = np.concatenate([y.reshape(len(x), -1) * root, np.zeros((x.shape[1], y.reshape(
        len(x), -1).shape[1]))])
    solution = np.linalg.lstsq(design, target, rcond=None)[0]
    return solution[:-1] / scale[:, None], solution[-1]


# ------------------------------------------------------------------------ exactness
@pytest.mark.parametrize("shape", [(60, 5), (12, 30)], ids=["tall", "wide"])
@pytest.mark.parametrize("solver", ["primal", "dual"])
def test_closed_form_ridge_equals_lstsq_on_the_augmented_system(shape, solver):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape) + rng.normal(size=shape[1])  # non-centred features
    y = rng.normal(size=(shape[0], 3)) + 2.0
    weights = rng.uniform(0.2, 3.0, shape[0])
    path = ridge_path(x, y, [0.1, 1.0, 5.0], weights, solver=solver)
    for alpha, (coef, intercept) in zip([0.1, 1.0, 5.0], path, strict=True):
        expected_coef, expected_intercept = _lstsq_ridge(x, y, alpha, weights)
        np.testing.assert_allclose(coef, expected_coef, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(intercept, expected_intercept, rtol=1e-8, atol=1e-10)


def test_primal_and_dual_agree_and_standardisation_is_exact():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 25)) * rng.uniform(0.1, 10.0, 25)
    y = rng.normal(size=25)
    weights = rng.uniform(0.5, 2.0, 25)
    (primal,) = ridge_path(x, y, [2.0], weights, solver="primal")
    (dual,) = ridge_path(x, y, [2.0], weights, solver="dual")
    np.testing.assert_allclose(primal[0], dual[0], rtol=1e-8, atol=1e-10)
    assert np.isclose(primal[1], dual[1])
    mean = weights @ x / weights.sum()
    scale = np.sqrt(weights @ (x - mean) ** 2 / weights.sum())
    expected_coef, expected_intercept = _lstsq_ridge(x, y, 2.0, weights, scale)
    for solver in ("primal", "dual"):
        ((coef, intercept),) = ridge_path(x, y, [2.0], weights, standardize=True, solver=solver)
        np.testing.assert_allclose(coef, expected_coef[:, 0], rtol=1e-8, atol=1e-10)
        assert np.isclose(intercept, expected_intercept[0])


def test_ridge_rejects_bad_arguments():
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="positive"):
        ridge_path(x, np.zeros(4), [0.0])
    with pytest.raises(ValueError, match="solver"):
        ridge_path(x, np.zeros(4), [1.0], solver="svd")
    with pytest.raises(ValueError, match="finite"):
        RidgeClassifier().fit(x, [0.0, 1.0, np.nan, 1.0])


def test_classifier_matches_its_definition():
    """Balanced weights, {−1, +1} one-vs-rest targets, argmax; binary uses the sign."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(90, 4))
    y = np.repeat([0, 1, 2], [50, 30, 10])
    weights = balanced_sample_weights(y)
    np.testing.assert_allclose(np.unique(weights), sorted(90 / (3 * np.array([50, 30, 10]))))
    model = RidgeClassifier(alpha=1.0).fit(x, y)
    targets = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    coef, intercept = _lstsq_ridge(x, targets, 1.0, weights)
    np.testing.assert_allclose(model.decision_function(x), x @ coef + intercept, atol=1e-10)
    np.testing.assert_array_equal(model.predict(x), np.argmax(x @ coef + intercept, axis=1))
    binary = RidgeClassifier().fit(x, y == 2)
    assert binary.decision_function(x).shape == (90,)
    np.testing.assert_array_equal(binary.predict(x), binary.decision_function(x) > 0)


def test_metrics():
    assert f1_binary([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert f1_binary([0, 0], [0, 0]) == 0.0  # no positives anywhere
    assert f1_macro([0, 1, 2, 2], [0, 1, 2, 1]) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert mean_squared_error([1.0, 2.0], [1.0, 4.0]) == pytest.approx(2.0)
    model = RidgeRegression(alpha=1e-9).fit(np.arange(5.0)[:, None], 3 * np.arange(5.0) - 1)
    np.testing.assert_allclose(model.predict([[10.0]]), [29.0], rtol=1e-8)


# ------------------------------------------------------------------ known-answer probes
def test_probe_scores_on_constructed_tasks():
    rng, x, ids = _frames()
    labels = {
        "threshold": (x[:, 2] > 0).astype(float),
        "random": rng.integers(0, 2, len(x)).astype(float),
        "linear": x @ np.arange(1.0, 9.0) + 3.0,
        "noise": rng.normal(0.0, 2.0, len(x)),
        "three_classes": np.argmax(x[:, :3], axis=1).astype(float),
    }
    types = {"threshold": "Discrete", "random": "discrete", "linear": "continuous",
             "noise": "Continuous", "three_classes": "discrete"}
    results = probe_embeddings(x, labels, types, ids)
    assert results["threshold"].metric == "f1" and results["threshold"].score >= 0.95
    assert results["three_classes"].metric == "macro_f1"
    assert results["three_classes"].score >= 0.9
    assert abs(results["random"].score - 0.5) <= 0.1
    assert abs(results["random"].ensemble - 0.5) <= 0.1
    assert results["linear"].metric == "mse" and results["linear"].score <= 1e-3
    assert results["noise"].score == pytest.approx(4.0, rel=0.15)  # ≈ the label's variance
    for result in results.values():
        assert sorted(result.ensemble_scores) == [0.1, 0.5, 1.0, 2.0, 5.0]
        assert sorted(result.seed_scores[1.0]) == [41, 42, 43, 44, 45]
        assert result.std_across_alphas == pytest.approx(
            np.std(list(result.ensemble_scores.values())))
        assert result.protocol == "kfold"


def test_nan_labels_are_skipped():
    rng, x, ids = _frames()
    label = (x[:, 0] > 0).astype(float)
    label[rng.random(len(x)) < 0.4] = np.nan
    # Unlabelled frames get wild embeddings: fitting on them would ruin the probe.
    x = x.copy()
    x[np.isnan(label)] *= 1000.0
    result = probe_embeddings(x, {"task": label}, {"task": "discrete"}, ids)["task"]
    assert result.score >= 0.95
    assert result.num_scored_frames == np.count_nonzero(np.isfinite(label))  # k-fold: all
    all_nan = probe_embeddings(x, {"t": np.full(len(x), np.nan)}, {"t": "discrete"}, ids)["t"]
    assert np.isnan(all_nan.score) and all_nan.num_scored_frames == 0


def test_balanced_weights_find_the_minority_class():
    rng = np.random.default_rng(4)
    num = 4000
    y = (rng.random(num) < 0.05).astype(float)  # 95 / 5
    x = rng.normal(size=(num, 6))
    x[:, 0] += 4.0 * y  # separable-ish along one direction (Bayes F1 ≈ 0.8)
    train, test = slice(0, 3000), slice(3000, None)
    balanced = RidgeClassifier().fit(x[train], y[train]).predict(x[test])
    plain = RidgeClassifier(class_weight=None).fit(x[train], y[train]).predict(x[test])
    balanced_f1, plain_f1 = f1_binary(y[test], balanced), f1_binary(y[test], plain)
    recall = np.mean(balanced[y[test] == 1] == 1)
    assert balanced_f1 >= 0.7, balanced_f1  # 0.79 (recall 0.98)
    assert recall >= 0.9, recall
    # Unweighted, the fit leans to the majority class: F1 0.64, recall 0.47.
    assert plain_f1 < balanced_f1 and np.mean(plain[y[test] == 1] == 1) < recall


def test_splits_are_by_sequence():
    for seed in (41, 42, 43):
        train, held_out = split_sequences(40, seed, 0.25)
        assert len(held_out) == 10 and len(train) == 30
        assert not set(train) & set(held_out) and set(train) | set(held_out) == set(range(40))
    assert not np.array_equal(split_sequences(40, 41, 0.25)[1], split_sequences(40, 42, 0.25)[1])
    np.testing.assert_array_equal(split_sequences(40, 41, 0.25)[1],
                                  split_sequences(40, 41, 0.25)[1])
    frame_map = {"b": (0, 3), "a": (3, 5), "c": (5, 9)}
    index, names = frame_sequence_index(frame_map, 9)
    assert names == ["b", "a", "c"] and index.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    _, x, ids = _frames()
    for split in make_splits(*frame_sequence_index(ids, len(x)), (41, 42, 43),
                             split="train_test_split", test_fraction=0.25):
        (fold,) = split.folds
        assert not set(ids[fold.train]) & set(ids[fold.scored])
        assert len(set(ids[fold.scored])) == 10


def test_memorising_sequence_identity_does_not_leak():
    """A per-sequence random label is predictable from a per-sequence code only if frames of
    one sequence reach both sides of the split; with sequence-level splits it is chance."""
    rng = np.random.default_rng(5)
    codes = rng.normal(size=(NUM_SEQUENCES, 64))
    ids = np.repeat(np.arange(NUM_SEQUENCES), FRAMES_PER_SEQUENCE)
    x = codes[ids] + 0.01 * rng.normal(size=(len(ids), 64))
    label = rng.integers(0, 2, NUM_SEQUENCES)[ids].astype(float)
    result = probe_embeddings(x, {"t": label}, {"t": "discrete"}, ids)["t"]
    assert result.score < 0.85  # a frame-level split would score ≈ 1
    in_sample = RidgeClassifier(alpha=1.0).fit(x, label).predict(x)
    assert f1_binary(label, in_sample) > 0.99


def test_evaluation_set_protocol_and_binary_or_ensemble():
    rng, x, ids = _frames()
    labels = {"random": rng.integers(0, 2, len(x)).astype(float),
              "threshold": (x[:, 1] > 0).astype(float)}
    types = dict.fromkeys(labels, "discrete")
    evaluation = list(range(30, 40))
    results = probe_embeddings(x, labels, types, ids, evaluation_sequences=evaluation,
                               split="train_test_split", alphas=(1.0,))
    assert results["threshold"].protocol == "evaluation_set"
    assert results["threshold"].num_scored_frames == 10 * FRAMES_PER_SEQUENCE
    assert results["threshold"].score >= 0.95
    # The OR ensemble predicts "positive" at least as often as any single seed, so on a
    # random label its recall, and here its F1, cannot be below the seeds' mean by much.
    assert results["random"].ensemble >= results["random"].score - 0.02


def test_multi_class_vote_and_dict_levels():
    rng, x, ids = _frames(dimension=6)
    labels = {"classes": np.argmax(x[:, :4], axis=1).astype(float)}
    levels = {"level_0": x, "level_1": rng.normal(size=x.shape)}
    results = probe_embeddings(levels, labels, {"classes": "discrete"}, ids, seeds=(1, 2, 3))
    assert results["level_0"]["classes"].score >= 0.85
    assert results["level_1"]["classes"].score <= 0.4  # noise: about 1 / 4


def test_probe_argument_errors():
    _, x, ids = _frames()
    label = {"t": (x[:, 0] > 0).astype(float)}
    with pytest.raises(ValueError, match="reported_alpha"):
        probe_embeddings(x, label, {"t": "discrete"}, ids, alphas=(0.1, 2.0))
    with pytest.raises(ValueError, match="task type"):
        probe_embeddings(x, label, {}, ids)
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        probe_embeddings(bad, label, {"t": "discrete"}, ids)
    with pytest.raises(ValueError, match="hold out"):
        probe_embeddings(x[:50], {"t": label["t"][:50]}, {"t": "discrete"}, ids[:50],
                         split="train_test_split")
    with pytest.raises(ValueError, match="folds"):
        probe_embeddings(x[:50], {"t": label["t"][:50]}, {"t": "discrete"}, ids[:50])


# ------------------------------------------------------------------ tables and files
def _small_table(with_baseline: bool = True):
    rng, x, ids = _frames(dimension=4)
    labels = {"threshold": (x[:, 0] > 0).astype(float), "linear": x @ [1.0, 2.0, 0.0, 0.0]}
    types = {"threshold": "discrete", "linear": "continuous"}
    levels = {"level_0": x, "level_1": rng.normal(size=(len(x), 3))}
    baseline = rng.normal(size=(len(x), 2, 3)) if with_baseline else None
    return probe_table(levels, labels, types, ids, baseline=baseline, seeds=(0, 1),
                       alphas=(0.5, 1.0), motion_windows=None)


def test_probe_table_rows_and_writers(tmp_path):
    table = _small_table()
    assert table.columns == ["level_0", "level_1", "raw_keypoints"]
    assert table.tasks == ["threshold", "linear"] and table.baseline_columns == ["raw_keypoints"]
    rows = table.rows()
    assert [row["task"] for row in rows] == ["threshold", "linear"]
    assert rows[0]["metric"] == "f1" and rows[1]["metric"] == "mse"
    assert rows[0]["level_0"] >= 0.95 and rows[1]["level_0"] < 1e-2

    write_table_csv(table, tmp_path / "table.csv")
    with open(tmp_path / "table.csv", newline="") as file:
        read = list(csv.DictReader(file))
    assert list(read[0]) == ["task", "task_type", "metric", "chance"] + [
        name for column in table.columns
        for name in (column, f"{column}_sd", f"{column}_ensemble", f"{column}_seed_0",
                     f"{column}_seed_1")
    ]  # fmt: skip
    assert [row["task"] for row in read] == ["threshold", "linear"]
    assert float(read[0]["level_0"]) == pytest.approx(rows[0]["level_0"])

    write_table_markdown(table, tmp_path / "table.md")
    lines = (tmp_path / "table.md").read_text().splitlines()
    assert lines[0] == "| task | metric | chance | level_0 | level_1 | raw_keypoints |"
    assert lines[2].startswith("| threshold | f1 | 0.494 | **")
    assert "| **" in lines[2] and "| **" in lines[3]  # best column in bold
    assert " ± " in lines[2]
    json.dumps(table.to_dict())  # serialisable


def test_labels_file_round_trip(tmp_path):
    from keras_hbehavemae.data import generate_synthetic_behaviour, read_mabe_mouse_triplets

    sequences = read_mabe_mouse_triplets(generate_synthetic_behaviour(3, 120, seed=2))
    written = write_labels_file(sequences, tmp_path / "labels.npy")
    assert written["vocabulary"] == ["action", "activity", "cohesion", "moveme"]
    assert written["task_type"] == ["Discrete", "Discrete", "Continuous", "Discrete"]
    assert written["label_array"].shape == (4, 360)
    loaded = load_labels_file(tmp_path / "labels.npy")
    assert loaded.frame_number_map == sequences.frame_number_map()
    assert loaded.task_types["cohesion"] == "continuous" and loaded.task_types["action"] == (
        "discrete")
    np.testing.assert_array_equal(loaded.labels["moveme"], sequences.label_array("moveme"))

    binary = write_labels_file(sequences, tmp_path / "binary.npy", tasks=["activity"],
                               binarize_discrete=True)
    present = np.unique(sequences.label_array("activity"))
    assert len(binary["vocabulary"]) == len(present)
    assert all(name.startswith("activity=") for name in binary["vocabulary"])
    np.testing.assert_array_equal(binary["label_array"].sum(axis=0), np.ones(360))


def test_embedding_folder_layouts(tmp_path):
    frame_map = {"a": (0, 3), "b": (3, 5)}
    levels = tmp_path / "levels"
    levels.mkdir()
    for k in (0, 1, 10, "combined"):
        np.save(levels / f"level_{k}.npy", np.full((5, 2), 7, np.float32))
    (levels / "frame_number_map.json").write_text(json.dumps(frame_map))
    arrays, maps = load_embedding_folder(levels)
    assert list(arrays) == ["level_0", "level_1", "level_10", "combined"]
    assert maps["level_1"] == frame_map

    submission = tmp_path / "submission"
    submission.mkdir()
    for k in (1, 0):
        content = {"frame_number_map": frame_map, "embeddings": np.full((5, 3), k, np.float64)}
        np.save(submission / f"test_submission_{k}.npy", np.array(content, dtype=object))
    arrays, _ = load_embedding_folder(submission)
    assert list(arrays) == ["level_0", "level_1"] and arrays["level_1"].dtype == np.float32


@pytest.mark.slow
def test_evaluate_script_end_to_end(tmp_path):
    """One subprocess: synthetic labels file, two embedding levels, baseline, all outputs."""
    from keras_hbehavemae.data import generate_synthetic_behaviour, read_mabe_mouse_triplets

    sequences = read_mabe_mouse_triplets(generate_synthetic_behaviour(8, 150, seed=3))
    write_labels_file(sequences, tmp_path / "labels.npy")
    keypoints = np.concatenate([array.reshape(len(array), -1) for _, array in sequences])
    keypoints = (keypoints - 425.0) / 425.0
    rng = np.random.default_rng(0)
    embeddings = tmp_path / "embeddings"
    embeddings.mkdir()
    np.save(embeddings / "level_0.npy", (keypoints @ rng.normal(size=(72, 16))).astype("f4"))
    np.save(embeddings / "level_1.npy", rng.normal(size=(len(keypoints), 8)).astype("f4"))
    (embeddings / "frame_number_map.json").write_text(json.dumps(sequences.frame_number_map()))
    np.save(tmp_path / "keypoints.npy", keypoints.astype("f4"))
    output = tmp_path / "out"
    command = [
        sys.executable, str(REPOSITORY / "scripts" / "evaluate.py"),
        f"--embeddings={embeddings}", f"--labels={tmp_path / 'labels.npy'}",
        f"--baseline_keypoints={tmp_path / 'keypoints.npy'}", f"--output_dir={output}",
        "--seeds=1,2", "--alphas=0.5,1", "--test_fraction=0.25",
    ]  # fmt: skip
    environment = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "tensorflow"))
    process = subprocess.run(command, capture_output=True, text=True, env=environment,
                             timeout=300, check=False)
    assert process.returncode == 0, process.stderr[-3000:]
    markdown = (output / "probe_table.md").read_text()
    assert markdown.startswith(
        "| task | metric | chance | level_0 | level_1 | raw_keypoints | raw_motion |")
    assert "sample standard deviation across 2 seeds (1, 2)" in markdown
    with open(output / "probe_table.csv", newline="") as file:
        tasks = [row["task"] for row in csv.DictReader(file)]
    assert tasks == ["action", "activity", "cohesion", "moveme"]
    results = json.loads((output / "probe_results.json").read_text())
    assert results["columns"] == ["level_0", "level_1", "raw_keypoints", "raw_motion"]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "pip install matplotlib" in process.stderr
    else:
        assert (output / "probe_heatmap.png").stat().st_size > 5000
        assert "probe_heatmap.png" in process.stdout.splitlines()[-1]  # the "wrote" line
