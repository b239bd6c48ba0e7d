"""Speed of the SE back-ends on this machine.

    python bench/enhance.py [--seconds 5] [--repeats 3] [--se dfn3 spectral] [--no-dfn3-compare]
                            [--long-seconds 60] [--parity N]

1. Real-time factor (processing time / audio duration) of every back-end on a 5 s segment of
   real speech, with one thread and with the default thread count. One thread:
   torch.set_num_threads(1) (dfn3's onnxruntime follows it), and dfn3-libdf without state
   prefetching (its background thread). When no CMGAN checkpoint is configured, CMGAN is
   timed with random weights (same cost). RTF is wall time (median of the repeats); the CPU
   column (process CPU seconds per 5 s of audio, all threads) is the steadier number on a
   machine shared with other jobs.
2. dfn3 (ONNX graphs, whole utterances, batched) against dfn3-libdf (libDF's frame loop),
   one thread, same process, same 16 noisy 5 s utterances (EmoDB + ESC-50 at 5 dB), the
   measurements interleaved so that load from other jobs hits both: seconds per utterance at
   batch 1 and batch 16, and the ratios; also dfn3 with runtime="torch" on the CPU.
3. A 60 s input (predict enhances whole files): RTF and peak memory (growth of the peak
   resident set of a fresh process over its size after loading the back-end and a 1 s
   warm-up), one thread; Linux only (/proc).
4. With --parity N: SI-SDR of dfn3's output against dfn3-libdf's on N EmoDB utterances,
   clean and mixed with ESC-50 and real DEMAND noise at -5, 0, 5, 10 and 20 dB.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from trnet import enhance
from trnet.audio import SAMPLE_RATE, load_audio

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMODB = DATA / "emodb" / "wav"
ESC50 = DATA / "esc50" / "audio"


def test_signal(seconds: float, index: int = 0) -> torch.Tensor:
    """Real speech (EmoDB files joined; `index` picks other files) if the shared data is here,
    else coloured noise."""
    n = int(seconds * SAMPLE_RATE)
    files = sorted(EMODB.glob("*.wav"))
    if files:
        start = (6 * index) % max(len(files) - 6, 1)
        wave = np.concatenate([load_audio(f) for f in files[start : start + 6]])
        wave = np.resize(wave, n)
    else:
        wave = np.cumsum(np.random.default_rng(index).standard_normal(n)).astype(np.float32)
        wave = 0.1 * (wave - wave.mean()) / wave.std()
    return torch.from_numpy(wave.astype(np.float32))[None]


def noisy_signals(count: int, seconds: float) -> torch.Tensor:
    """`count` different utterances with ESC-50 noise at 5 dB (speech alone without the data)."""
    waves = [test_signal(seconds, i)[0].numpy() for i in range(count)]
    noises = sorted(ESC50.glob("*.wav"))
    if noises:
        for i, w in enumerate(waves):
            noise = np.resize(load_audio(noises[(37 * i) % len(noises)]), len(w)).astype(np.float64)
            k = np.sqrt(np.mean(w.astype(np.float64) ** 2) / (np.mean(noise**2) * 10 ** (5 / 10)))
            waves[i] = (w + k * noise).astype(np.float32)
    return torch.from_numpy(np.stack(waves))


def build(name: str, one_thread: bool, scratch: Path) -> tuple[enhance.Enhancer, str]:
    if name == "dfn3-libdf":
        return enhance.load(name, prefetch=not one_thread), name
    if name == "cmgan" and enhance.unavailable_reason("cmgan") is not None:
        from trnet.enhance.cmgan import CMGANGenerator

        path = scratch / "random_ckpt"
        if not path.exists():
            torch.save(CMGANGenerator().state_dict(), path)
        return enhance.load(name, checkpoint=path), "cmgan (random weights)"
    return enhance.load(name), name


def rtf_table(args: argparse.Namespace) -> None:
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


def _timed(fn, *args) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - t0, time.process_time() - c0


def compare_dfn3(args: argparse.Namespace) -> None:
    """dfn3 vs dfn3-libdf, one thread, interleaved rounds; per-utterance seconds (median)."""
    missing = [n for n in ("dfn3", "dfn3-libdf") if enhance.unavailable_reason(n) is not None]
    if missing:
        print(f"\ndfn3 vs dfn3-libdf: skipped ({', '.join(missing)} unavailable)")
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    batch = noisy_signals(16, args.seconds)
    new, ref = enhance.load("dfn3", threads=1), enhance.load("dfn3-libdf", prefetch=False)
    port = enhance.load("dfn3", runtime="torch", device="cpu")
    for se in (new, ref, port):
        se.enhance(batch[:2, :SAMPLE_RATE])
    keys = ("libdf, 1 at a time", "dfn3, 1 at a time", "dfn3, batch of 16", "dfn3 torch, batch of 16")
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    libdf_per_round = 4  # libDF is slow: 4 of the 16 utterances per round
    for r in range(args.repeats):
        for key in keys:
            if key.startswith("libdf"):
                rows = [(r * libdf_per_round + i) % len(batch) for i in range(libdf_per_round)]
                w, c = zip(*[_timed(ref.enhance, batch[i : i + 1]) for i in rows], strict=False)
            elif key.startswith("dfn3, 1"):
                w, c = zip(*[_timed(new.enhance, batch[i : i + 1]) for i in range(len(batch))], strict=False)
            else:
                w, c = _timed(port.enhance if "torch" in key else new.enhance, batch)
                w, c = [w / len(batch)], [c / len(batch)]
            wall[key] += w
            cpu[key] += c
    torch.set_num_threads(threads)
    med = {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in keys}
    print(f"\ndfn3 vs dfn3-libdf: 1 thread, {args.seconds:g} s noisy utterances, median of {args.repeats} rounds")
    print(f"{'':<22} {'wall s/utt':>11} {'CPU s/utt':>10} {'RTF':>7}")
    for k in keys:
        print(f"{k:<22} {med[k][0]:>11.3f} {med[k][1]:>10.3f} {med[k][0] / args.seconds:>7.3f}")
    for a, b, what in (
        (keys[0], keys[1], "dfn3 batch 1 vs libdf"),
        (keys[0], keys[2], "dfn3 batch 16 vs libdf"),
        (keys[1], keys[2], "dfn3 batch 16 vs batch 1 (per utterance)"),
        (keys[3], keys[2], "onnxruntime vs torch runtime (batch 16, CPU)"),
    ):
        print(f"speed-up {what:<42} wall {med[a][0] / med[b][0]:5.2f}x   CPU {med[a][1] / med[b][1]:5.2f}x")


def _memory_mib() -> tuple[float, float]:
    """(current, peak) resident set of this process (Linux /proc; the peak is per address
    space, unlike getrusage's ru_maxrss, which survives the exec of a spawned process)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return float(fields["VmRSS"].split()[0]) / 1024, float(fields["VmHWM"].split()[0]) / 1024


def _long_input_worker(name: str, seconds: float, queue: mp.Queue) -> None:
    torch.set_num_threads(1)
    options = {"prefetch": False} if name == "dfn3-libdf" else {}
    se = enhance.load(name, **options)
    wave = torch.cat([test_signal(5.0, i) for i in range(int(np.ceil(seconds / 5)))], dim=1)[
        :, : int(seconds * SAMPLE_RATE)
    ]
    se.enhance(wave[:, :SAMPLE_RATE])
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current size
    base, _ = _memory_mib()
    wall, cpu = _timed(se.enhance, wave)
    _, peak = _memory_mib()
    queue.put((wall / seconds, cpu / seconds, peak - base, peak))


def long_input(args: argparse.Namespace) -> None:
    seconds = args.long_seconds
    print(f"\n{seconds:g} s input, 1 thread, fresh process per back-end")
    print(f"{'back-end':<12} {'RTF':>7} {'CPU RTF':>8} {'peak +MiB':>10} {'peak MiB':>9}")
    ctx = mp.get_context("spawn")
    for name in ("dfn3", "dfn3-libdf"):
        if enhance.unavailable_reason(name) is not None:
            continue
        queue = ctx.Queue()
        proc = ctx.Process(target=_long_input_worker, args=(name, seconds, queue))
        proc.start()
        rtf, cpu_rtf, grow, peak = queue.get()
        proc.join()
        print(f"{name:<12} {rtf:>7.3f} {cpu_rtf:>8.3f} {grow:>10.0f} {peak:>9.0f}", flush=True)


def parity(count: int) -> None:
    from trnet.enhance.metrics import si_sdr

    speech = sorted(EMODB.glob("*.wav"))
    noises = {"esc50": sorted(ESC50.glob("*.wav")), "demand": sorted((DATA / "noise" / "demand-vbd").glob("*.wav"))}
    if not speech or not all(noises.values()):
        print("\nparity: skipped (needs the shared EmoDB, ESC-50 and DEMAND data)")
        return
    torch.set_num_threads(1)
    new, ref = enhance.load("dfn3", threads=1), enhance.load("dfn3-libdf", prefetch=False)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(speech), count, replace=False)
    results: dict[str, list[float]] = {}
    for i in picks:
        x = load_audio(speech[i]).astype(np.float64)
        conditions = {"clean": x}
        for corpus, files in noises.items():
            noise = np.resize(load_audio(files[rng.integers(len(files))]), len(x)).astype(np.float64)
            for snr in (-5, 0, 5, 10, 20):
                k = np.sqrt(np.mean(x**2) / (np.mean(noise**2) * 10 ** (snr / 10)))
                conditions[f"{corpus} {snr:+d} dB"] = x + k * noise
        names = list(conditions)
        wave = torch.from_numpy(np.stack([conditions[c] for c in names]).astype(np.float32))
        out = new.enhance(wave)  # all conditions of the utterance as one batch
        for j, c in enumerate(names):
            expected = ref.enhance(wave[j : j + 1])[0].numpy()
            results.setdefault(c, []).append(si_sdr(out[j].numpy(), expected))
    print(f"\nparity: SI-SDR (dB) of dfn3 against dfn3-libdf, {count} EmoDB utterances per condition")
    print(f"{'condition':<18} {'min':>7} {'median':>7}")
    for c, v in results.items():
        print(f"{c:<18} {min(v):>7.1f} {statistics.median(v):>7.1f}")
    every = [v for vs in results.values() for v in vs]
    print(f"{'all':<18} {min(every):>7.1f} {statistics.median(every):>7.1f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3, help="median of this many runs (cmgan: 1)")
    p.add_argument("--se", nargs="*", default=list(enhance.BACKENDS))
    p.add_argument("--long-seconds", type=float, default=60.0, help="length of the long input (0: skip)")
    p.add_argument("--no-dfn3-compare", action="store_true", help="skip part 2")
    p.add_argument("--parity", type=int, default=0, metavar="N", help="part 4 on N utterances (0: skip)")
    args = p.parse_args()
    if args.se:
        rtf_table(args)
    if not args.no_dfn3_compare:
        compare_dfn3(args)
    if args.long_seconds > 0:
        long_input(args)
    if args.parity:
        parity(args.parity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
