#!/bin/bash
# Pretraining on several machines with SLURM: one `hbehavemae pretrain` process per node,
# every one with all GPUs of its node, under JAX. srun starts the processes; JAX reads the
# coordinator, the process count and each process's id from the SLURM job step, so no
# cluster flag is needed. Process 0 writes RUN_DIR, which every node must see (a shared
# file system). Resubmitting the same script resumes the run (same node and GPU count).
#
#   sbatch examples/slurm_pretrain.sh
#
#SBATCH --job-name=hbehavemae
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@120
set -euo pipefail

RUN_DIR=${RUN_DIR:-$HOME/runs/mabe22}
DATA_DIR=${DATA_DIR:-$HOME/data/mabe}

# --batch_size is per device: 2 nodes x 4 GPUs x 96 = a global batch of 768, the
# published MABe22 recipe's. The learning rate is scaled by the global batch (blr x 768 / 256).
export KERAS_BACKEND=jax
srun hbehavemae pretrain --distribute multi_worker \
    --dataset mabe_mice --path_to_data_dir "$DATA_DIR" \
    --batch_size 96 --epochs 200 --output_dir "$RUN_DIR"

# TensorFlow instead: every task needs TF_CONFIG naming all workers and its own index,
# e.g. through a wrapper that srun runs once per task:
#   hosts=($(scontrol show hostnames "$SLURM_JOB_NODELIST"))
#   workers=$(printf '"%s:12400",' "${hosts[@]}"); workers="[${workers%,}]"
#   export TF_CONFIG="{\"cluster\": {\"worker\": $workers},
#                      \"task\": {\"type\": \"worker\", \"index\": $SLURM_PROCID}}"
#   KERAS_BACKEND=tensorflow hbehavemae pretrain --distribute multi_worker ...
