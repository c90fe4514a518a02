#!/usr/bin/env bash
# GPU check, one call on a GPU machine (one NVIDIA H100 or H200), at most 8 minutes. For each
# backend that is installed there:
#   1. parity: tests/test_parity.py (golden fixtures) in float32 at the highest matmul
#      precision (benchmarks/highest_precision.py: no TF32; the pytest header shows the
#      settings and a probe of the actual matmul error);
#   2. a short pretraining of the Shot7M2 configuration at batch 512, mixed_bfloat16 then
#      float32, same seed (benchmarks/train_speed.py --compare_precisions), printing
#      samples/s and the utilisation against the GPU's bfloat16 dense peak.
# A summary table follows. JSON results go to $OUT_DIR.
#
# Offline: it installs nothing and needs no network. It uses the frameworks the machine
# has and the package from this working tree (on PYTHONPATH). Python packages the machine
# lacks (keras, namex and optree on an image with only JAX and torch) can travel as wheels
# in $WHEELS (default .whl): they are unzipped (no pip) into a temporary folder on
# PYTHONPATH, removed at the end. A backend whose framework does not import is SKIPPED and
# named; without TensorFlow, train_speed.py feeds its batches from a Python generator
# instead of tf.data. Fetch the wheels where there is network, e.g.
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl keras==3.15.1 namex optree
#
#   bash benchmarks/gpu_check.sh                                  # GPU: full size
#   SIZE=tiny BACKENDS=jax bash benchmarks/gpu_check.sh            # CPU smoke run, tiny model
#
# Variables: SIZE (full|tiny), BACKENDS, PYTHON (default python3), WHEELS, PEAK_TFLOPS
# (dense bfloat16 peak of the GPU; H100 and H200 SXM: 989), BATCH, STEPS, WARMUP, CONFIG,
# TOTAL_BUDGET (seconds for the whole script), PARITY_TIMEOUT and TRAIN_TIMEOUT (per
# backend), OUT_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."

SIZE=${SIZE:-full}
BACKENDS=${BACKENDS:-"tensorflow jax torch"}
PEAK_TFLOPS=${PEAK_TFLOPS:-989}
OUT_DIR=${OUT_DIR:-runs/gpu_check}
case "${SIZE}" in
  full)
    CONFIG=${CONFIG:-shot7m2}; BATCH=${BATCH:-512}; STEPS=${STEPS:-10}; WARMUP=${WARMUP:-3}
    TOTAL_BUDGET=${TOTAL_BUDGET:-460}; PARITY_TIMEOUT=${PARITY_TIMEOUT:-60}
    TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-90}
    PARITY_SELECT=()
    REQUIRE=(--require_accelerator)  # e.g. tensorflow-cpu: do not train at batch 512 on the host
    ;;
  tiny)
    CONFIG=${CONFIG:-tiny}; BATCH=${BATCH:-8}; STEPS=${STEPS:-3}; WARMUP=${WARMUP:-1}
    TOTAL_BUDGET=${TOTAL_BUDGET:-1800}; PARITY_TIMEOUT=${PARITY_TIMEOUT:-300}
    TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-600}
    # One fixture, forward passes and loss only: the CPU run checks the plumbing.
    PARITY_SELECT=(-k "tiny_single and (masked_pass or targets_and_loss)")
    REQUIRE=()
    ;;
  *) echo "SIZE must be full or tiny, got ${SIZE}" >&2; exit 2 ;;
esac
mkdir -p "${OUT_DIR}"
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
WHEELS=${WHEELS:-.whl}
SITE=""
if compgen -G "${WHEELS}/*.whl" >/dev/null; then
  # Carried wheels: unzipped into a temporary folder; nothing is installed.
  SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")
  trap 'rm -rf "${SITE}"' EXIT
  "${PYTHON}" -c 'import sys, zipfile
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
    print("gpu_check: carried wheel", wheel.rsplit("/", 1)[-1])' "${SITE}" "${WHEELS}"/*.whl
fi
export PYTHONPATH="${PWD}:${PWD}/benchmarks${SITE:+:${SITE}}${PYTHONPATH:+:${PYTHONPATH}}"
start_time=${SECONDS}
status=0
ran=0

