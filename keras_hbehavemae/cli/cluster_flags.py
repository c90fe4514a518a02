"""The multi-process flags of `hbehavemae pretrain` (`--distribute multi_worker`).

Under JAX every process gets `--coordinator_address HOST:PORT --num_processes N
--process_id I` (or none of them, when srun or mpirun starts the processes and JAX reads
its cluster environment); under TensorFlow `TF_CONFIG` describes the workers. See
`keras_hbehavemae.training.cluster` and the README, "Training on several GPUs or machines".
"""

from __future__ import annotations

import os
import sys

from absl import flags

#: The flags that apply to `--distribute multi_worker` only.
CLUSTER_FLAGS = ("coordinator_address", "num_processes", "process_id", "startup_timeout")


def define_cluster_flags(flag_values: flags.FlagValues) -> None:
    """Defines `--distribute` and the cluster flags on `flag_values`."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_enum("distribute", "none", ["none", "data_parallel", "multi_worker"],
                      "Data parallelism (JAX, TensorFlow): data_parallel over the local "
                      "devices, multi_worker over the devices of several processes.", **fv)
    flags.DEFINE_string("coordinator_address", None, "multi_worker, JAX: HOST:PORT of process "
                        "0 (default: from SLURM/Open MPI or JAX_COORDINATOR_ADDRESS).", **fv)
    flags.DEFINE_integer("num_processes", None, "multi_worker, JAX: number of processes "
                         "(default: from the cluster environment).", **fv)
    flags.DEFINE_integer("process_id", None, "multi_worker, JAX: this process's id, 0 .. "
                         "num_processes-1; process 0 writes the run folder (default: from the "
                         "cluster environment).", **fv)
    flags.DEFINE_integer("startup_timeout", 300, "multi_worker: seconds to wait for all "
                         "processes to start.", lower_bound=1, **fv)


def cluster_settings(flag_values):
    """The `ClusterSettings` of `--distribute multi_worker`, else None.

    Raises:
        ValueError: a cluster flag without `--distribute multi_worker`.
    """
    given = [name for name in CLUSTER_FLAGS if flag_values[name].present]
    if flag_values.distribute != "multi_worker":
        if given:
            raise ValueError(f"--{given[0]} applies to --distribute multi_worker only")
        return None
    from keras_hbehavemae.training import ClusterSettings

    return ClusterSettings(coordinator_address=flag_values.coordinator_address,
                           num_processes=flag_values.num_processes,
                           process_id=flag_values.process_id,
                           startup_timeout=flag_values.startup_timeout)


def leave_at_once(status: int) -> None:
    """Ends a process of a multi-worker run at once: at a normal exit the JAX runtime would
    wait for the other processes first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
