"""The Ray engine's overhead: the demo recipe (`trnet demo`'s built-in recipe, full size unless
--quick) end to end on the local engine and on a local Ray of the same CPUs, in one run, and
the wall-time ratio Ray / local. Also the per-task costs that docs/scaleout.md multiplies out:
a store chunk, a training epoch, an evaluation, and an empty Ray task's round trip.

    python bench/engine.py [--cpus 2] [--se dfn3|spectral] [--quick] [--sequential] [--repeat 1] [--ray-first]
    python bench/engine.py --costs WORK      # the per-task costs only, from a finished demo work directory

Both engines get the same CPUs: local = `--workers N --jobs N --threads 1` (store processes,
parallel (fold, seed) groups), Ray = `--engine ray --workers N` (a local Ray of N CPUs, one
CPU per task). `--sequential` adds the local engine as `trnet demo` runs it (`--jobs 1`).
The corpus is generated once beforehand; the report (figures, t-SNE) is left out of the
timings, since it is the same code after either engine. Needs `pip install -e ".[ray]"`.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from trnet.experiments.demo import default_se, demo_table
from trnet.experiments.manifests import prepare
from trnet.experiments.recipe import recipe_from_dict, with_overrides
from trnet.experiments.reproduce import reproduce


def timed_run(recipe, workers: int, jobs: int) -> dict:
    """One reproduce() of the recipe; wall time of the whole and of its phases."""
    marks: dict[str, float] = {}
    t0 = time.perf_counter()

    def log(line: str) -> None:
        now = time.perf_counter() - t0
        if line.startswith("training ") and "train" not in marks:
            marks["train"] = now  # the stores are built
        if line.startswith("results: "):
            marks["results"] = now
        print(f"  {now:7.1f} s  {line}", flush=True)

    reproduce(recipe, workers=workers, device="cpu", threads=1, jobs=jobs, report=False, quiet=True, log=log)
    total = time.perf_counter() - t0
    return {"total_s": total, "store_s": marks.get("train"), "grid_s": marks["results"] - marks.get("train", 0.0)}


def task_costs(work: Path) -> dict:
    """Per-task costs read back from a finished work directory (measured during the run)."""
    chunks = [json.loads(p.read_text()) for p in work.glob("stores/*/chunks/*.json")]
    summary = json.loads(next(work.glob("stores/*/summary.json")).read_text())
    epochs: dict[str, list[float]] = {}
    for log in work.glob("runs/*/*/*/*/log.csv"):
        with log.open(newline="") as f:
            epochs.setdefault(log.parent.parent.name, []).extend(float(r["seconds"]) for r in csv.DictReader(f))
    return {
        "chunks": len(chunks),
        "utterances_per_chunk": statistics.mean(len(c["index"]) for c in chunks),
        "conditions": len(summary["conditions"]),
        "se_s_per_chunk": statistics.mean(c["t_se"] for c in chunks),
        "epoch_s": {s: statistics.median(v) for s, v in sorted(epochs.items())},
    }


def evaluation_cost(work: Path, reps: int = 3) -> float:
    """Seconds to evaluate one TRNet run under every condition (cache bypassed, one thread)."""
    import torch

    from trnet.experiments.evalcache import evaluate_run
    from trnet.store import ConditionStore

    torch.set_num_threads(1)
    run = next(work.glob("runs/*/*/trnet/fold0-seed1"))
    store = ConditionStore(next(work.glob("stores/*")))
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(reps):
            copy = Path(tmp) / "run"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(run, copy, ignore=shutil.ignore_patterns("eval"))
            t0 = time.perf_counter()
            evaluate_run(copy, store, 0, "trnet", "synth", "cpu")
            times.append(time.perf_counter() - t0)
    return min(times)


def store_read(work: Path, batch: int = 32, seconds: float = 3.0) -> dict:
    """Training batches read from the store (page cache warm: it was just written): ms and
    bytes per example. Every example reads its x, xe and xs rows (500 x 80 float16 each)."""
    import numpy as np

    from trnet.batches import condition_set, label_indices, make_batch
    from trnet.store import ConditionStore

    store = ConditionStore(next(work.glob("stores/*")))
    labels, conds = label_indices(store), condition_set(store, "noisy", "synth")
    rng, n, t0 = np.random.default_rng(0), 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        index = rng.choice(len(store.rows), size=batch, replace=False)
        make_batch(store, labels, index, [conds[i] for i in rng.integers(len(conds), size=batch)])
        n += batch
    ms = 1000 * (time.perf_counter() - t0) / n
    row = 500 * 80 * 2
    return {"ms_per_example": ms, "bytes_per_example": 3 * row, "mb_per_s": 3 * row / ms / 1000}


def forward_cost(
    systems: tuple[str, ...] = ("baseline-e", "baseline-ne", "trnet"),
    width: int = 32,
    frames: int = 500,
    batch: int = 8,
    reps: int = 3,
) -> dict[str, float]:
    """Evaluation's unit at the paper's size: ms per example of a no-grad forward (one thread;
    IEMOCAP's test batches crop to ~500 frames). Training steps: bench/train.py."""
    from dataclasses import replace as with_fields

    import torch

    from trnet.models import SERSystem, load_config

    torch.set_num_threads(1)
    x = torch.randn(batch, frames, 80) * 3 + 8
    lengths, out = torch.full((batch,), frames), {}
    for name in systems:
        model = SERSystem(with_fields(load_config(name), width=width)).eval()
        times = []
        with torch.no_grad():
            for _ in range(reps + 1):
                t0 = time.perf_counter()
                model(x, x, lengths)
                times.append(time.perf_counter() - t0)
        out[name] = 1000 * min(times[1:]) / batch
    return out


def ray_round_trip(cpus: int, n: int = 200) -> float:
    """Milliseconds per empty task, submitted n at a time, on a running local Ray."""
    import ray

    from trnet.experiments.engine_ray import start_local

    start_local(cpus)
    try:
        noop = ray.remote(lambda: None).options(num_cpus=1)
        ray.get([noop.remote() for _ in range(cpus)])  # workers up
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(n)])
        return 1000 * (time.perf_counter() - t0) / n
    finally:
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs for either engine (default 2)")
    ap.add_argument("--se", help="SE back-end (default: the demo's, dfn3 if usable)")
    ap.add_argument("--quick", action="store_true", help="the demo's --quick recipe (start-up costs dominate it)")
    ap.add_argument("--sequential", action="store_true", help="also time the local engine with --jobs 1")
    ap.add_argument("--repeat", type=int, default=1, help="alternate the engines this many times (median ratio)")
    ap.add_argument("--ray-first", action="store_true", help="run Ray before the local engine (load drifts)")
    ap.add_argument("--out", type=Path, help="keep the work directories here (default: a temporary folder)")
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--costs", type=Path, help="only the per-task costs, from this finished demo work directory")
    args = ap.parse_args()
    if args.costs:
        print(
            json.dumps(
                {
                    **task_costs(args.costs),
                    "evaluation_s": evaluation_cost(args.costs),
                    "store_read": store_read(args.costs),
                    "forward_ms_w32": forward_cost(),
                },
                indent=1,
            )
        )
        return 0

    se = args.se or default_se()
    root = args.out or Path(tempfile.mkdtemp(prefix="trnet-bench-engine-"))
    base = recipe_from_dict(demo_table(None, args.quick, se), base=root, origin="bench/engine.py (demo recipe)")
    print(f"demo recipe ({'quick' if args.quick else 'full'}), SE {se}, {args.cpus} CPUs; work under {root}")
    prepare(replace(base, work=root / "corpus-only"), lambda line: None)  # generate the corpus once, untimed

    engines = {"local": dict(engine="local", jobs=args.cpus), "ray": dict(engine="ray", jobs=1)}
    if args.ray_first:
        engines = {"ray": engines["ray"], "local": engines["local"]}
    if args.sequential:
        engines["local-jobs1"] = dict(engine="local", jobs=1)
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for rep in range(args.repeat):
        for name, how in engines.items():
            work = root / f"{name}-{rep}"
            shutil.rmtree(work, ignore_errors=True)
            recipe = with_overrides(base, work=work, engine=how["engine"])
            print(f"\n{name} (repeat {rep + 1}/{args.repeat}):")
            runs[name].append({**timed_run(recipe, args.cpus, how["jobs"]), "work": str(work)})

    median = {name: statistics.median(r["total_s"] for r in rs) for name, rs in runs.items()}
    ratios = [r["total_s"] / loc["total_s"] for r, loc in zip(runs["ray"], runs["local"], strict=False)]
    result = {
        "recipe": "demo-quick" if args.quick else "demo",
        "se": se,
        "cpus": args.cpus,
        "runs": runs,
        "ratio_ray_over_local": statistics.median(ratios),
        "costs": task_costs(Path(runs["local"][0]["work"])),
        "evaluation_s": evaluation_cost(Path(runs["local"][0]["work"])),
        "store_read": store_read(Path(runs["local"][0]["work"])),
        "forward_ms_w32": forward_cost(),
        "ray_task_round_trip_ms": ray_round_trip(args.cpus),
    }
    print("\nwall time (s), median of", args.repeat)
    for name, rs in runs.items():
        store = statistics.median(r["store_s"] or 0 for r in rs)
        print(
            f"  {name:<12} total {median[name]:7.1f}   store {store:7.1f}   train+evaluate "
            f"{statistics.median(r['grid_s'] for r in rs):7.1f}"
        )
    c = result["costs"]
    print(
        f"per task (local engine, 1 thread): store chunk ({c['utterances_per_chunk']:.0f} utterances x "
        f"{c['conditions']} conditions) SE {c['se_s_per_chunk']:.2f} s; training epoch "
        + ", ".join(f"{s} {t:.2f} s" for s, t in c["epoch_s"].items())
        + f"; evaluation of a TRNet run {result['evaluation_s']:.2f} s; store read "
        f"{result['store_read']['ms_per_example']:.2f} ms/example; empty Ray task "
        f"{result['ray_task_round_trip_ms']:.2f} ms"
    )
    print(
        f"Ray overhead: {result['ratio_ray_over_local']:.2f}x the local engine's wall time "
        f"({'target <= 1.2x' if not args.quick else 'the quick recipe: start-up dominates'})"
    )
    if args.sequential:
        print(f"vs trnet demo's own setting (--jobs 1): {median['ray'] / median['local-jobs1']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
