"""Plot a training run's loss, learning rate and gradient norm to a PNG (needs matplotlib).

Usage:
    python scripts/plot_training.py --log runs/demo/metrics.jsonl --output curves.png
    python scripts/plot_training.py --log runs/demo --output curves.png   # a run directory
    python scripts/plot_training.py --log history.csv --output curves.png  # epoch,loss,...
"""

import sys

from absl import app, flags

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

    try:
        plot_training_curves(FLAGS.log, FLAGS.output, title=FLAGS.title)
    except (ImportError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {FLAGS.output}")
    return 0


def command(argv: list[str] | None = None) -> None:
    """The `hbehavemae plot-training` command (`hbehavemae-plot-training`)."""
    define_flags()
    app.run(main, argv=argv)


if __name__ == "__main__":
    command()
