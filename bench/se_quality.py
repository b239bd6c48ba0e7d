"""Speech-enhancement quality on real noisy speech: wide-band PESQ and SI-SDR of the
VoiceBank+DEMAND samples (noisy, each usable back-end, and the CMGAN authors' own outputs)
against the clean references. Reference values (README of the samples): noisy 2.19,
CMGAN 3.52, DeepFilterNet3 2.88. (Speed: bench/enhance.py.)

    python bench/se_quality.py [--data ../shared/data/vbd-samples] [--se dfn3 spectral]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from pesq import pesq

from trnet import enhance
from trnet.audio import load_audio
from trnet.enhance.metrics import si_sdr

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "vbd-samples"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--se", nargs="*", help="back-ends to run (default: all usable but identity)")
    args = p.parse_args()
    clean_dir = args.data / "clean"
    if not clean_dir.is_dir():
        print(f"no samples at {args.data}", file=sys.stderr)
        return 2
    names = args.se if args.se is not None else [n for n in enhance.available() if n != "identity"]
    files = sorted(clean_dir.glob("*.wav"))
    clean = [load_audio(f) for f in files]
    noisy = [load_audio(args.data / "noisy" / f.name) for f in files]
    systems: dict[str, list[np.ndarray]] = {"noisy": noisy}
    seconds = sum(len(x) for x in noisy) / 16_000
    for name in names:
        se = enhance.load(name)
        systems[name] = [se.enhance(torch.from_numpy(x)[None])[0].numpy() for x in noisy]
    if (args.data / "CMGAN").is_dir():
        systems["CMGAN outputs (authors)"] = [load_audio(args.data / "CMGAN" / f.name) for f in files]

    print(f"{len(files)} utterances, {seconds:.1f} s, {args.data}")
    print(f"{'system':<26} {'PESQ-WB':>8} {'SI-SDR dB':>10}")
    for name, outs in systems.items():
        pq = np.mean([pesq(16_000, c, o, "wb") for c, o in zip(clean, outs, strict=False)])
        sd = np.mean([si_sdr(o, c) for c, o in zip(clean, outs, strict=False)])
        print(f"{name:<26} {pq:>8.2f} {sd:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
