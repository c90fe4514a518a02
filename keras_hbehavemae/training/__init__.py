"""Pretraining runs: the published recipe with resumable, atomic checkpoints.

| module | concept |
|---|---|
| `config` | `TrainingConfig`, the training settings |
| `distribution` | one device, data parallelism over the local devices, or over several processes |
| `cluster` | the processes of a multi-worker run: start-up, and a lost process |
| `optimizer` | the published AdamW, learning-rate schedule and weight-decay exclusions |
| `initial` | the model a run starts from: `build_pretrainer`, the initial weights as a preset |
| `training_run` | `build_training_run` (model, data, devices, schedule), `restore_checkpoint` |
| `run` | `run_pretraining`: the run folder, its lock, resume, stop signals |
| `callbacks` | the run's Keras callbacks (metrics, checkpoints, NaN guard) |
| `stopping` | a polite stop on SIGTERM / Ctrl-C at a step boundary |
| `run_directory` | the files of a run folder |
| `outputs` | `final_metrics.json` and the trained preset |
"""

from keras_hbehavemae.training.callbacks import LogWriteError, NonFiniteLossError
from keras_hbehavemae.training.cluster import ClusterSettings, PeerLostError
from keras_hbehavemae.training.config import TrainingConfig
from keras_hbehavemae.training.distribution import Distribution, setup_distribution
from keras_hbehavemae.training.initial import build_pretrainer
from keras_hbehavemae.training.optimizer import published_optimizer, scaled_learning_rate
from keras_hbehavemae.training.run import run_pretraining
from keras_hbehavemae.training.stopping import TrainingInterrupted
from keras_hbehavemae.training.training_run import (
    TrainingRun,
    build_training_run,
    restore_checkpoint,
    schedule_summary,
)

__all__ = [
    "ClusterSettings",
    "Distribution",
    "LogWriteError",
    "NonFiniteLossError",
    "PeerLostError",
    "TrainingConfig",
    "TrainingInterrupted",
    "TrainingRun",
    "build_pretrainer",
    "build_training_run",
    "published_optimizer",
    "restore_checkpoint",
    "run_pretraining",
    "scaled_learning_rate",
    "schedule_summary",
    "setup_distribution",
]
