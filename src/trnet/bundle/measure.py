"""Stage 7 of `trnet bundle`: what the bundled model costs at inference, for the model card.

For each input length (5 s and 60 s), a fresh process on ONE thread loads the bundle, warms
up on 2 s of audio, and predicts the input `REPEATS` times; it reports the real-time factor
(wall and CPU seconds per second of audio, medians; SE, features and model, as
`bench/predict.py` does) and its peak resident memory (VmHWM of that process). Then the
start-up a user sees: `trnet predict INPUT --model BUNDLE` on the 5 s input as a whole
process, wall time included import, model load, SE and printing. The input is a 44.1 kHz
stereo wav of harmonic, amplitude-modulated "speech" in noise, so that reading and
resampling do real work. Results are cached in results/measure.json, keyed by the
weights' SHA-256 and the trnet version.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from trnet.predict import load
from trnet.pretrained import read_manifest
from trnet.utils import write_json_atomic

VERSION = 2  # 2: peak memory from the child's VmHWM
SECONDS = (5.0, 60.0)
REPEATS = 3
PEAK = "trnet-peak-memory-mib"
# `trnet predict` as a user runs it, reporting its peak memory when it exits
CLI = (
    "import atexit, sys; from trnet.bundle.measure import print_peak; atexit.register(print_peak); "
    "from trnet.cli import main; sys.exit(main(sys.argv[1:]))"
)
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def test_audio(path: Path, seconds: float, sr: int = 44_100) -> Path:
    """Speech-like audio in noise at about 10 dB SNR, stereo 16-bit (as bench/predict.py)."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(130 + 40 * np.sin(2 * np.pi * 0.5 * t)) / sr
    speech = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t) ** 2)
    speech *= 0.3 / 2.5
    noisy = speech + rng.standard_normal(len(t)) * np.sqrt(np.mean(speech**2) / 10)
    tmp = path.with_name(f".{path.name}.tmp.wav")
    sf.write(tmp, np.stack([noisy, 0.8 * noisy], 1), sr, subtype="PCM_16")
    os.replace(tmp, path)
    return path


def _child(bundle: str, audio: str, warmup: str) -> None:
    """In the measuring process: one thread, load, warm up, predict REPEATS times."""
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    t0 = time.perf_counter()
    model = load(bundle)
    load_s = time.perf_counter() - t0
    model.predict_file(warmup)
    seconds = sf.info(audio).duration
    wall, cpu = [], []
    for _ in range(REPEATS):
        w0, c0 = time.perf_counter(), time.process_time()
        model.predict_file(audio)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "load_s": load_s,
                "rtf_wall": float(np.median(wall)) / seconds,
                "rtf_cpu": float(np.median(cpu)) / seconds,
            }
        )
    )
    print_peak()


def peak_mib() -> float:
    """This process's peak resident memory (MiB): VmHWM, which starts afresh at exec. Not
    getrusage's ru_maxrss, which on Linux keeps the high-water mark of the process that
    forked it (a child of a 2 GB process would report 2 GB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: kilobytes on most systems


def print_peak() -> None:
    print(f"{PEAK} {peak_mib():.1f}", file=sys.stderr, flush=True)


def measure_bundle(bundle: Path, cache: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """RTF and peak memory per input length, and the whole-process `trnet predict` time."""
    manifest = read_manifest(bundle)
    key = {
        "weights": manifest["files"]["best.safetensors"]["sha256"],
        "trnet": version("trnet"),
        "seconds": list(SECONDS),
        "repeats": REPEATS,
        "version": VERSION,
    }
    if cache.is_file():
        done = json.loads(cache.read_text())
        if done.get("key") == key:
            log("measure: measured before")
            return done
    inputs = cache.parent / "measure-inputs"
    warmup = test_audio(inputs / "warmup.wav", 2.0)
    rows = []
    for seconds in SECONDS:
        audio = test_audio(inputs / f"in{seconds:g}.wav", seconds)
        cmd = [
            sys.executable,
            "-c",
            "import sys; from trnet.bundle.measure import _child; _child(*sys.argv[1:])",
            str(bundle),
            str(audio),
            str(warmup),
        ]
        out, _, rss = _child_usage(cmd)
        row = {**json.loads(out.strip().splitlines()[-1]), "peak_rss_mib": rss}
        rows.append(row)
        log(
            f"measure: {seconds:g} s input: RTF {row['rtf_wall']:.4f} wall, {row['rtf_cpu']:.4f} CPU (one thread), "
            f"peak memory {rss:.0f} MiB"
        )
    cli = [sys.executable, "-c", CLI, "predict", str(inputs / "in5.wav"), "--model", str(bundle)]
    _, wall, rss = _child_usage(cli)
    log(f"measure: `trnet predict` on the 5 s input, whole process: {wall:.1f} s wall, peak memory {rss:.0f} MiB")
    done = {
        "key": key,
        "inputs": rows,
        "predict_cli": {"seconds": 5.0, "wall_s": wall, "peak_rss_mib": rss},
        "cpu": _cpu_name(),
        "se": manifest.get("se"),
    }
    write_json_atomic(cache, done)
    return done


def _child_usage(cmd: list[str]) -> tuple[str, float, float]:
    """stdout, wall seconds and peak memory (MiB, the child's own report) of a fresh
    one-thread process."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=errors, env={**os.environ, **ONE_THREAD})
        wall = time.perf_counter() - start
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"measuring failed ({' '.join(cmd[2:5])}): {err[-800:]}")
    peak = [float(line.split()[1]) for line in err.splitlines() if line.startswith(PEAK)]
    return proc.stdout.decode(), wall, peak[-1] if peak else float("nan")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"
