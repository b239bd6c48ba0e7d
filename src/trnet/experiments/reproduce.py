"""`trnet reproduce RECIPE`: the paper's grid (systems x folds x seeds, §4-§5) from one recipe
file (`trnet.experiments.recipe`), end to end and resumable.

Steps, each of which skips what is already done, so that a killed run just continues:
  1. prepare  manifests of the corpus and every noise corpus (manifests.py)
  2. store    the condition store(s): clean/noisy/enhanced LMFB (trnet.store resumes itself)
  3. train    every (system, fold, seed), Baseline-c first since it is TRNet's teacher;
              finished runs are skipped, unfinished ones resume after their last epoch
  4. evaluate every chosen run on its TEST speaker under every condition, cached (evalcache.py)
  5. results  WORK/results/ (results.py), then the report (report.py)

Where everything lives in WORK: grid.py. Who computes the store chunks, the training and the
evaluations: the engine (engine.py: local processes, the default; engine_ray.py: Ray tasks).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from trnet.corpora import CorpusError, read_manifest
from trnet.device import torch_device
from trnet.experiments.engine import Engine, Grid, LocalEngine
from trnet.experiments.engine_ray import RayEngine
from trnet.experiments.grid import build_stores, check_se, training_order, work_lock
from trnet.experiments.manifests import prepare
from trnet.experiments.recipe import Recipe, RecipeError, load_recipe, with_overrides
from trnet.experiments.report import make_report
from trnet.experiments.results import git_commit, predictions_path, write_results
from trnet.models import load_config
from trnet.protocol.folds import loso_folds
from trnet.store import ConditionStore
from trnet.utils import atomic_path, free_cores


def make_engine(recipe: Recipe, workers: int = 1, jobs: int = 1, verbose: bool = False) -> Engine:
    """The recipe's engine (`recipe.engine`, with the command line's overrides applied)."""
    if recipe.engine.kind == "ray":
        read = [recipe.corpus.root, *(s.root for s in recipe.noise.values())]
        return RayEngine(recipe.engine, recipe.work, workers, verbose, read)
    return LocalEngine(jobs)


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def reproduce(recipe: Recipe, workers: int = 1, device: str | None = None, verbose: bool = False,
              quiet: bool = False, report: bool = True, threads: int | None = None, jobs: int = 1,
              log: Callable[[str], None] = print) -> Path:
    """Run a recipe's whole grid on its engine; returns the results directory. `device`:
    default cuda if available (Ray: if tasks have GPUs), else cpu. `threads` caps torch's CPU
    threads (and OpenMP/BLAS pools, e.g. t-SNE's) for the run: on a shared machine, more OpenMP
    threads than free cores stall each other (measured: 3 epochs took 40-85 s with 2 threads,
    6 s with 1, on 2 busy cores)."""
    if device is not None:
        torch_device(device)  # a device this machine lacks: one line, before any work
    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        with work_lock(recipe.work), threadpool_limits(limits=threads):  # also t-SNE's OpenMP, BLAS
            return _reproduce(recipe, workers, device, verbose, quiet, report, log, jobs)
    finally:
        torch.set_num_threads(before)


def _reproduce(recipe: Recipe, workers: int, device: str | None, verbose: bool, quiet: bool, report: bool,
               log: Callable[[str], None], jobs: int = 1) -> Path:
    started = time.time()
    log(f"recipe {recipe.name} ({recipe.origin}) -> {recipe.work}")
    check_se(recipe)  # before any work
    with make_engine(recipe, workers, jobs, verbose) as engine:
        results_dir = _run(recipe, engine, workers, device or engine.default_device(), verbose, quiet, log, started)
    if report:
        log(f"report: {make_report(results_dir)}")
    return results_dir


def _run(recipe: Recipe, engine: Engine, workers: int, device: str, verbose: bool, quiet: bool,
         log: Callable[[str], None], started: float) -> Path:
    corpus, noise, info = prepare(recipe, log)
    n_folds = len(loso_folds(read_manifest(corpus)))
    folds = recipe.folds if recipe.folds is not None else tuple(range(n_folds))
    bad = [f for f in folds if not 0 <= f < n_folds]
    if bad:
        raise RecipeError(f"folds {bad} out of range: this corpus has {n_folds} folds (0..{n_folds - 1})")
    chunks = engine.chunk_map(recipe.se, recipe.se_options)  # None: the builder's local processes
    stores = build_stores(recipe, corpus, noise, workers, quiet, map_chunks=chunks)

    order = training_order(recipe.systems, needs_teacher=any(load_config(s).teacher for s in recipe.systems))
    results = engine.run_grid(Grid(recipe, stores, folds, order, device), verbose, log)
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
            stale.unlink()
    meta = {
        "recipe": {"name": recipe.name, "origin": recipe.origin, "table": recipe.table},
        "commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "se": {
            "name": recipe.se,
            "options": recipe.se_options,
            "version": stores_meta[str(recipe.seeds[0])]["se_version"],
        },
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


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe TOML (see recipes/)")
    p.add_argument("--folds", help="comma-separated fold indices, or 'all' (default: the recipe's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the recipe's)")
    p.add_argument("--systems", help="comma-separated systems, e.g. trnet,baseline-e (default: the recipe's)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the recipe's)")
    p.add_argument("--work", type=Path, help="work directory (default: the recipe's)")
    p.add_argument("--workers", type=int, default=free_cores(),
                   help="processes building the condition store (default: the free cores, %(default)s now; "
                        "ray: the CPUs of the local Ray it starts)")
    p.add_argument("--device", help="torch device for training and evaluation (default: cuda if available, else cpu; "
                                    "ray: cuda if tasks have GPUs)")
    p.add_argument("--threads", type=int, help="torch CPU threads for training (default: torch's, one per core); "
                                               "use 1 on a machine shared with other jobs")
    p.add_argument("--jobs", type=int, default=1,
                   help="local engine: train this many (fold, seed) groups in parallel, one thread each "
                        "(CPU: try the core count)")
    p.add_argument("--engine", choices=("local", "ray"),
                   help="where the work runs (default: the recipe's, else local): local processes, or Ray tasks")
    p.add_argument("--address", help="ray: a running cluster to join ('auto', 'ray://head:10001'); "
                                     "default: start a local Ray of --workers CPUs")
    p.add_argument("--num-cpus", type=float, help="ray: CPUs per task (default: the recipe's, else 1)")
    p.add_argument("--num-gpus", type=float,
                   help="ray: GPUs per training/evaluation task; fractional shares a GPU, e.g. 0.25 (default 0)")
    p.add_argument("--verbose", action="store_true", help="print every training epoch")
    p.add_argument("--no-report", action="store_true", help="write the results but not the report")


def run(args: argparse.Namespace) -> int:
    try:
        recipe = with_overrides(load_recipe(args.recipe), args.folds, args.seeds, args.systems, args.epochs, args.work,
                                args.engine, args.address, args.num_cpus, args.num_gpus)
        reproduce(recipe, workers=args.workers, device=args.device, verbose=args.verbose, report=not args.no_report,
                  threads=args.threads, jobs=args.jobs)
    except (RecipeError, CorpusError) as err:
        print(f"trnet reproduce: error: {err}", file=sys.stderr)
        return 2
    return 0
