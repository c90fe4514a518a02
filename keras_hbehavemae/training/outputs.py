"""The end of a run: `final_metrics.json` and the trained model as a preset folder."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from keras_hbehavemae.allocator import reusing_freed_memory
from keras_hbehavemae.models import HBehaveMAE, HBehaveMAEBackbone
from keras_hbehavemae.presets import save_to_preset
from keras_hbehavemae.training import run_directory
from keras_hbehavemae.training.distribution import without_distribution

if TYPE_CHECKING:
    from keras_hbehavemae.training.training_run import TrainingRun


def _float32_copy(model: HBehaveMAE) -> HBehaveMAE:
    """An uncompiled float32 copy (for the preset: no optimizer state, no mixed policy).

    It lives on this process only: a JAX distribution (which spreads new variables over
    every process's devices) is switched off while it is made.
    """
    config = model.config_object
    with without_distribution():
        backbone = HBehaveMAEBackbone(**config.encoder_kwargs(), dtype="float32")
        copy = HBehaveMAE(backbone, seed=model.seed, dtype="float32",
                          **config.pretrainer_kwargs())
        copy.set_weights(model.get_weights())
    return copy


def _model_card(run: TrainingRun, summary: dict) -> str:
    config = run.model_config
    return "\n".join([
        "# hBehaveMAE pretrained with keras_hbehavemae",
        "",
        f"- data: `{run.data.name}` ({summary['data']['train_windows']} training windows of "
        f"{config.input_size})",
        f"- model: stages {list(config.stages)}, q_strides {[list(s) for s in config.q_strides]}"
        f", widths from {config.init_embed_dim}, out_embed_dims {list(config.out_embed_dims)}, "
        f"decoding `{config.decoding_strategy}`, mask_ratio {config.mask_ratio}",
        f"- training: {summary['completed_epochs']} epochs, {summary['optimizer_steps']} steps, "
        f"global batch {run.global_batch_size}, peak lr {run.learning_rate:.3g}",
        f"- final train loss {summary['train_loss']:.4f}"
        + (f", held-out loss {summary['test_loss']:.4f}" if summary.get("test_loss") is not None
           else ""),
        "",
        "Load the encoder with `HBehaveMAEBackbone.from_preset(path)`, the whole pretrainer "
        "with `HBehaveMAE.from_preset(path)`.",
        "",
    ])


def _final_summary(run: TrainingRun, output_dir: str, state: dict, wall_seconds: float) -> dict:
    metrics = run_directory.read_metrics(output_dir)
    tested = [line for line in metrics if "test_loss" in line]
    summary = {
        "epochs": run.training.epochs,
        "completed_epochs": state["completed_epochs"],
        "optimizer_steps": state["optimizer_iterations"],
        "first_train_loss": metrics[0]["train_loss"] if metrics else None,
        "train_loss": metrics[-1]["train_loss"] if metrics else None,
        "test_loss": None,
        "test_loss_epoch": None,
        "session_wall_seconds": round(wall_seconds, 1),
        "reuse_freed_memory": reusing_freed_memory(),
        "sessions": state.get("sessions", []),
        **run.schedule_summary(),
        "data": run.data.describe(),
    }
    last_epoch = state["completed_epochs"] - 1
    if tested and tested[-1]["epoch"] == last_epoch:
        summary["test_loss"], summary["test_loss_epoch"] = tested[-1]["test_loss"], last_epoch
    elif run.data.test is not None:
        result = run.model.evaluate(run.test_dataset(), verbose=0, return_dict=True)
        summary["test_loss"], summary["test_loss_epoch"] = float(result["loss"]), last_epoch
    return summary


def write_final_outputs(run: TrainingRun, output_dir: str, state: dict,
                        wall_seconds: float, write: bool = True) -> dict:
    """`final_metrics.json` and the preset folder `output_dir/preset/`; returns the summary.

    With several processes every one calls this (the held-out loss may need all of them);
    only the one with `write=True` (process 0) writes.
    """
    summary = _final_summary(run, output_dir, state, wall_seconds)
    if not write:
        return summary
    run_directory.write_json_atomically(
        os.path.join(output_dir, run_directory.FINAL_METRICS_FILE), summary)
    metadata = {"training": {**{key: value for key, value in summary.items() if key != "data"},
                             "seed": run.training.seed},
                "data": summary["data"], "model_config": run.model_config.to_dict()}
    save_to_preset(_float32_copy(run.model), os.path.join(output_dir, run_directory.PRESET_FOLDER),
                   weights="trained", metadata=metadata, model_card=_model_card(run, summary))
    return summary
