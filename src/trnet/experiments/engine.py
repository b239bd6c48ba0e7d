"""How a recipe's independent work is run: the engine interface, and the local engine (the
default: processes on this machine). The Ray engine (`engine_ray.py`) runs the same work as
Ray tasks, on a cluster or a local Ray.

Three kinds of work are independent enough to spread out:
  store chunks    a few utterances through noise, SE and LMFB (`trnet.store.builder.process_chunk`);
                  computed anywhere, committed by the builder alone, in job order
  training        one task per (fold, seed) group; inside it Baseline-c (TRNet's teacher)
                  trains before the systems that need it (`train_group`)
  evaluation      one task per run (`evalcache.evaluate_run`, cached in the run directory)
Each run is seeded by itself, so the engine decides speed, never numbers.

A run is trained under its run lock (`trnet.runs.lock`, RUN/.lock, an OS file lock), so two
processes never train one run at once. That matters when a driver dies by kill -9
while its workers (local processes or Ray tasks) are still training: the rerun waits for
them instead of training the same run beside them, then resumes or skips it.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trnet import runs
from trnet.experiments.evalcache import Evaluation, evaluate_run
from trnet.experiments.grid import run_spec, runs_dir
from trnet.experiments.recipe import Recipe, RecipeError
from trnet.store import ChunkMap, ConditionStore
from trnet.training.trainer import RunSpec, train
from trnet.utils import die_with_parent

Log = Callable[[str], None]


class EngineError(RecipeError):
    """An engine that cannot run here (Ray missing, a cluster out of reach, a work directory
    its workers cannot see); the message says what to do."""


@dataclass(frozen=True)
class Grid:
    """The training and evaluation work of a recipe, once its stores exist."""

    recipe: Recipe
    stores: dict[int, Path]  # seed -> store
    folds: tuple[int, ...]
    order: list[str]  # training order inside a (fold, seed) group: Baseline-c first
    device: str

    @property
    def groups(self) -> list[tuple[int, int]]:
        return [(fold, seed) for seed in self.recipe.seeds for fold in self.folds]

    @property
    def total(self) -> int:
        return len(self.recipe.systems) * len(self.folds) * len(self.recipe.seeds)

    def spec(self, system: str, fold: int, seed: int) -> RunSpec:
        root = runs_dir(self.recipe, seed, ConditionStore(self.stores[seed]))
        return run_spec(self.recipe, system, fold, seed, self.stores[seed], root, self.device)


@dataclass
class RunResult:
    """A run of the grid, trained and evaluated (a teacher-only run is not one)."""

    system: str
    fold: int
    seed: int
    dir: Path
    best: dict[str, Any]  # done.json
    evaluation: Evaluation


# --------------------------------------------------------------------------- progress lines


def summary_uar(conditions: list[dict[str, Any]]) -> str:
    """'clean 58.0 | esc50 51.2 | demand 49.8': test UAR (%), noise corpora as SNR means."""
    parts, by_noise = [], {}
    for c in conditions:
        if c["noise"] == "clean":
            parts.append(f"clean {100 * c['uar']:.1f}")
        else:
            by_noise.setdefault(c["noise"], []).append(c["uar"])
    parts += [f"{noise} {100 * float(np.mean(v)):.1f}" for noise, v in by_noise.items()]
    return " | ".join(parts)


def run_head(system: str, fold: int, seed: int, best: dict[str, Any]) -> str:
    return (f"{system:<14} fold {fold:>2} seed {seed}  val UAR {100 * best['val_uar']:5.1f} "
            f"(epoch {best['epoch']})")


def trained_status(seconds: float | None) -> str:
    return "trained before" if seconds is None else f"trained {seconds:.0f} s"


def evaluated_line(done: int, total: int, result: RunResult, trained: float | None, evaluated: float) -> str:
    """The progress line of a finished run: the same from every engine."""
    status = trained_status(trained)
    status += ", evaluated before" if result.evaluation.cached else f", evaluated {evaluated:.0f} s"
    return (f"[{done}/{total}] {run_head(result.system, result.fold, result.seed, result.best)}  "
            f"test UAR {summary_uar(result.evaluation.conditions)}  ({status})")


# --------------------------------------------------------------------------- training


def train_locked(spec: RunSpec, quiet: bool = True) -> float | None:
    """Train (or resume) one run under its run lock (`trnet.runs.lock`), waiting while another
    process (a killed driver's worker) still trains it; seconds spent, None if it was
    finished, before or by the process waited for."""
    if runs.is_finished(spec.dir):
        return None
    t0 = time.time()
    with runs.lock(spec.dir, wait=True):  # train() re-enters it
        if runs.is_finished(spec.dir):
            return None
        train(spec, quiet=quiet)
    return time.time() - t0


def train_runs(grid: Grid, fold: int, seed: int) -> list[tuple[str, float | None, dict[str, Any]]]:
    """Train one (fold, seed)'s systems in order (Baseline-c, the teacher, first); returns
    (system, seconds or None if trained before, done.json) for each."""
    out = []
    for system in grid.order:
        spec = grid.spec(system, fold, seed)
        seconds = train_locked(spec)
        out.append((system, seconds, runs.read_done(spec.dir)))
    return out


def trained_lines(fold: int, seed: int, trained: list[tuple[str, float | None, dict[str, Any]]]) -> list[str]:
    """A progress line per run that this group trained now."""
    return [f"{run_head(system, fold, seed, best)}  trained {seconds:.0f} s"
            for system, seconds, best in trained if seconds is not None]


def train_group(recipe: Recipe, systems: list[str], fold: int, seed: int, store: Path, device: str) -> list[str]:
    """Train one (fold, seed)'s systems in order (Baseline-c, the teacher, first); returns a
    progress line per run it trained."""
    torch.set_num_threads(1)  # the parallelism is across processes
    grid = Grid(recipe, {seed: store}, (fold,), systems, device)
    return trained_lines(fold, seed, train_runs(grid, fold, seed))


def train_parallel(recipe: Recipe, stores: dict[int, Path], folds: tuple[int, ...], order: list[str], jobs: int,
                   device: str, log: Callable[[str], None]) -> None:
    """Train every (fold, seed) group in `jobs` local processes, logging as groups finish."""
    groups = [(fold, seed) for seed in recipe.seeds for fold in folds]
    log(f"training {len(groups)} (fold, seed) groups in {jobs} parallel processes")
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:  # workers exit when this process dies
        futures = [pool.submit(train_group, recipe, order, fold, seed, stores[seed], device) for fold, seed in groups]
        for future in as_completed(futures):
            for line in future.result():
                log(line)


# --------------------------------------------------------------------------- engines


class Engine:
    """Runs a recipe's independent work. Used as a context manager around the store and
    grid steps (an engine may start or join a cluster there)."""

    name = "engine"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def describe(self) -> dict[str, Any]:
        """What meta.json records about the engine."""
        return {"kind": self.name}

    def default_device(self) -> str:
        return "cuda" if torch.cuda.is_available() else "cpu"

    def chunk_map(self) -> ChunkMap | None:
        """How store chunks are computed (None: the builder's local processes)."""
        return None

    def run_grid(self, grid: Grid, verbose: bool, log: Log) -> dict[tuple[str, int, int], RunResult]:
        """Train every run (teachers first) and evaluate every run of the recipe's systems,
        logging a line per finished task; (system, fold, seed) -> result."""
        raise NotImplementedError


class LocalEngine(Engine):
    """The default: `jobs` local processes train (fold, seed) groups, then runs are trained
    (what is left) and evaluated one after the other in this process, in grid order."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def describe(self) -> dict[str, Any]:
        return {"kind": self.name, "jobs": self.jobs}

    def run_grid(self, grid: Grid, verbose: bool, log: Log) -> dict[tuple[str, int, int], RunResult]:
        recipe = grid.recipe
        if self.jobs > 1:
            train_parallel(recipe, grid.stores, grid.folds, grid.order, self.jobs, grid.device, log)
        done, out = 0, {}
        for seed in recipe.seeds:
            store = ConditionStore(grid.stores[seed])
            for fold in grid.folds:
                for system in grid.order:
                    spec = grid.spec(system, fold, seed)
                    trained = train_locked(spec, quiet=not verbose)
                    best = runs.read_done(spec.dir)
                    if system not in recipe.systems:
                        log(f"[teacher]  {run_head(system, fold, seed, best)}  {trained_status(trained)}")
                        continue
                    t0 = time.time()
                    ev = evaluate_run(spec.dir, store, fold, system, recipe.train_noise, grid.device)
                    done += 1
                    result = RunResult(system, fold, seed, spec.dir, best, ev)
                    log(evaluated_line(done, grid.total, result, trained, time.time() - t0))
                    out[(system, fold, seed)] = result
        return out

