"""Devices of a run: one device, the local devices, or the devices of several processes.

| `distribute` | JAX | TensorFlow |
|---|---|---|
| None | one device | one device |
| "data_parallel" | `keras.distribution.DataParallel` over the local devices | `tf.distribute.MirroredStrategy` over the local GPUs (or CPUs) |
| "multi_worker" | `jax.distributed.initialize`, then `DataParallel` over every process's devices | `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG` |

torch has no Keras distribution API (see the README for what a torch user can do).

In every case the batch of one step is the global batch (`batch_size` × all devices), and
every process builds the same global pipeline: with several processes each one gathers
only its own block of every global batch (`Distribution.input`), Keras (JAX) or
TensorFlow (`distribute_datasets_from_function`) assemble the blocks, and every device
draws the masks one device would draw for its rows of that batch (`models.masking`).
Several processes therefore train exactly what one process trains on the same global
batch. Process 0 (`is_chief`) writes the run folder; the others write nothing.
"""  # noqa: E501

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_hbehavemae.errors import invalid
from keras_hbehavemae.training.cluster import (
    ClusterSettings,
    initialize_jax,
    peer_failure,
    peer_lost_error,
    tensorflow_strategy,
)
from keras_hbehavemae.training.config import DISTRIBUTIONS

BACKENDS_WITH_DISTRIBUTION = ("jax", "tensorflow")


