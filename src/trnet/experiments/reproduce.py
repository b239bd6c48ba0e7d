"""`trnet reproduce RECIPE`: the paper's grid (systems x folds x seeds, §4-§5) from one recipe
file (`trnet.experiments.recipe`), end to end and resumable.

Steps, each of which skips what is already done, so that a killed run just continues:
  1. prepare  manifests of the corpus and every noise corpus (manifests.py)
  2. store    the condition store(s): clean/noisy/enhanced LMFB (trnet.store resumes itself)
  3. train    every (system, fold, seed), Baseline-c first since it is TRNet's teacher;
              finished runs are skipped, unfinished ones resume after their last epoch
  4. evaluate every chosen run on its TEST speaker under every condition, cached (evalcache.py)
  5. results  WORK/results/ (results.py), then the report (report.py)

`train_only` (`--train-only`) stops after step 3: the runs exist, nothing is evaluated and no
results are written, so that a study can check its runs on validation speakers alone (e.g. that
c moves with the SNR: `trnet.experiments.validation_c`) before any test result exists; the same
command without the flag then evaluates the finished runs exactly as an uninterrupted grid.

Where everything lives in WORK: grid.py. Who computes the store chunks, the training and the
evaluations: the engine (engine.py: local processes, the default; engine_ray.py: Ray tasks).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from trnet.corpora import read_manifest
from trnet.device import torch_device
from trnet.experiments.engine import Engine, Grid, LocalEngine
from trnet.experiments.engine_ray import RayEngine
from trnet.experiments.grid import build_stores, check_se, work_lock
from trnet.experiments.manifests import prepare
from trnet.experiments.recipe import Recipe, RecipeError
from trnet.models import training_order
from trnet.options import check_counts
from trnet.protocol.folds import loso_folds
from trnet.report.markdown import make_report
from trnet.report.results import git_commit, predictions_path, write_results
from trnet.store import ConditionStore
from trnet.utils import atomic_path, inside


def make_engine(recipe: Recipe, workers: int = 1, jobs: int = 1, verbose: bool = False) -> Engine:
    """The recipe's engine (`recipe.engine`, with the command line's overrides applied)."""
    if recipe.engine.kind == "ray":
        read = [recipe.corpus.root, *(s.root for s in recipe.noise.values())]
        return RayEngine(recipe.engine, recipe.work, workers, verbose, read)
    return LocalEngine(jobs)


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def reproduce(
    recipe: Recipe,
    workers: int = 1,
    device: str | None = None,
    verbose: bool = False,
    quiet: bool = False,
    report: bool = True,
    threads: int | None = None,
    jobs: int = 1,
    log: Callable[[str], None] = print,
    train_only: bool = False,
) -> Path | None:
    """Run a recipe's whole grid on its engine; returns the results directory (None with
    `train_only`: the runs are trained, nothing is evaluated). `device`:
    default cuda if available (Ray: if tasks have GPUs), else cpu. `threads` caps torch's CPU
    threads (and OpenMP/BLAS pools, e.g. t-SNE's) for the run: on a shared machine, more OpenMP
    threads than free cores stall each other (measured: 3 epochs took 40-85 s with 2 threads,
    6 s with 1, on 2 busy cores)."""
    if device is not None:
        torch_device(device)  # a device this machine lacks: one line, before any work
    check_counts(workers=workers, jobs=jobs, threads=threads)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        with work_lock(recipe.work), threadpool_limits(limits=threads):  # also t-SNE's OpenMP, BLAS
            return _reproduce(recipe, workers, device, verbose, quiet, report, log, jobs, train_only)
    finally:
        torch.set_num_threads(before)


def _reproduce(
    recipe: Recipe,
    workers: int,
    device: str | None,
    verbose: bool,
    quiet: bool,
    report: bool,
    log: Callable[[str], None],
    jobs: int = 1,
    train_only: bool = False,
) -> Path | None:
    started = time.time()
    log(f"recipe {recipe.name} ({recipe.origin}) -> {recipe.work}")
    check_se(recipe)  # before any work
    with make_engine(recipe, workers, jobs, verbose) as engine:
        device = device or engine.default_device()
        results_dir = _run(recipe, engine, workers, device, verbose, quiet, log, started, train_only)
    if report and results_dir is not None:
        log(f"report: {make_report(results_dir)}")
    return results_dir


def _run(
    recipe: Recipe,
    engine: Engine,
    workers: int,
    device: str,
    verbose: bool,
    quiet: bool,
    log: Callable[[str], None],
    started: float,
    train_only: bool = False,
) -> Path | None:
    corpus, noise, info = prepare(recipe, log)
    n_folds = len(loso_folds(read_manifest(corpus)))
    folds = recipe.folds if recipe.folds is not None else tuple(range(n_folds))
    bad = [f for f in folds if not 0 <= f < n_folds]
    if bad:
        raise RecipeError(f"folds {bad} out of range: this corpus has {n_folds} folds (0..{n_folds - 1})")
    chunks = engine.chunk_map()  # None: the builder's local processes
    stores = build_stores(recipe, corpus, noise, workers, quiet, map_chunks=chunks)

    order = training_order(recipe.systems)
    grid = Grid(recipe, stores, folds, order, device, evaluate=not train_only)
    results = engine.run_grid(grid, verbose, log)
    if train_only:
        log(
            f"train only: {grid.total} runs trained under {recipe.work / 'runs'}; nothing was evaluated and "
            "no results were written (rerun the same command without --train-only to evaluate them)"
        )
        return None
    rows: list[dict[str, Any]] = []
    runs_meta: list[dict[str, Any]] = []
    stores_meta: dict[str, Any] = {}
    results_dir = recipe.work / "results"
    keep: set[Path] = set()
    for seed in recipe.seeds:  # grid order, whatever order the engine finished the runs in
        store = ConditionStore(stores[seed])
        stores_meta[str(seed)] = {
            "path": str(stores[seed]),
            "hash": store.key["hash"],
            "se_version": store.key["se_version"],
        }
        for fold in folds:
            for system in recipe.systems:
                r = results[(system, fold, seed)]
                ev, pred = r.evaluation, predictions_path(results_dir, system, fold, seed)
                _copy(ev.predictions, pred)
                keep.add(pred)
                for c in ev.conditions:
                    rows.append({"system": system, "fold": fold, "seed": seed, "test_speaker": ev.test_speaker, **c})
                runs_meta.append(
                    {
                        "system": system,
                        "fold": fold,
                        "seed": seed,
                        "test_speaker": ev.test_speaker,
                        "val_uar": r.best["val_uar"],
                        "best_epoch": r.best["epoch"],
                        "epochs_run": r.best["epochs_run"],
                        **r.evaluation.diagnostics,
                        "run": str(r.dir),
                        "predictions": str(pred.relative_to(results_dir)),
                    }
                )
    for stale in (results_dir / "predictions").rglob("*.npz"):
        if stale not in keep:  # from an earlier, different grid: the report must not pick it up
            (inside(results_dir, stale.parent) / stale.name).unlink()  # a link is removed, never its target
    meta = {
        "recipe": {"name": recipe.name, "origin": recipe.origin, "table": recipe.table},
        "commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **recipe.se.to_fields(),
        "se_version": stores_meta[str(recipe.seeds[0])]["se_version"],
        **info,
        "train_noise": recipe.train_noise,
        "encoder": recipe.encoder,
        "width": recipe.width,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "snrs": list(recipe.snrs),
        "systems": list(recipe.systems),
        "folds": list(folds),
        "seeds": list(recipe.seeds),
        "noise_seed": recipe.noise_seed,
        "stores": stores_meta,
        "notes": list(recipe.notes),
        "device": device,
        "engine": engine.describe(),
        "runs": runs_meta,
        "seconds": round(time.time() - started, 1),
    }
    write_results(results_dir, rows, meta)
    log(f"results: {results_dir / 'results.csv'} ({len(rows)} rows)")
    return results_dir
