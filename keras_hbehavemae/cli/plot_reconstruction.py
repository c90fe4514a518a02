"""Plot original vs reconstructed keypoint trajectories of one masked window (needs matplotlib).

The pretrainer (a preset with its decoder, `task.json`) masks a window at random (seeded),
reconstructs it, and the chosen features of one individual are drawn over time: the input,
the reconstruction of the spans hidden from the encoder (shaded; the time-strided
predictions as dots, the frames in between filled by `--fill`; `--all_predictions` also
draws the never-trained predictions of visible units). A mask unit covers several frames
*and* a block of features, so each feature has its own shaded spans.

Data: a generic `.npy`/`.npz`/`.csv` keypoint file `[T, H, W]` (or `[T, H·W]`), or a
MABe22-layout dict file such as the synthetic dataset's `train.npy`/`test.npy` (then
normalised with (v − 425) / 425 as in training, see `--normalise`). For `norm_loss`
models the per-token predictions are mapped back with the true per-token mean/std of the
window (evaluation only; see `reconstruction.reconstruct(denormalise_with=...)`).

Usage:
    hbehavemae plot-reconstruction --preset presets/my_model \\
        --data data/synthetic/test.npy --sequence 0 --start 100 --keypoints 0,5 \\
        --individual 1 --output reconstruction.png
"""

import sys

import numpy as np
from absl import flags

from keras_hbehavemae.cli.usage import run_command

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("preset", None, "Preset folder of a pretrainer (with task.json), or a "
                        ".keras file of an HBehaveMAE.")
    flags.DEFINE_string("data", None, "Keypoint file: .npy/.npz/.csv [T, H, W] or [T, H*W], or "
                        "a MABe22-layout dict .npy (e.g. the synthetic dataset).")
    flags.DEFINE_string("sequence", "0", "Sequence of a multi-sequence file: index or name.")
    flags.DEFINE_integer("start", 0, "First frame of the window.")
    flags.DEFINE_list("keypoints", ["0"], "Feature indices (W axis) to plot, e.g. 0,5.")
    flags.DEFINE_integer("individual", 0, "Individual (H axis) to plot.")
    flags.DEFINE_enum("normalise", "auto", ("auto", "arena", "none"), "auto: (v − 425)/425 for "
                      "MABe22-layout dict files (as in training), none for generic arrays.")
    flags.DEFINE_enum("fill", "linear", ("hold", "linear"), "How frames between time-strided "
                      "predictions are filled.")
    flags.DEFINE_integer("mask_seed", 0, "Seed of the random unit mask.")
    flags.DEFINE_bool("all_predictions", False, "Also draw the predictions for visible units "
                      "(MAE never trains those; by default only hidden spans are drawn).")
    flags.DEFINE_string("output", "reconstruction.png", "PNG file to write.")
    flags.DEFINE_bool("allow_random_weights", False, "Accept a preset without trained or "
                      "converted weights: the plot then shows a random model's reconstruction.")
    flags.DEFINE_integer("dpi", 120, "Resolution of the PNG.", lower_bound=1)
    flags.mark_flags_as_required(["preset", "data"])


class UsageError(ValueError):
    pass


def import_pyplot():
    try:
        import matplotlib
    except ImportError:
        raise UsageError(
            "matplotlib is not installed; this script needs it to draw the plot. Install it "
            "with `pip install matplotlib` (it is not a dependency of keras_hbehavemae).") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def load_window(path, sequence, start, input_size, normalise):
    """`(window [T, H, W] float32, sequence name, normalised?)`."""
    from keras_hbehavemae.data import read_keypoint_arrays, read_mabe_mouse_triplets
    from keras_hbehavemae.files.npy import read_npy_header
    from keras_hbehavemae.files.pickle_files import load_pickled_file

    frames, rows, features = input_size
    dict_file = False
    if str(path).endswith(".npy") and read_npy_header(path).dtype.hasobject:
        # an object array: a MABe22-layout dict or a list/dict of arrays
        content = load_pickled_file(path)
        dict_file = isinstance(content, dict) and "sequences" in content
    if dict_file:
        sequences = read_mabe_mouse_triplets(content, expected_hw=(rows, features))
    else:
        sequences = read_keypoint_arrays(path, layout=(rows, features),
                                         expected_hw=(rows, features))
    if sequence in sequences.names:
        index = sequences.names.index(sequence)
    elif sequence.lstrip("-").isdigit() and -len(sequences) <= int(sequence) < len(sequences):
        index = int(sequence)
    else:
        raise UsageError(
            f"--sequence {sequence!r}: not a name or index of the {len(sequences)} sequences in "
            f"{path} (e.g. {sequences.names[:3]})")
    keypoints = sequences.keypoints[index]
    if start < 0 or start + frames > len(keypoints):
        raise UsageError(
            f"--start {start}: the window [{start}, {start + frames}) does not fit sequence "
            f"{sequences.names[index]!r} of {len(keypoints)} frames (the model's window is "
            f"{frames} frames)")
    window = keypoints[start:start + frames]
    arena = normalise == "arena" or (normalise == "auto" and dict_file)
    if arena:
        from keras_hbehavemae.data import ArenaNormalisation

        window = ArenaNormalisation()(window)
    return np.asarray(window, "float32"), sequences.names[index], arena