@dataclasses.dataclass(frozen=True)
class Distribution:
    """How a run uses devices: `num_replicas` copies of the model over all processes, one
    slice of the global batch each; this process is `process_index` of `num_processes`."""

    kind: str | None
    num_replicas: int
    strategy: Any = None  # the TensorFlow strategy, if any
    num_processes: int = 1
    process_index: int = 0

    @property
    def is_chief(self) -> bool:
        """Process 0: the one that writes checkpoints, state, logs and the preset."""
        return self.process_index == 0

    def scope(self):
        """The context to create the model and its optimizer variables in."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def input(self, make: Callable[[tuple[int, int] | None], Any], global_batch: int):
        """The dataset to give `fit`/`evaluate`.

        `make(shard)` builds the pipeline of global batches (`shard=None`), or only block
        `shard[1]` of `shard[0]` of every global batch. With one process that is the global
        pipeline; with several, each process's own block: JAX assembles the global batch
        from the processes' blocks, and TensorFlow splits each worker's block among its
        replicas (`distribute_datasets_from_function`).
        """
        if self.num_processes == 1:
            return make(None)
        if self.strategy is None:
            return make((self.num_processes, self.process_index))
        per_replica = global_batch // self.num_replicas

        def worker_input(context):
            shard = (context.num_input_pipelines, context.input_pipeline_id)
            return make(shard).rebatch(per_replica, drop_remainder=True)

        return self.strategy.distribute_datasets_from_function(worker_input)

    def gather(self, values) -> np.ndarray:
        """`[processes or replicas, len(values)]` int32: every process's `values` (a
        collective operation: every process must call it)."""
        values = np.asarray(values, np.int32).reshape(-1)
        if self.num_processes == 1:
            return values[None]
        if self.strategy is None:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(values)).reshape(
                -1, values.size)
        import tensorflow as tf

        strategy = self.strategy

        @tf.function
        def gathered():
            def replica_values():
                return tf.distribute.get_replica_context().all_gather(
                    tf.constant(values[None]), axis=0)
            return strategy.experimental_local_results(strategy.run(replica_values))[0]

        return np.asarray(gathered()).reshape(-1, values.size)

    def agree(self, what: str, values, advice: str) -> None:
        """Checks that every process has the same `values` (a collective operation).

        Raises:
            ValueError: naming `what`, the processes' values and `advice`.
        """
        rows = self.gather(values)
        if (rows != rows[0]).any():
            raise ValueError(f"the {self.num_processes} processes of this run disagree about "
                             f"{what} ({rows.tolist()}); {advice}")

    def barrier(self) -> None:
        """Waits until every process gets here."""
        self.gather([0])

    @contextlib.contextmanager
    def collective_failures(self):
        """Reports a collective operation that failed because another process was lost
        as a `PeerLostError` (with several processes; otherwise nothing changes)."""
        try:
            yield
        except Exception as error:
            if self.num_processes == 1 or not peer_failure(error):
                raise
            raise peer_lost_error(error, self.process_index, self.num_processes) from error


@contextlib.contextmanager
def without_distribution():
    """Switches the global Keras (JAX) distribution off for the block.

    Variables made in the block stay on this process (Keras makes helper variables while
    saving, for example); reading a replicated variable reads this process's copy. With
    the distribution on, making one is a collective operation across all processes.
    """
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(previous)


def _tensorflow_devices() -> list[str]:
    import tensorflow as tf

    accelerators = tf.config.list_logical_devices("GPU")
    return [device.name for device in accelerators or tf.config.list_logical_devices("CPU")]


_MULTI_WORKER: dict[str, Any] = {}  # the one multi-worker set-up of this process


def _multi_worker(backend: str, cluster: ClusterSettings) -> Distribution:
    if _MULTI_WORKER:
        if _MULTI_WORKER["cluster"] != cluster:
            raise ValueError(f"this process already joined a multi-worker run with "
                             f"{_MULTI_WORKER['cluster']}; a process joins one run only")
        return _MULTI_WORKER["distribution"]
    if backend == "jax":
        import jax

        process_index, num_processes = initialize_jax(cluster)
        devices = jax.devices()  # every process's devices, process 0's first
        # Each process feeds its own block of every global batch (`Distribution.input`).
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
        distribution = Distribution("multi_worker", len(devices), None, num_processes,
                                    process_index)
    else:
        strategy = tensorflow_strategy(cluster)
        resolver = strategy.cluster_resolver
        distribution = Distribution("multi_worker", strategy.num_replicas_in_sync, strategy,
                                    resolver.cluster_spec().num_tasks("worker"),
                                    resolver.task_id)
    _MULTI_WORKER.update(cluster=cluster, distribution=distribution)
    return distribution


def setup_distribution(distribute: str | None,
                       cluster: ClusterSettings | None = None) -> Distribution:
    """Sets up the devices of a run (call before building the model, and under JAX before
    anything else uses JAX).

    JAX: installs `keras.distribution.DataParallel` globally. TensorFlow: a strategy;
    build the model inside `Distribution.scope()`. "multi_worker" joins the other
    processes first (`cluster`, see `training.cluster`); a process does that once, and
    later calls return the same `Distribution`.

    Raises:
        ValueError: for torch, an unknown `distribute`, cluster settings without
            "multi_worker", or a multi-worker set-up that fails.
    """
    if distribute is not None and distribute not in DISTRIBUTIONS:
        raise invalid("distribute", distribute,
                      "must be None, 'data_parallel' or 'multi_worker'")
    if cluster is not None and distribute != "multi_worker":
        raise ValueError(f"the cluster settings ({cluster}) apply to --distribute "
                         f"multi_worker only, not {distribute!r}")
    if distribute is None:
        return Distribution(None, 1)
    backend = keras.config.backend()
    if backend not in BACKENDS_WITH_DISTRIBUTION:
        raise ValueError(
            f"distribute: {distribute!r} is not supported with the {backend} backend (Keras "
            "has no distribution API for it); use KERAS_BACKEND=jax or tensorflow, which "
            "support 'data_parallel' and 'multi_worker', or train on one device")
    if distribute == "multi_worker":
        return _multi_worker(backend, ClusterSettings() if cluster is None else cluster)
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return Distribution(distribute, len(devices))
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy(_tensorflow_devices())
    return Distribution(distribute, strategy.num_replicas_in_sync, strategy)


def check_same_devices(saved_run_config: dict | None, distribution: Distribution) -> None:
    """A run resumes on the same number of devices in all (any split over processes).

    The device count sets the global batch, the learning rate and the steps per epoch.

    Raises:
        ValueError: the saved run trained on another number of devices.
    """
    if not saved_run_config:
        return
    saved = (saved_run_config.get("schedule") or {}).get("replicas")
    if saved is None or saved == distribution.num_replicas:
        return
    processes = (saved_run_config.get("environment") or {}).get("processes", 1)
    raise ValueError(
        f"this run folder was trained on {saved} devices in all ({processes} process(es)), "
        f"but this start has {distribution.num_replicas} over {distribution.num_processes} "
        "process(es). The device count sets the global batch, the learning-rate schedule "
        f"and the steps per epoch, so a run resumes on {saved} devices in all, split over "
        "any number of processes; or start afresh in another --output_dir")
