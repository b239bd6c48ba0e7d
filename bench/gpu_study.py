"""The steps of bench/gpu_study.sh (docs/gpu.md, "The study in one call"): a declared grid of the
study's shape trained and evaluated on the fast path of the stacked trainer, against a CPU
reference of the same run shape measured beforehand. Each step prints `key = value` lines.

    python bench/gpu_study.py store     --data .gpu --work DIR [--se dfn3] [--device cuda] [--utterances N]
    python bench/gpu_study.py reference --store STORE --work DIR [--width 16] [--epochs 8]   # here, on the CPU
    python bench/gpu_study.py study     --store STORE --work DIR [--reference .gpu/cpu-reference-w16.txt]
                                        [--device cuda] [--width 16] [--epochs 8] [--seeds 4] [--compile MODE]

The grid (GRID): Baseline-c (also the teachers), Baseline-n and TRNet, every LOSO fold of the
store (EmoDB: 10), `--seeds` seeds: 3 x 10 x 4 = 120 runs on EmoDB. The recipe (RECIPE) is the
study's: cosine with a 1-epoch warm-up, AdamW 0.05, label smoothing 0.1, SpecAugment 2 + 2,
3 s crops, EMA 0.998, cached teacher, utterance mean normalisation; batch 16, no early stop.

study: trains the grid with `train_batched(fast=FastPath(...))`, each system's runs in one
stack (train_seconds), then evaluates every run's kept weights on its test speaker under every
condition of the store, stacked on the device (eval_seconds); the fast path's logit drift from
float32 on real batches (`trnet.training.fast.logit_drift`, `--drift-steps` steps of 4 TRNet runs);
runs per hour against the reference's.

reference: cpu_runs_per_hour of the same run shape on this machine's CPU: one run of each system
timed over `--measure-epochs` (2) epochs with one thread (CPU time; validation and start-up
included), scaled to `--epochs` and to the machine's cores (one single-thread run per core, the
CPU's better path in docs/benchmarks.md). A short measurement on a shared machine: an estimate.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

SYSTEMS = ("baseline-c", "baseline-n", "trnet")  # Baseline-c first: the teachers of TRNet
RECIPE = {
    "lr_schedule": "cosine",
    "warmup_epochs": 1.0,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "freq_masks": 2,
    "time_masks": 2,
    "crop_s": 3.0,
    "ema_decay": 0.998,
    "teacher_cache": True,
}
BATCH = 16


def emit(key: str, value) -> None:
    print(f"{key} = {value}", flush=True)


def specs(store: Path, runs: Path, system: str, width: int, epochs: int, seeds: int, folds: int | None, device: str):
    from trnet.protocol.folds import loso_folds
    from trnet.store import ConditionStore
    from trnet.training.trainer import spec_from_names

    n_folds = len(loso_folds(ConditionStore(store).rows))
    training = {"epochs": epochs, "batch_size": BATCH, "patience": epochs, **RECIPE}
    return [
        spec_from_names(
            system,
            fold,
            seed,
            store,
            runs,
            system_overrides={"width": width, "input_norm": "utterance"},
            training_overrides=training,
            device=device,
        )
        for fold in range(min(folds or n_folds, n_folds))
        for seed in range(1, seeds + 1)
    ]


def build_store(data: Path, work: Path, se: str, device: str, utterances: int | None) -> None:
    from gpu_check import build_store as build_emodb_store  # bench/ is the script's folder

    n, seconds = build_emodb_store(data, work, se, device, utterances)
    emit("store_utterances", n)
    emit("store_seconds", f"{seconds:.1f}")


def reference(store: Path, work: Path, width: int, epochs: int, measure_epochs: int) -> None:
    """One run of each system of the grid, of the grid's shape, on the CPU with one thread,
    `measure_epochs` epochs each (TRNet after its teacher): the process's CPU seconds per epoch,
    averaged over the systems as the grid mixes them (on a shared machine CPU time is closer to
    an idle core than wall time; both are printed) -> runs per hour, one run per core."""
    from trnet.training.trainer import train

    torch.set_num_threads(1)
    cpu, wall = [], []
    for system in SYSTEMS:  # Baseline-c first: TRNet's teacher
        spec = specs(store, work / "reference", system, width, epochs, 1, 1, "cpu")[0]
        spec = replace(spec, training=replace(spec.training, epochs=measure_epochs, patience=measure_epochs))
        t0, c0 = time.perf_counter(), time.process_time()
        train(spec, quiet=True)
        wall.append((time.perf_counter() - t0) / measure_epochs)
        cpu.append((time.process_time() - c0) / measure_epochs)  # this process's CPU time
        emit(f"cpu_seconds_per_epoch_{system.replace('-', '_')}", f"{cpu[-1]:.2f}")
    cores = os.cpu_count() or 1
    emit("cpu_wall_seconds_per_epoch", f"{np.mean(wall):.2f}")
    emit("cpu_seconds_per_epoch", f"{np.mean(cpu):.2f}")
    emit("cpu_cores", cores)
    emit("cpu_runs_per_hour", f"{cores * 3600 / (np.mean(cpu) * epochs):.1f}")
    emit("cpu_reference_width", width)
    emit("cpu_reference_epochs", epochs)
    emit(
        "cpu_reference_shape",
        f"{', '.join(SYSTEMS)}; width {width}, batch {BATCH}, {epochs} epochs, recipe {sorted(RECIPE)}",
    )
    emit(
        "cpu_reference_note",
        f"{measure_epochs} epochs of one run per system (start-up included), 1 thread, process CPU time, nice'd "
        f"on a shared machine, x {cores} cores",
    )


def read_reference(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if " = " in line and not line.startswith("#"):
            k, v = line.split(" = ", 1)
            out[k.strip()] = v.strip()
    return out


def evaluate(spec_list: list, device: torch.device, bf16: bool) -> dict[int, dict]:
    """Each run's kept weights on its test speaker under every store condition, the runs stacked
    (batched on the device, one transfer per run): validate_runs on the test rows."""
    from trnet.models import SERSystem
    from trnet.protocol.folds import split
    from trnet.runs import read_best
    from trnet.training.stacked import StackedSystem
    from trnet.training.stacked_runs import StackRun, validate_runs
    from trnet.training.trainer import prepare

    rs, models = [], []
    for spec in spec_list:
        prep = prepare(spec)
        model = SERSystem(spec.system)
        model.load_state_dict(read_best(spec.dir))
        test = split(prep.store.rows, spec.fold).test
        rs.append(StackRun(spec, replace(prep, val_rows=test, conds=prep.store.conditions), model, None))
        models.append(model)
    stack = StackedSystem(spec_list[0].system, models, None, 1e-3, device, autocast=bf16)
    return validate_runs(stack, rs, list(range(len(rs))))


def drift(store: Path, width: int, device: torch.device, steps: int, runs: int = 4) -> float:
    """logit_drift of TRNet (teachers at random weights) on real batches of fold 0, the recipe's
    in-step levers on."""
    from trnet.batches import condition_set, condition_snr_db, default_train_noise, label_indices, make_batch
    from trnet.models import SERSystem, build_teacher, load_config, teacher_config
    from trnet.protocol.folds import split
    from trnet.store import ConditionStore
    from trnet.training.fast import logit_drift

    torch.manual_seed(0)
    s = ConditionStore(store)
    labels = label_indices(s)
    conds = condition_set(s, "noisy", default_train_noise(s))
    fold = split(s.rows, 0)
    cfg = replace(load_config("trnet"), width=width, input_norm="utterance")
    tcfg = teacher_config(cfg)
    models = [SERSystem(cfg) for _ in range(runs)]
    teachers = [build_teacher(SERSystem(tcfg).state_dict(), tcfg) for _ in range(runs)]
    rng = np.random.default_rng(0)

    def batches(rows, n):
        bs = [
            make_batch(s, labels, rng.choice(rows, n), [conds[k] for k in rng.integers(0, len(conds), n)])
            for _ in range(runs)
        ]
        t = max(b.x.shape[1] for b in bs)
        pad = lambda a: torch.nn.functional.pad(a, (0, 0, 0, t - a.shape[1]))  # noqa: E731
        return bs, [torch.stack([pad(getattr(b, k)) for b in bs]) for k in ("x", "xe", "xs")]

    train_steps = []
    for _ in range(steps):
        bs, (x, xe, xs) = batches(fold.train, BATCH)
        y = torch.stack([b.y for b in bs])
        snr = torch.stack([condition_snr_db(b.conditions) for b in bs])
        train_steps.append((x, xe, xs, torch.stack([b.frames for b in bs]), y, snr))
    bs, (x, xe, _) = batches(fold.val, 32)
    probe = (x, xe, torch.stack([b.frames for b in bs]))
    levers = {"weight_decay": RECIPE["weight_decay"], "label_smoothing": RECIPE["label_smoothing"], "ema_decay": 0.9}
    return logit_drift(cfg, models, train_steps, probe, device, teachers, **levers)


def study(args) -> None:
    from trnet.training.batched import train_batched
    from trnet.training.fast import LOGIT_TOLERANCE, FastPath

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    ref = read_reference(args.reference)
    fast = FastPath(bf16=not args.no_bf16, compile=args.compile)
    grid = {
        s: specs(args.store, args.work / "runs", s, args.width, args.epochs, args.seeds, args.folds, args.device)
        for s in SYSTEMS
    }
    n_runs = sum(len(v) for v in grid.values())
    emit("device", torch.cuda.get_device_name(device) if cuda else "cpu")
    emit("runs", n_runs)
    emit("width", args.width)
    emit("epochs", args.epochs)
    emit("batch_size", BATCH)
    emit("fast_path", f"bf16 {fast.bf16}, compile {fast.compile}, resident store")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for system in SYSTEMS:
        train_batched(grid[system], quiet=not args.verbose, fast=fast)
        if cuda:
            torch.cuda.synchronize()
        emit(f"train_seconds_after_{system.replace('-', '_')}", f"{time.perf_counter() - t0:.1f}")
    train_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    uars = {}
    for system in SYSTEMS:
        vals = evaluate(grid[system], device, fast.bf16)
        uars[system] = float(np.mean([v["val_uar"] for v in vals.values()]))
    if cuda:
        torch.cuda.synchronize()
    eval_seconds = time.perf_counter() - t0
    for system, u in uars.items():
        emit(f"test_uar_{system.replace('-', '_')}", f"{u:.4f}")
    diff = drift(args.store, args.width, device, args.drift_steps)
    gpu_rph = n_runs * 3600 / (train_seconds + eval_seconds)
    cpu_rph = float(ref["cpu_runs_per_hour"])
    shape = (ref.get("cpu_reference_width"), ref.get("cpu_reference_epochs"))
    emit("cpu_reference_matches", shape == (str(args.width), str(args.epochs)))  # else the ratio compares other shapes
    emit("train_seconds", f"{train_seconds:.1f}")
    emit("eval_seconds", f"{eval_seconds:.1f}")
    emit("gpu_runs_per_hour", f"{gpu_rph:.1f}")
    emit("cpu_runs_per_hour", f"{cpu_rph:.1f}")
    emit("cpu_reference_note", ref.get("cpu_reference_note", "unknown"))
    emit("ratio", f"{gpu_rph / cpu_rph:.4g}")
    emit("max_abs_logit_diff_vs_fp32", f"{diff:.3e}")
    emit("logit_tolerance", LOGIT_TOLERANCE)
    emit("peak_gpu_mib", f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f}" if cuda else 0)
    if not all(math.isfinite(v) for v in (train_seconds, eval_seconds, gpu_rph, diff)):
        raise SystemExit("a measurement is not finite")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=("store", "reference", "study"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--data", type=Path, default=Path(".gpu"))
    ap.add_argument("--work", type=Path, default=Path("gpu-study/work"))
    ap.add_argument("--store", type=Path)
    ap.add_argument("--se", default="dfn3")
    ap.add_argument("--utterances", type=int)
    ap.add_argument("--reference", type=Path, help="default: .gpu/cpu-reference-w<width>.txt")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--folds", type=int, help="at most this many LOSO folds (default: all)")
    ap.add_argument("--measure-epochs", type=int, default=2)
    ap.add_argument("--compile", help="torch.compile mode of the stacked step (default: eager)")
    ap.add_argument("--no-bf16", action="store_true")
    ap.add_argument("--drift-steps", type=int, default=20)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    args.reference = args.reference or Path(f".gpu/cpu-reference-w{args.width}.txt")
    if args.step == "store":
        build_store(args.data, args.work, args.se, args.device, args.utterances)
    elif args.step == "reference":
        reference(args.store, args.work, args.width, args.epochs, args.measure_epochs)
    else:
        study(args)


if __name__ == "__main__":
    main()
