"""Several processes, one model: who they are, how they meet, and how a lost one is reported.

`ClusterSettings` describes this process's place in a multi-worker run
(`--distribute multi_worker`):

- JAX: `jax.distributed.initialize` with the coordinator address (process 0's host and a
  free port), the process count and this process's id. Whatever is not given, JAX takes
  from the cluster environment it detects itself: a SLURM job step (`srun`), Open MPI,
  or `JAX_COORDINATOR_ADDRESS`.
- TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` from `TF_CONFIG`, the
  standard TensorFlow cluster description (every worker's `host:port`, and this one's
  index). The JAX flags do not apply there.

Both start under a bounded wait (`startup_timeout`): a process whose peers never arrive
stops instead of hanging. When a process dies during training, the others' next
collective operation fails; `peer_failure` recognises those errors and `PeerLostError`
reports them.

Example:

>>> ClusterSettings(coordinator_address="127.0.0.1:12345", num_processes=2, process_id=0)
ClusterSettings(coordinator_address='127.0.0.1:12345', num_processes=2, process_id=0, \
startup_timeout=300, heartbeat_timeout=30)
>>> ClusterSettings(num_processes=2, process_id=2)
Traceback (most recent call last):
...
ValueError: process_id: 2 is invalid: must lie in [0, num_processes=2)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading

from keras_hbehavemae.errors import invalid


class PeerLostError(RuntimeError):
    """Another process of a multi-worker run stopped or cannot be reached."""


@dataclasses.dataclass(frozen=True)
class ClusterSettings:
    """This process's place in a multi-worker run.

    Args:
        coordinator_address: JAX: `host:port` of process 0's coordinator (None: from the
            cluster environment). Use an address every process can reach.
        num_processes: JAX: how many processes train together (None: from the environment).
        process_id: JAX: this process's id in [0, num_processes) (None: from the
            environment). Process 0 writes the run folder.
        startup_timeout: seconds to wait for all processes to join before giving up.
        heartbeat_timeout: JAX: seconds without a heartbeat after which a process counts as
            lost (TensorFlow uses its own, about 10 s).
    """

    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    startup_timeout: int = 300
    heartbeat_timeout: int = 30

    def __post_init__(self):
        for name in ("num_processes", "startup_timeout", "heartbeat_timeout"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise invalid(name, value, "must be a positive integer")
        if self.process_id is not None:
            if isinstance(self.process_id, bool) or not isinstance(self.process_id, int):
                raise invalid("process_id", self.process_id, "must be an integer >= 0")
            upper = self.num_processes
            if self.process_id < 0 or (upper is not None and self.process_id >= upper):
                raise invalid("process_id", self.process_id,
                              f"must lie in [0, num_processes={upper})")
        address = self.coordinator_address
        if address is not None and (not isinstance(address, str)
                                    or not address.rpartition(":")[2].isdigit()
                                    or not address.rpartition(":")[0]):
            raise invalid("coordinator_address", address, "must be HOST:PORT, e.g. "
                          "10.0.0.1:12345 (process 0's host)")

    @property
    def jax_arguments_given(self) -> bool:
        return any(value is not None for value in (
            self.coordinator_address, self.num_processes, self.process_id))


def initialize_jax(settings: ClusterSettings) -> tuple[int, int]:
    """Joins (or starts) the JAX distributed runtime; returns `(process_index, count)`.

    Raises:
        ValueError: JAX could not tell the coordinator, process count or id, or it was
            already used before this call.
    """
    import jax

    if not jax.distributed.is_initialized():
        try:
            jax.distributed.initialize(
                coordinator_address=settings.coordinator_address,
                num_processes=settings.num_processes, process_id=settings.process_id,
                initialization_timeout=settings.startup_timeout,
                heartbeat_timeout_seconds=settings.heartbeat_timeout,
                shutdown_timeout_seconds=settings.heartbeat_timeout)
        except (ValueError, TypeError) as error:
            raise ValueError(
                f"--distribute multi_worker (JAX): {error} Give --coordinator_address "
                "HOST:PORT (process 0's host), --num_processes and --process_id, or start "
                "the processes with srun (SLURM) or mpirun (Open MPI), or set "
                "JAX_COORDINATOR_ADDRESS") from None
        except RuntimeError as error:
            raise ValueError(
                f"--distribute multi_worker (JAX): {error} Set up the distribution before "
                "anything else uses JAX (`setup_distribution` first)") from None
    return jax.process_index(), jax.process_count()


def tensorflow_cluster() -> tuple[list[str], int]:
    """`(worker addresses, this worker's index)` from `TF_CONFIG`.

    Raises:
        ValueError: `TF_CONFIG` is missing or not a worker cluster.
    """
    text = os.environ.get("TF_CONFIG")
    example = ('e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12400", "host2:12400"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    if not text:
        raise ValueError("--distribute multi_worker (TensorFlow) needs TF_CONFIG, the "
                         f"description of the workers, in every process; {example}")
    try:
        config = json.loads(text)
        workers = list(config["cluster"]["worker"])
        task = config["task"]
        index = task["index"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"TF_CONFIG is invalid ({type(error).__name__}: {error}); {example}"
                         ) from None
    others = sorted(set(config["cluster"]) - {"worker"})
    if others or task.get("type") != "worker":
        raise ValueError(f"TF_CONFIG: only a cluster of 'worker' tasks is supported (got jobs "
                         f"{sorted(config['cluster'])}, task type {task.get('type')!r}); "
                         f"{example}")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(workers):
        raise ValueError(f"TF_CONFIG: task index {index!r} is invalid: it must lie in "
                         f"[0, {len(workers)})")
    return workers, index


@contextlib.contextmanager
def startup_alarm(seconds: int, what: str):
    """Ends the process (SIGALRM) if the block takes longer than `seconds`.

    For waits inside TensorFlow that nothing else interrupts: a worker whose peers never
    start waits in `MultiWorkerMirroredStrategy()` forever and ignores SIGTERM, and a
    Python-level timeout never gets to run there. Only in the main thread.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "SIGALRM"):
        yield
        return
    print(f"keras_hbehavemae: {what}; giving up after {seconds} s (--startup_timeout)",
          file=sys.stderr, flush=True)
    previous = signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def tensorflow_strategy(settings: ClusterSettings):
    """A `MultiWorkerMirroredStrategy` over the workers of `TF_CONFIG` (waits for them all).

    Raises:
        ValueError: JAX-only settings were given, or `TF_CONFIG` is missing or invalid.
    """
    if settings.jax_arguments_given:
        raise ValueError("--coordinator_address, --num_processes and --process_id are for "
                         "the JAX backend; under TensorFlow the workers come from TF_CONFIG")
    import tensorflow as tf

    workers, index = tensorflow_cluster()
    with startup_alarm(settings.startup_timeout,
                       f"worker {index} waits for the {len(workers)} workers of TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()


# Words in the errors that JAX (gloo, coordination service) and TensorFlow (collective ops)
# raise when another process stops during a collective operation.
_PEER_FAILURE_WORDS = ("gloo", "coordination service", "heartbeat", "connection closed by peer",
                       "connection reset by peer", "collective ops is aborted",
                       "failed to connect", "socket closed", "unavailable",
                       "deadline_exceeded", "deadline exceeded")


def peer_failure(error: BaseException) -> bool:
    """Whether `error` says that another process stopped or cannot be reached."""
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
                tf.errors.AbortedError, tf.errors.CancelledError)
        if isinstance(error, lost):
            return True
    text = str(error).lower()
    return any(word in text for word in _PEER_FAILURE_WORDS)


def peer_lost_error(error: BaseException, process_index: int, num_processes: int
                    ) -> PeerLostError:
    """The error that reports `error` (a failed collective operation) to the user."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    telling = [line for line in lines if any(word in line.lower() for word in _PEER_FAILURE_WORDS)]
    first_line = (telling or lines or [""])[0][:300]
    return PeerLostError(
        f"process {process_index} of {num_processes}: training stopped because another "
        f"process of this run stopped or cannot be reached ({type(error).__name__}: "
        f"{first_line}). See the other processes' logs for the cause. The run folder keeps "
        "the last completed epoch: start all processes again with the same command to "
        "resume.")
