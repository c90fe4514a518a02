"""`hbehavemae <command> [flags]`: one entry point for every command-line app.

`hbehavemae --help` lists the commands; `hbehavemae <command> --help` shows a command's
flags with their defaults.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "pretrain": ("pretrain", "Pretrain on the built-in synthetic data, a published dataset or "
                 "your own pose files."),
    "embed": ("embed", "Per-frame hierarchical embeddings of sequences or pose files."),
    "evaluate": ("evaluate", "Linear probes of embeddings against per-frame labels."),
    "export": ("export", "A TensorFlow SavedModel for serving."),
    "convert": ("convert", "A published PyTorch checkpoint to a preset folder."),
    "data-flow": ("data_flow", "What the model does to one window, stage by stage."),
    "plot-training": ("plot_training", "Training curves of a run (PNG)."),
    "plot-reconstruction": ("plot_reconstruction", "A masked reconstruction, drawn (PNG)."),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: hbehavemae <command> [flags]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "`hbehavemae <command> --help` shows a command's flags."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs `argv[1]` as a command with the remaining arguments; returns the exit status."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name = argv[1]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"keras_hbehavemae.cli.{COMMANDS[name][0]}")
    module.command([f"hbehavemae {name}", *argv[2:]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
