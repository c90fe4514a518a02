"""Plot a training run's loss, learning rate and gradient norm to a PNG (needs matplotlib).

Usage:
    hbehavemae plot-training --log runs/demo/metrics.jsonl --output curves.png
    hbehavemae plot-training --log runs/demo --output curves.png   # a run directory
    hbehavemae plot-training --log history.csv --output curves.png  # epoch,loss,...
"""

import sys

from absl import flags

from keras_hbehavemae.cli.usage import run_command

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines this command's flags on absl's global `FLAGS` (once per process)."""
    flags.DEFINE_string("log", None, "CSV (epoch, loss, grad_norm, learning_rate, ...), JSON "
                        "lines of dicts, or a run directory holding metrics.jsonl.")
    flags.DEFINE_string("output", None, "The PNG file to write.")
    flags.DEFINE_string("title", None, "Optional figure title.")
    flags.mark_flags_as_required(["log", "output"])


def main(argv):
    del argv
    from keras_hbehavemae.evaluation.plots import plot_training_curves
    from keras_hbehavemae.files.atomic import check_output_is_not_input

    try:
        check_output_is_not_input(FLAGS.output, "--output", {"--log": FLAGS.log})
        plot_training_curves(FLAGS.log, FLAGS.output, title=FLAGS.title)
    except (ImportError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.output}")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae plot-training` command (`hbehavemae-plot-training`)."""
    define_flags()
    run_command(main, sys.argv if argv is None else argv, __doc__)


if __name__ == "__main__":
    command()
