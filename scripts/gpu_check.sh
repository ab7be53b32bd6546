#!/usr/bin/env bash
# The prepared device check of issue 15: at most 10 minutes on one GPU (every part runs under
# `timeout`; together they stay below 600 s). Prints the device, then times
#   (b) the exact k-NN density, 50k x 128, k = 400: torch on the GPU vs the NumPy path (sums compared),
#   (c) FixMatch WRN-28-2 steps/s, batch 64 + 448, AMP, on CIFAR-10 built from ../shared/data/cifar10/,
#   (a) USL selection on 1.28M x 128 synthetic features, ImageNet preset: GPU vs the CPU path,
# and writes $GPU_CHECK_OUT/gpu_check.md (default results/gpu_check/) beside one JSON file per part
# and one log: six files in all.
#
#   scripts/gpu_check.sh                 # on a GPU machine, in an environment with '.[gpu]' installed
#   scripts/gpu_check.sh --cpu-smoke     # the same code at tiny sizes on the CPU (tests/test_gpu_check.py)
#
# Environment: PYTHON (default python3), GPU_CHECK_OUT (default results/gpu_check), CIFAR_ROOT (where
# CIFAR-10 is built, or a folder already holding cifar-10-batches-py/; default results/gpu_check_data),
# SHARED_CIFAR (the folder of build_cifar10.py and its JPEG archive; default ../shared/data/cifar10 or
# shared/data/cifar10).
#
# On a lent device machine whose python3 has torch but no faiss: faiss-gpu cannot travel there (its
# wheel is 135 MB, plus about 600 MB of CUDA 12 libraries); carry a faiss-cpu wheel (19 MB) and the
# CIFAR-10 JPEG folder (19 MB), and the table then says "faiss GPU False" for (a): the torch kernels
# run on the GPU, faiss on the CPU. Prepared here, in the repository root:
#   echo /.whl/ >> .git/info/exclude; echo /.cifar/ >> .git/info/exclude; cp -r ../shared/data/cifar10 .cifar
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl faiss-cpu==1.15.1
# and run there (carry .whl and .cifar):
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site;
#   GPU_CHECK_OUT=$OUT SHARED_CIFAR=.cifar scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT_DIR=${GPU_CHECK_OUT:-results/gpu_check}
CIFAR=${CIFAR_ROOT:-results/gpu_check_data}
SMOKE=()
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=(--cpu-smoke); fi
SHARED=()
if [ -n "${SHARED_CIFAR:-}" ]; then SHARED=(--shared-cifar "$SHARED_CIFAR"); fi
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
rm -f "$OUT_DIR"/{device,density,fixmatch,selection}.json "$OUT_DIR/gpu_check.md" "$LOG"
export PYTHONUNBUFFERED=1

# part, seconds: 30 + 90 + 200 + 260 = 580 s, plus the table
run_part() {
    local part=$1 seconds=$2 extra=()
    if [ "$part" = fixmatch ]; then extra=(--cifar-root "$CIFAR" "${SHARED[@]}"); fi
    echo "== $part (at most ${seconds} s)"
    echo "== $part" >>"$LOG"
    timeout --kill-after=5 "$seconds" "$PYTHON" -m uslbench.gpu_check "$part" --out "$OUT_DIR" "${SMOKE[@]}" \
        "${extra[@]}" >>"$LOG" 2>&1
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "   timed out after ${seconds} s (kept what it had measured)"
    elif [ $rc -ne 0 ]; then echo "   failed (exit $rc): last lines of $LOG:"; tail -5 "$LOG"
    fi
    return 0
}

run_part device 30
cat "$OUT_DIR/device.json" 2>/dev/null
run_part density 90
run_part fixmatch 200
run_part selection 260
"$PYTHON" -m uslbench.gpu_check table --out "$OUT_DIR"
