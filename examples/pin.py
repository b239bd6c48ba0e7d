"""Pin what the bundled model says about the example clips (examples/pins.json), so that a
change in the model, the SE front-end, the features or the inference code that moves a
prediction is caught by tests/test_pretrained.py. Regenerate after the bundled model changes:

    python examples/pin.py                       # the bundled model -> examples/pins.json
    python examples/pin.py --model RUN --out F   # any model, any file
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

import trnet
from trnet.pretrained import is_bundle, read_manifest
from trnet.utils import sha256_file, write_json_atomic

HERE = Path(__file__).resolve().parent
PINS = HERE / "pins.json"


def clips(folder: Path = HERE) -> list[Path]:
    return sorted(folder.glob("*.flac"))


def predict_clips(model: str | None = None, folder: Path = HERE) -> dict[str, Any]:
    """{"model", "weights_sha256", "clips": {name: {label, probabilities, c}}} on one thread."""
    torch.set_num_threads(1)
    with trnet.load(model) as predictor:
        path = predictor.path
        out = {}
        for clip in clips(folder):
            p = predictor.predict_file(clip)
            out[clip.name] = {"label": p.label, "probabilities": p.probabilities, "c": p.c}
    name = read_manifest(path)["name"] if is_bundle(path) else str(path)
    weights = path / "best.safetensors" if path.is_dir() else path
    return {"model": name, "weights_sha256": sha256_file(weights), "clips": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="default: the bundled model")
    ap.add_argument("--out", type=Path, default=PINS)
    args = ap.parse_args()
    pins = predict_clips(args.model)
    write_json_atomic(args.out, pins)
    for name, p in pins["clips"].items():
        print(f"{name:<22} {p['label']:<8} " + " ".join(f"{k} {v:.3f}" for k, v in p["probabilities"].items()))
    print(f"wrote {args.out} ({pins['model']})")


if __name__ == "__main__":
    main()