# Succeeds if keras and the framework of backend $1 import; otherwise prints why not.
importable() {
  KERAS_BACKEND=$1 "${PYTHON}" -c 'import importlib, sys
for name in ("keras", sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as error:
        sys.exit(f"{name}: {type(error).__name__}: {error}")' "$1" 2>&1 | tail -n 1
  return "${PIPESTATUS[0]}"
}

NOISE=(-e "^WARNING" -e "^I0000" -e "^W0000" -e "^To enable" -e "UserWarning"
       -e "data_adapter")

# Runs "$@" with a time limit of min($1, what is left of TOTAL_BUDGET), its output filtered
# of start-up noise; records a failure, a timeout or a skip in $status.
limited() {
  local limit=$1; shift
  local left=$(( TOTAL_BUDGET - (SECONDS - start_time) ))
  (( left < limit )) && limit=${left}
  if (( limit < 15 )); then
    echo "SKIPPED: only ${left} s of the ${TOTAL_BUDGET} s budget left"
    status=1
    return 0
  fi
  timeout --kill-after=5 "${limit}" "$@" 2>&1 | grep --line-buffered -v "${NOISE[@]}"
  local rc=${PIPESTATUS[0]}
  if (( rc == 124 || rc == 137 )); then
    echo "TIMEOUT after ${limit} s: $*"
    status=1
  elif (( rc != 0 )); then
    echo "FAILED (exit ${rc}): $*"
    status=1
  fi
}

echo "gpu_check: SIZE=${SIZE} CONFIG=${CONFIG} BATCH=${BATCH} STEPS=${STEPS}+${WARMUP} warm-up"
echo "gpu_check: backends ${BACKENDS}; bfloat16 dense peak ${PEAK_TFLOPS} TFLOP/s"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader

for backend in ${BACKENDS}; do
  if ! why=$(importable "${backend}"); then
    echo "=== ${backend}: SKIPPED: not installed here (${why})"
    continue
  fi
  ran=$(( ran + 1 ))
  echo "=== ${backend}: parity, float32 at highest matmul precision ($(( SECONDS - start_time )) s)"
  KERAS_BACKEND=${backend} NVIDIA_TF32_OVERRIDE=0 JAX_DEFAULT_MATMUL_PRECISION=highest \
    limited "${PARITY_TIMEOUT}" "${PYTHON}" -m pytest -p highest_precision -p no:cacheprovider \
    -o addopts="" -W ignore::DeprecationWarning tests/test_parity.py "${PARITY_SELECT[@]}"

  echo "=== ${backend}: pretraining ${CONFIG}, batch ${BATCH}, mixed_bfloat16 then float32" \
       "($(( SECONDS - start_time )) s)"
  KERAS_BACKEND=${backend} limited "${TRAIN_TIMEOUT}" "${PYTHON}" benchmarks/train_speed.py \
    --config "${CONFIG}" --batch_size "${BATCH}" --steps "${STEPS}" \
    --warmup_steps "${WARMUP}" --compare_precisions --device_peak_tflops "${PEAK_TFLOPS}" \
    --output "${OUT_DIR}/train_${backend}.json" "${REQUIRE[@]}"
done

echo "=== summary ($(( SECONDS - start_time )) s)"
"${PYTHON}" - "${OUT_DIR}" ${BACKENDS} <<'EOF'
import json
import pathlib
import sys

folder, backends = pathlib.Path(sys.argv[1]), sys.argv[2:]
print(f"{'backend':10s} {'precision':15s} {'samples/s':>10s} {'GFLOP/s':>10s} "
      f"{'utilisation':>11s} {'loss diff':>9s}")
for backend in backends:
    path = folder / f"train_{backend}.json"
    if not path.exists():
        print(f"{backend:10s} no result")
        continue
    result = json.loads(path.read_text())
    difference = result.get("loss_comparison", {}).get("max_step_relative_difference")
    for run in result.get("runs", [result]):
        utilisation = run.get("device_utilisation")
        print(f"{backend:10s} {run['precision']:15s} {run['samples_per_second']:10.1f} "
              f"{run['achieved_gflops']:10.1f} "
              f"{'' if utilisation is None else f'{utilisation:.2%}':>11s} "
              f"{'' if difference is None else f'{difference:.2%}':>9s}")
EOF
if (( ran == 0 )); then
  echo "gpu_check: none of the backends '${BACKENDS}' is installed here"
  status=1
fi
exit ${status}
