"""End-to-end real-time factor of `trnet predict` on ONE CPU thread, per stage.

    python bench/predict.py [--se dfn3 dfn3-libdf spectral] [--seconds 5 60] [--repeats 3] [--width 32]

Input: a 44.1 kHz stereo 16-bit wav of speech-like audio in noise (so load/resample does real
work). Model: the TRNet config (ResNet encoder) with RANDOM weights; inference cost does not
depend on the weights. Stages as in trnet.predict: load/resample (read, mix down, soxr to 16 kHz),
SE (whole input), features (LMFB of X and X_e per window), model (windows of 5 s, hop 2.5 s).
dfn3-libdf runs without its prefetch thread, so its state creation (~0.3 s per input) is counted.
RTF = wall-clock processing time / audio duration (lower is faster), median of the repeats;
CPU RTF uses the process's CPU time instead, which other load on a shared machine inflates less.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch load
    os.environ[_var] = "1"

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from trnet import enhance  # noqa: E402
from trnet.corpora import LABELS  # noqa: E402
from trnet.models import SERSystem, load_config  # noqa: E402
from trnet.predict import load  # noqa: E402
from trnet.runs import save_weights, write_config  # noqa: E402

STAGES = ("load", "SE", "features", "model")
SE_OPTIONS = {"dfn3-libdf": {"prefetch": False}}  # one thread: no background state creation


def random_run(root: Path, se: str, width: int, encoder: str) -> Path:
    """A run directory (trainer format) holding a randomly initialised TRNet system."""
    cfg = replace(load_config("trnet"), width=width, encoder=encoder)
    torch.manual_seed(0)
    out = root / f"trnet-{se}"
    save_weights(out / "best.safetensors", SERSystem(cfg))
    config = {"system": asdict(cfg), "labels": list(LABELS), "se": se, "se_options": SE_OPTIONS.get(se, {})}
    write_config(out, config)
    return out


def test_audio(path: Path, seconds: float, sr: int = 44_100) -> Path:
    """Harmonic, amplitude-modulated 'speech' plus noise at about 10 dB SNR, stereo."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 0.5 * t)) / sr
    speech = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    speech *= 0.3 / np.abs(speech).max()
    noisy = speech + rng.standard_normal(len(t)) * np.sqrt(np.mean(speech**2) / 10)
    sf.write(path, np.stack([noisy, 0.8 * noisy], 1), sr, subtype="PCM_16")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--se", nargs="+", default=["dfn3", "dfn3-libdf", "spectral"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[5.0, 60.0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--encoder", default="resnet", choices=["resnet", "cnn6"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

    print(
        f"trnet predict, 1 CPU thread, TRNet {args.encoder} width {args.width} (random weights), "
        f"torch {torch.__version__}"
    )
    stages = "".join(f"{s + ' ms':>12}" for s in STAGES)
    header = f"{'SE':<9}{'input':>7}{stages}{'total ms':>12}{'RTF':>8}{'CPU RTF':>9}  per-stage RTF"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for se in args.se:
            reason = enhance.unavailable_reason(se)
            if reason is not None:
                print(f"{se:<9}skipped: {reason}")
                continue
            with load(random_run(root, se, args.width, args.encoder)) as model:
                model.predict_file(test_audio(root / "warmup.wav", 2.0))  # libraries, allocators, caches
                for seconds in args.seconds:
                    path = test_audio(root / f"in{seconds:g}.wav", seconds)
                    runs, cpu = [], []
                    for _ in range(args.repeats):
                        timings: dict[str, float] = {}
                        start = time.process_time()
                        model.predict_file(path, timings)
                        cpu.append(time.process_time() - start)
                        runs.append(timings)
                    median = {s: float(np.median([r.get(s, 0.0) for r in runs])) for s in STAGES}
                    total = float(np.median([sum(r.values()) for r in runs]))
                    cells = "".join(f"{1e3 * median[s]:>12.1f}" for s in STAGES)
                    shares = " ".join(f"{s} {median[s] / seconds:.4f}" for s in STAGES)
                    rtf, cpu_rtf = total / seconds, float(np.median(cpu)) / seconds
                    print(f"{se:<9}{seconds:>6g}s{cells}{1e3 * total:>12.1f}{rtf:>8.4f}{cpu_rtf:>9.4f}  {shares}")


if __name__ == "__main__":
    main()
