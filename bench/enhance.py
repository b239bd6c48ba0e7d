"""Real-time factor (processing time / audio duration) of every SE back-end on this machine,
with one thread and with the default thread count, on a 5 s segment of real speech.

    python bench/enhance.py [--seconds 5] [--repeats 3] [--se dfn3 spectral]

One thread: torch.set_num_threads(1), and dfn3 without state prefetching (its background
thread). Default: torch's default thread count and dfn3 with prefetching. When no CMGAN
checkpoint is configured, CMGAN is timed with random weights (same cost). RTF is wall
time (median of the repeats); the CPU column (process CPU seconds per 5 s of audio, all
threads) is the steadier number on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trnet import enhance
from trnet.audio import SAMPLE_RATE, load_audio

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb" / "wav"


def test_signal(seconds: float) -> torch.Tensor:
    """Real speech (EmoDB files joined) if the shared data is here, else coloured noise."""
    n = int(seconds * SAMPLE_RATE)
    files = sorted(EMODB.glob("*.wav"))
    if files:
        wave = np.concatenate([load_audio(f) for f in files[:6]])
        wave = np.resize(wave, n)
    else:
        wave = np.cumsum(np.random.default_rng(0).standard_normal(n)).astype(np.float32)
        wave = 0.1 * (wave - wave.mean()) / wave.std()
    return torch.from_numpy(wave.astype(np.float32))[None]


def build(name: str, one_thread: bool, scratch: Path) -> tuple[enhance.Enhancer, str]:
    if name == "dfn3":
        return enhance.load(name, prefetch=not one_thread), name
    if name == "cmgan" and enhance.unavailable_reason("cmgan") is not None:
        from trnet.enhance.cmgan import CMGANGenerator

        path = scratch / "random_ckpt"
        if not path.exists():
            torch.save(CMGANGenerator().state_dict(), path)
        return enhance.load(name, checkpoint=path), "cmgan (random weights)"
    return enhance.load(name), name


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3, help="median of this many runs (cmgan: 1)")
    p.add_argument("--se", nargs="*", default=list(enhance.BACKENDS))
    args = p.parse_args()
    wave = test_signal(args.seconds)
    default_threads = torch.get_num_threads()
    print(f"{args.seconds:g} s of speech; torch {torch.__version__}, default threads {default_threads}")
    print(f"{'back-end':<24} {'threads':>8} {'RTF':>8} {'s / 5 s':>8} {'CPU s / 5 s':>12}")
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.se:
            reason = enhance.unavailable_reason(name)
            if reason is not None and name != "cmgan":
                print(f"{name:<24} unavailable: {reason}")
                continue
            for one_thread in (True, False):
                torch.set_num_threads(1 if one_thread else default_threads)
                se, label = build(name, one_thread, Path(scratch))
                se.enhance(wave[:, :SAMPLE_RATE])  # warm-up (allocations, first-call costs)
                times, cpu = [], []
                for _ in range(1 if name == "cmgan" else args.repeats):
                    t0, c0 = time.perf_counter(), time.process_time()
                    se.enhance(wave)
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                rtf = statistics.median(times) / args.seconds
                cpu_5s = statistics.median(cpu) / args.seconds * 5
                threads = "1" if one_thread else "default"
                print(f"{label:<24} {threads:>8} {rtf:>8.3f} {rtf * 5:>8.2f} {cpu_5s:>12.2f}", flush=True)
    torch.set_num_threads(default_threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
