#!/usr/bin/env bash
# The study in one call (docs/gpu.md): a declared grid of the study's shape (Baseline-c, Baseline-n
# and TRNet x every EmoDB fold x 4 seeds = 120 runs, the study's recipe, width 16, 8 epochs) trained
# and evaluated on the stacked trainer's fast path; at most 9 minutes on one H100/H200. Run it in
# the repository root, with .gpu/ filled by bench/gpu_pack.sh (which also measures the CPU
# references of width 16 and 32, .gpu/cpu-reference-w16.txt and -w32.txt):
#
#   bash bench/gpu_study.sh                        # -> $OUT/gpu-study.txt (default ./gpu-study/)
#   WIDTH=32 bash bench/gpu_study.sh               # the study's other width
#   COMPILE=reduce-overhead bash bench/gpu_study.sh   # torch.compile the stacked step
#
# Without a GPU the same steps run on the CPU at a tiny size (tests/test_gpu_study.py does so):
#   TRNET_GPU_CHECK_DEVICE=cpu TRNET_GPU_STUDY_STORE=STORE TRNET_GPU_STUDY_REFERENCE=FILE \
#   TRNET_GPU_STUDY_NO_INSTALL=1 bash bench/gpu_study.sh
# (TRNET_GPU_STUDY_STORE: a store built beforehand, so no SE runs; TINY sizes: width 4, 2 epochs,
# 2 folds, 1 seed.) gpu-study.txt holds one `key = value` per line: device, runs, width, epochs,
# train_seconds, eval_seconds, gpu_runs_per_hour, cpu_runs_per_hour, ratio,
# max_abs_logit_diff_vs_fp32, peak_gpu_mib, and more.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu-study}
DEVICE=${TRNET_GPU_CHECK_DEVICE:-cuda}
SITE=${TRNET_GPU_CHECK_SITE:-/tmp/site}
PY=${PYTHON:-python3}
REFERENCE=${TRNET_GPU_STUDY_REFERENCE:-.gpu/cpu-reference-w${WIDTH:-16}.txt}
mkdir -p "$OUT"
RESULTS="$OUT/gpu-study.txt"
: > "$RESULTS"

if [ "${TRNET_GPU_STUDY_NO_INSTALL:-0}" != 1 ]; then  # the packed wheels, as bench/gpu_check.sh
    $PY -m pip install -q --no-index --no-deps --target "$SITE" .gpu/whl/*.whl ${TRNET_GPU_CHECK_PIP_ARGS:-} 2>&1 | tail -3
    VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
    mkdir -p "$SITE/trnet-$VERSION.dist-info"
    printf 'Metadata-Version: 2.1\nName: trnet\nVersion: %s\n' "$VERSION" > "$SITE/trnet-$VERSION.dist-info/METADATA"
    export PYTHONPATH="$SITE:$PWD/src"
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
echo "date = $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$RESULTS"
echo "commit = $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >> "$RESULTS"

if [ "$DEVICE" = cpu ]; then SIZE="--width 4 --epochs 2 --folds 2 --seeds 1 --drift-steps 3"
else SIZE="--width ${WIDTH:-16} --epochs ${EPOCHS:-8} --seeds ${SEEDS:-4}"; fi
STORE=${TRNET_GPU_STUDY_STORE:-}
if [ -z "$STORE" ]; then  # EmoDB + DEMAND at the five SNRs, DFN3 (torch) on the device
    timeout 120 $PY bench/gpu_study.py store --device "$DEVICE" --data .gpu --work "$OUT/work" \
        | tee -a "$RESULTS" || { echo "store_status = FAILED" >> "$RESULTS"; exit 1; }
    STORE="$OUT/work/store"
fi
timeout ${STUDY_LIMIT:-380} $PY bench/gpu_study.py study --device "$DEVICE" --store "$STORE" --work "$OUT/work" \
    --reference "$REFERENCE" $SIZE ${COMPILE:+--compile $COMPILE} 2> "$OUT/study.err" | tee -a "$RESULTS"
rc=${PIPESTATUS[0]}
[ $rc -eq 0 ] || echo "study_status = FAILED rc=$rc: $(tail -1 "$OUT/study.err")" | tee -a "$RESULTS"
echo "total_seconds = $SECONDS" >> "$RESULTS"
echo "results: $RESULTS"
exit $rc
