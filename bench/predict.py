"""End-to-end real-time factor of `trnet predict` on ONE CPU thread, per stage.

    python bench/predict.py [--se dfn3 dfn3-libdf spectral] [--seconds 5 60] [--repeats 3] [--width 32]
    python bench/predict.py --rss --se dfn3 --seconds 600 3600     # peak memory of `trnet predict`

Input: a 44.1 kHz stereo 16-bit wav of speech-like audio in noise (so load/resample does real
work). Model: the TRNet config (ResNet encoder) with RANDOM weights; inference cost does not
depend on the weights. Stages as in trnet.predict: load/resample (read, mix down, soxr to 16 kHz),
SE (whole input), features (LMFB of X and X_e per window), model (windows of 5 s, hop 2.5 s).
dfn3-libdf runs without its prefetch thread, so its state creation (~0.3 s per input) is counted.
RTF = wall-clock processing time / audio duration (lower is faster), median of the repeats;
CPU RTF uses the process's CPU time instead, which other load on a shared machine inflates less.
With --rss, each input is predicted once by `trnet predict` in a fresh process instead, and its
peak resident memory (VmHWM of that process, which starts afresh at exec; not getrusage's
ru_maxrss, which on Linux carries the high-water mark of the process that forked it) is
reported with its times: the input is streamed, so the peak should not grow with the input's
length.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy/torch load
    os.environ[_var] = "1"

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from trnet import enhance  # noqa: E402
from trnet.bundle.measure import PEAK  # noqa: E402
from trnet.corpora import LABELS  # noqa: E402
from trnet.models import SERSystem, load_config  # noqa: E402
from trnet.predict import load  # noqa: E402
from trnet.runs import save_weights, write_config, write_finished  # noqa: E402

STAGES = ("load", "SE", "features", "model")
SE_OPTIONS = {"dfn3-libdf": {"prefetch": False}}  # one thread: no background state creation


def random_run(root: Path, se: str, width: int, encoder: str) -> Path:
    """A run directory (trainer format) holding a randomly initialised TRNet system, marked
    finished (predict refuses unfinished runs; the cost does not depend on the weights)."""
    cfg = replace(load_config("trnet"), width=width, encoder=encoder)
    torch.manual_seed(0)
    out = root / f"trnet-{se}"
    save_weights(out / "best.safetensors", SERSystem(cfg))
    config = {"system": asdict(cfg), "labels": list(LABELS), **enhance.spec(se, SE_OPTIONS.get(se, {})).to_fields()}
    write_config(out, config)
    write_finished(out, {"epoch": 0, "epochs_run": 0, "val_uar": 0.0, "note": "random weights (bench/predict.py)"})
    return out


def test_audio(path: Path, seconds: float, sr: int = 44_100) -> Path:
    """Harmonic, amplitude-modulated 'speech' plus noise at about 10 dB SNR, stereo; written a
    minute at a time, so that an hour of it never sits in this process's memory."""
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    n, block, phase0 = int(seconds * sr), 60 * sr, 0.0
    with sf.SoundFile(path, "w", sr, 2, subtype="PCM_16") as f:
        for start in range(0, n, block):
            t = np.arange(start, min(n, start + block)) / sr
            phase = phase0 + 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 0.5 * t)) / sr
            phase0 = float(phase[-1])
            speech = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
            speech *= 0.3 / 2.5  # peak ~0.3 (the harmonic sum peaks near 2.5)
            noisy = speech + rng.standard_normal(len(t)) * np.sqrt(np.mean(speech**2) / 10)
            f.write(np.stack([noisy, 0.8 * noisy], 1))
    return path


def peak_rss(run: Path, audio: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of `trnet predict AUDIO --model RUN --csv` in a fresh process;
    the process reports its own VmHWM at exit (trnet.bundle.measure.print_peak)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = (
        "import atexit, sys\nfrom trnet.bundle.measure import print_peak\nfrom trnet.cli import main\n"
        "atexit.register(print_peak)\nsys.exit(main(sys.argv[1:]))"
    )
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "predict", str(audio), "--model", str(run), "--csv"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    err = proc.stderr.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"trnet predict failed: {err[-2000:]}")
    peak = [float(line.split()[1]) for line in err.splitlines() if line.startswith(PEAK)]
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime, peak[-1]


def rss_table(args: argparse.Namespace, root: Path) -> None:
    print(
        f"trnet predict in a fresh process per input (44.1 kHz stereo wav), TRNet {args.encoder} width "
        f"{args.width} (random weights), torch {torch.__version__}"
    )
    print(f"{'SE':<9}{'input':>9}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
    for se in args.se:
        reason = enhance.unavailable_reason(se)
        if reason is not None:
            print(f"{se:<9}skipped: {reason}")
            continue
        run = random_run(root, se, args.width, args.encoder)
        for seconds in args.seconds:
            wall, cpu, rss = peak_rss(run, test_audio(root / f"in{seconds:g}.wav", seconds))
            print(f"{se:<9}{seconds:>8g}s{wall:>9.1f}{cpu:>9.1f}{rss:>14.0f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--se", nargs="+", default=["dfn3", "dfn3-libdf", "spectral"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[5.0, 60.0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--encoder", default="resnet", choices=["resnet", "cnn6"])
    ap.add_argument("--rss", action="store_true", help="peak memory of `trnet predict` per input instead")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    if args.rss:
        with tempfile.TemporaryDirectory() as tmp:
            rss_table(args, Path(tmp))
        return

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
