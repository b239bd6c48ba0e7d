"""Wall time to train K runs of one grid setting, today's path against the stacked one, in
one run, on a store generated here (no shared data needed).

    python bench/grid.py [--system trnet] [--folds 10] [--seeds 1] [--epochs 2] [--jobs 2] [--stack K/jobs]
                         [--settings fixed,variable] [--paths alone,stacked] [--device cpu]

Setting: the EmoDB refinement study's (resnet width 8, batch 8, one system, K folds of one
seed; 339 utterances of 10 speakers in 5 sessions, identity SE, training noise at the five
SNRs). `fixed`: every utterance 2.0 s (208 frames after cropping, as bench/train.py);
`variable`: lengths drawn like nEMO's (log-normal, median 2.4 s, 10th-90th percentile
1.7-3.4 s, clipped to 0.9-5.5 s). TRNet's teachers (Baseline-c, the same folds) are trained
beforehand, untimed, and copied into each measurement's runs directory.

    alone    today's path (`--no-batch-runs --jobs J`): J processes of one thread, each trains
             its runs one after the other (`trainer.train` under the run lock)
    bucketed the same with batches of similar length (`bucket = true`, a training setting of
             its own: other batches, other numbers; what the nEMO study uses)
    stacked  the stacked path (`--batch-runs N --jobs J`; the default on CUDA): the K runs cut
             into stacks of at most --stack (engine.split_even; default K / J, a stack per
             process), J processes of one thread, a stack per task
             (`training.batched.train_batched`)

Prints runs per hour of each path with the load average beside it; the last line is
`grid speed-up: R.RRx fixed-length, R.RRx variable-length`: the faster of the new paths
(stacked, bucketed) against alone, in runs per hour, each named on the line before.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from trnet.audio import save_audio
from trnet.corpora import LABELS, write_manifest
from trnet.enhance import Spec
from trnet.experiments.engine import split_even
from trnet.models import load_config
from trnet.store import BuildSpec, build
from trnet.training.batched import train_batched
from trnet.training.trainer import spec_from_names, train
from trnet.utils import die_with_parent

SR = 16_000
NEMO_MEDIAN, NEMO_SIGMA = 2.4, np.log(3.4 / 1.7) / (2 * 1.2816)  # 10th-90th percentile 1.7-3.4 s


def durations(setting: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if setting == "fixed":
        return np.full(n, 2.0)
    return np.clip(NEMO_MEDIAN * np.exp(NEMO_SIGMA * rng.standard_normal(n)), 0.9, 5.5)


def make_store(root: Path, setting: str, workers: int, n_speakers: int = 10, per_speaker: int = 34) -> Path:
    """A corpus of gliding tones (labels, speakers, sessions as EmoDB: 10 speakers, 5 sessions),
    a noise corpus named esc50, and its condition store (identity SE, the five SNRs)."""
    rng = np.random.default_rng(7)
    lengths = durations(setting, n_speakers * per_speaker, rng)
    utts = []
    for s in range(n_speakers):
        for k in range(per_speaker):
            seconds = lengths[s * per_speaker + k]
            t = np.arange(int(seconds * SR)) / SR
            wave = 0.3 * np.sin(2 * np.pi * (120 + 25 * s + 15 * (k % 4)) * t * (1 + 0.1 * (k % 7) * t))
            path = root / "speech" / f"s{s}_{k}.wav"
            save_audio(path, (wave * np.hanning(len(t))).astype(np.float32))
            utts.append(
                {
                    "id": f"s{s}_{k}",
                    "path": str(path),
                    "label": LABELS[k % 4],
                    "speaker": f"spk{s}",
                    "session": str(s // 2 + 1),
                    "gender": "FM"[s % 2],
                    "duration": f"{seconds:.3f}",
                }
            )
    noise = []
    for j in range(20):
        path = root / "noise" / f"n{j}.wav"
        save_audio(
            path,
            (0.1 * rng.standard_normal(5 * SR) * (1 + np.sin(np.arange(5 * SR) / (300 + 40 * j)))).astype(np.float32),
        )
        noise.append(
            {"id": f"n{j}", "path": str(path), "source": f"src{j}", "category": "hum", "offset": "0", "duration": "5"}
        )
    write_manifest(root / "corpus.csv", utts, "utterances")
    write_manifest(root / "noise.csv", noise, "noise")
    spec = BuildSpec(corpus=root / "corpus.csv", noise={"esc50": root / "noise.csv"}, se=Spec("identity"), seed=1)
    return build(spec, root / "store", workers=workers, quiet=True)


def specs(
    system: str, store: Path, runs: Path, folds: int, seeds: int, epochs: int, device: str, bucket: bool = False
) -> list:
    return [
        spec_from_names(
            system,
            fold,
            seed,
            store,
            runs,
            system_overrides={"encoder": "resnet", "width": 8},
            training_overrides={"epochs": epochs, "batch_size": 8, "patience": epochs, "bucket": bucket},
            device=device,
        )
        for seed in range(1, seeds + 1)
        for fold in range(folds)
    ]


def _alone(batch: list, threads: int) -> None:
    torch.set_num_threads(threads)
    for spec in batch:
        train(spec, quiet=True)


def _stacked(batch: list, threads: int) -> None:
    torch.set_num_threads(threads)
    train_batched(batch, quiet=True)


def measure(path: str, todo: list, jobs: int, stack: int) -> float:
    """Wall seconds to train `todo` the given way, in `jobs` processes of one thread (jobs = 1: here)."""
    if path in ("alone", "bucketed"):
        tasks = [todo[i::jobs] for i in range(jobs)]
        fn = _alone
    else:
        tasks = split_even(todo, stack)
        fn = _stacked
    t0 = time.perf_counter()
    if jobs == 1:
        for task in tasks:
            fn(task, torch.get_num_threads())
    else:
        with ProcessPoolExecutor(
            jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent, initargs=(os.getpid(),)
        ) as pool:
            for future in [pool.submit(fn, task, 1) for task in tasks]:
                future.result()
    return time.perf_counter() - t0


def load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="trnet")
    ap.add_argument("--folds", type=int, default=10, help="folds 0..F-1 (at most 10)")
    ap.add_argument("--seeds", type=int, default=1, help="seeds 1..S: K = F x S runs")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--stack", type=int, help="most runs per stack (default: K / jobs, a stack per process)")
    ap.add_argument("--settings", default="fixed,variable")
    ap.add_argument("--paths", default="alone,stacked,bucketed")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", type=Path, help="keep the stores here (default: a temporary folder)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="trnet-bench-grid-"))
    paths = args.paths.split(",")
    ratios = {}
    print(
        f"{args.system}, resnet width 8, batch 8, {args.folds} folds x {args.seeds} seed(s) x {args.epochs} epochs, "
        f"jobs {args.jobs}, stack <= {args.stack or 'K/jobs'}, device {args.device}; {os.cpu_count()} CPUs"
    )
    for setting in args.settings.split(","):
        t0 = time.perf_counter()
        store = make_store(work / setting, setting, workers=max(args.jobs, min(os.cpu_count() or 1, 8)))
        teachers = {}  # bucket -> trained Baseline-c teachers (untimed), for the paths that use them
        for bucket in sorted({path == "bucketed" for path in paths}):
            teachers[bucket] = work / setting / ("teachers-bucketed" if bucket else "teachers")
            if load_config(args.system).teacher and not (teachers[bucket] / "baseline-c").exists():
                torch.set_num_threads(1)  # several threads on busy cores stall each other (untimed anyway)
                train_batched(
                    specs(
                        "baseline-c",
                        store,
                        teachers[bucket],
                        args.folds,
                        args.seeds,
                        args.epochs,
                        args.device,
                        bucket=bucket,
                    ),
                    quiet=True,
                )
        print(f"{setting} setting: store and teachers {time.perf_counter() - t0:.0f} s", flush=True)
        per_hour = {}
        for path in paths:
            runs = work / setting / f"runs-{path}"
            shutil.rmtree(runs, ignore_errors=True)
            if (teachers[path == "bucketed"] / "baseline-c").exists():
                shutil.copytree(teachers[path == "bucketed"] / "baseline-c", runs / "baseline-c")
            before = load()
            todo = specs(
                args.system, store, runs, args.folds, args.seeds, args.epochs, args.device, bucket=path == "bucketed"
            )
            seconds = measure(path, todo, args.jobs, args.stack or -(-len(todo) // args.jobs))
            per_hour[path] = len(todo) / seconds * 3600
            print(
                f"{setting:<9} {path:<8} {seconds:7.1f} s  {per_hour[path]:7.1f} runs/hour  "
                f"(load {before} before, {load()} after)",
                flush=True,
            )
        new = {p: v / per_hour["alone"] for p, v in per_hour.items() if p != "alone"} if "alone" in per_hour else {}
        if new:
            best = max(new, key=new.get)
            ratios[setting] = new[best]
            print(f"{setting}: " + ", ".join(f"{p} {r:.2f}x" for p, r in new.items()) + f" (faster: {best})")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    if set(ratios) == {"fixed", "variable"}:
        print(f"grid speed-up: {ratios['fixed']:.2f}x fixed-length, {ratios['variable']:.2f}x variable-length")


if __name__ == "__main__":
    sys.exit(main())