def hidden_spans(hidden):
    """`[(first, stop), ...]` runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], hidden, [False]]).astype(int)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2], edges[1::2], strict=True))


def plot(result, window, model, features, individual, start, title, all_predictions=False):
    pyplot = import_pyplot()
    patch_t = model.geometry.config.patch_kernel[0]
    frames = np.arange(start, start + len(window))
    reconstruction, strided = result["reconstruction"][0], result["strided"][0]
    if not all_predictions:
        # Visible units' predictions were never trained: draw the hidden spans only, filled
        # towards the true visible frames at their edges (the composite).
        hidden = result["hidden"][0]
        reconstruction = np.where(hidden, result["composite"][0], np.nan)
        strided = np.where(hidden[::patch_t], strided, np.nan)
    figure, axes = pyplot.subplots(len(features), 1, figsize=(13, 2.6 * len(features)),
                                   sharex=True, squeeze=False)
    for axis, feature in zip(axes[:, 0], features, strict=True):
        for first, stop in hidden_spans(result["hidden"][0, :, individual, feature]):
            axis.axvspan(start + first - 0.5, start + stop - 0.5, color="0.85", zorder=0,
                         label="hidden from the encoder")
        axis.plot(frames, window[:, individual, feature], color="C0", lw=1.4, label="input")
        axis.plot(frames, reconstruction[:, individual, feature], color="C3", lw=1.2,
                  ls="--", label="reconstruction")
        axis.plot(frames[::patch_t], strided[:, individual, feature], "o", color="C3", ms=2.5,
                  label=f"predicted frames (every {patch_t})")
        axis.set_ylabel(f"individual {individual}\nfeature {feature}")
        handles, labels = axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        axis.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.005, 1),
                    fontsize=7, frameon=False)
    axes[-1, 0].set_xlabel("frame")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return figure


def main(argv):
    del argv
    try:
        pyplot = import_pyplot()
        from keras_hbehavemae.cli import flag_parsing
        from keras_hbehavemae.embeddings.reconstruction import reconstruct
        from keras_hbehavemae.evaluation.plots import save_figure
        from keras_hbehavemae.files.atomic import check_output_is_not_input
        from keras_hbehavemae.loading import load_model

        for flag in ("preset", "data", "output"):
            flag_parsing.path(f"--{flag}", FLAGS[flag].value)
        chosen = flag_parsing.integers("--keypoints", FLAGS.keypoints, minimum=0)
        check_output_is_not_input(FLAGS.output, "--output", {"--preset": FLAGS.preset,
                                                             "--data": FLAGS.data})
        model = load_model(FLAGS.preset, kind="pretrainer", parameter="--preset",
                           allow_random_weights=FLAGS.allow_random_weights)
        rows, features = model.geometry.config.input_size[1:]
        if any(value >= features for value in chosen):
            raise UsageError(f"--keypoints {FLAGS.keypoints}: feature indices must lie in "
                             f"[0, {features})")
        if not 0 <= FLAGS.individual < rows:
            raise UsageError(f"--individual {FLAGS.individual}: must lie in [0, {rows})")
        window, name, arena = load_window(FLAGS.data, FLAGS.sequence, FLAGS.start,
                                          model.geometry.config.input_size, FLAGS.normalise)
        norm_loss = bool(model.config_object.norm_loss)
        try:
            result = reconstruct(model, window[None], seed=FLAGS.mask_seed, fill=FLAGS.fill,
                                 denormalise_with=window[None] if norm_loss else None)
        except ValueError as error:
            raise ValueError(f"--data {FLAGS.data!r}, sequence {name!r}, frames "
                             f"[{FLAGS.start}, {FLAGS.start + len(window)}): {error}") from None
        geometry = model.geometry
        error = np.abs(result["composite"] - window[None])[result["hidden"]].mean()
        denormalised = "; norm_loss tokens de-normalised with the true statistics"
        title = (f"{name}, frames [{FLAGS.start}, {FLAGS.start + len(window)})"
                 f"{' (arena-normalised)' if arena else ''}: {geometry.num_kept_units} of "
                 f"{geometry.num_mask_units} mask units visible; mean |error| on hidden "
                 f"elements {error:.3g}{denormalised if norm_loss else ''}")
        figure = plot(result, window, model, chosen, FLAGS.individual, FLAGS.start, title,
                      FLAGS.all_predictions)
        save_figure(figure, FLAGS.output, dpi=FLAGS.dpi)
        pyplot.close(figure)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.output}")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae plot-reconstruction` command (`hbehavemae-plot-reconstruction`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__)


if __name__ == "__main__":
    command()
