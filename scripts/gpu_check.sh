#!/usr/bin/env bash
# The prepared device check of issue 15: at most 10 minutes on one GPU (every part runs under
# `timeout`; together they stay below 600 s). Prints the device, then times
#   (b) the exact k-NN density, 50k x 128, k = 400: torch on the GPU vs the NumPy path (sums compared),
#   (c) FixMatch WRN-28-2 steps/s, batch 64 + 448, AMP, on CIFAR-10 built from ../shared/data/cifar10/,
#   (a) USL selection on 1.28M x 128 synthetic features, ImageNet preset: GPU vs the CPU path,
# and writes the markdown table to $OUT/gpu_check.md (default results/gpu_check/).
#
#   scripts/gpu_check.sh                 # on the GPU machine, in an environment with '.[gpu]' installed
#   scripts/gpu_check.sh --cpu-smoke     # the same code at tiny sizes on the CPU (tests/test_gpu_check.py)
#
# Environment: PYTHON (default python3), OUT (default results/gpu_check), CIFAR_ROOT (a folder that
# already holds cifar-10-batches-py/; default: built under $OUT), SHARED_CIFAR (the folder of
# build_cifar10.py; default ../shared/data/cifar10 or shared/data/cifar10).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-results/gpu_check}
SMOKE=()
if [ "${1:-}" = "--cpu-smoke" ]; then SMOKE=(--cpu-smoke); fi
EXTRA=()
if [ -n "${CIFAR_ROOT:-}" ]; then EXTRA+=(--cifar-root "$CIFAR_ROOT"); fi
if [ -n "${SHARED_CIFAR:-}" ]; then EXTRA+=(--shared-cifar "$SHARED_CIFAR"); fi
mkdir -p "$OUT"
rm -f "$OUT"/{device,density,fixmatch,selection}.json "$OUT/gpu_check.md"

# part, seconds: 30 + 90 + 200 + 260 = 580 s, plus the table
run_part() {
    local part=$1 seconds=$2 extra=()
    if [ "$part" = fixmatch ]; then extra=("${EXTRA[@]}"); fi
    echo "== $part (at most ${seconds} s)"
    timeout --kill-after=5 "$seconds" "$PYTHON" -m uslbench.gpu_check "$part" --out "$OUT" "${SMOKE[@]}" "${extra[@]}" \
        >"$OUT/$part.log" 2>&1
    local rc=$?
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then echo "   timed out after ${seconds} s (kept what it had measured)"
    elif [ $rc -ne 0 ]; then echo "   failed (exit $rc): last lines of $OUT/$part.log:"; tail -5 "$OUT/$part.log"
    fi
    return 0
}

run_part device 30
cat "$OUT/device.json" 2>/dev/null
run_part density 90
run_part fixmatch 200
run_part selection 260
"$PYTHON" -m uslbench.gpu_check table --out "$OUT"
