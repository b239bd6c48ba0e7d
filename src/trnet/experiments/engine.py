"""How a recipe's independent work is run: the engine interface, and the local engine (the
default: processes on this machine). The Ray engine (`engine_ray.py`) runs the same work as
Ray tasks, on a cluster or a local Ray.

Three kinds of work are independent enough to spread out:
  store chunks    a few utterances through noise, SE and LMFB (`trnet.store.builder.process_chunk`);
                  computed anywhere, committed by the builder alone, in job order
  training        one task per (fold, seed) group, Baseline-c (TRNet's teacher) first
                  (`train_group`); or, when runs are stacked (`stack_size`: on CUDA by default,
                  or --batch-runs N), one task per stack of runs of one system trained as one
                  stacked model (`trnet.training.batched`), Baseline-c's stacks first
                  (`stacks`, `train_stack`)
  evaluation      one task per run (`evalcache.evaluate_run`, cached in the run directory)
Each run is seeded by itself, and which runs share a stack follows from the recipe alone
(`stacks`), so the engine decides speed, never numbers.

A run is trained under its run lock (`trnet.runs.lock`, RUN/.lock, an OS file lock), so two
processes never train one run at once. That matters when a driver dies by kill -9
while its workers (local processes or Ray tasks) are still training: the rerun waits for
them instead of training the same run beside them, then resumes or skips it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trnet import configs, runs
from trnet.experiments.evalcache import Evaluation, evaluate_run
from trnet.experiments.grid import run_spec, runs_dir
from trnet.experiments.recipe import Recipe, RecipeError
from trnet.store import ChunkMap, ConditionStore
from trnet.training.batched import train_batched
from trnet.training.trainer import RunSpec, train
from trnet.utils import spawned_pool

Log = Callable[[str], None]
AUTO_STACK = 32  # runs per stack on CUDA when the recipe says batch_runs = 0 (auto)
Trained = dict[tuple[str, int, int], tuple[float | None, dict[str, Any]]]  # (system, fold, seed) -> seconds, done


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
    evaluate: bool = True  # False (`--train-only`): train every run and evaluate none

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
    return f"{system:<14} fold {fold:>2} seed {seed}  val UAR {100 * best['val_uar']:5.1f} (epoch {best['epoch']})"


def trained_status(seconds: float | None) -> str:
    return "trained before" if seconds is None else f"trained {seconds:.0f} s"


def evaluated_line(done: int, total: int, result: RunResult, trained: float | None, evaluated: float) -> str:
    """The progress line of a finished run: the same from every engine."""
    status = trained_status(trained)
    status += ", evaluated before" if result.evaluation.cached else f", evaluated {evaluated:.0f} s"
    return (
        f"[{done}/{total}] {run_head(result.system, result.fold, result.seed, result.best)}  "
        f"test UAR {summary_uar(result.evaluation.conditions)}  ({status})"
    )


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
    return [
        f"{run_head(system, fold, seed, best)}  trained {seconds:.0f} s"
        for system, seconds, best in trained
        if seconds is not None
    ]


def train_group(
    recipe: Recipe, systems: list[str], fold: int, seed: int, store: Path, device: str, evaluate: bool = True
) -> tuple[list[str], dict[tuple[str, int, int], float]]:
    """Train one (fold, seed)'s systems in order (Baseline-c, the teacher, first), then evaluate
    the recipe's systems among them unless `evaluate` is False (cached in each run directory,
    so the driver only reads them): the evaluations run in parallel with other groups'
    training instead of one after the other at the end. Returns a progress line per run
    trained, and the seconds of each evaluation made here."""
    torch.set_num_threads(1)  # the parallelism is across processes
    grid = Grid(recipe, {seed: store}, (fold,), systems, device, evaluate)
    lines = trained_lines(fold, seed, train_runs(grid, fold, seed))
    evaluated: dict[tuple[str, int, int], float] = {}
    opened = ConditionStore(store)
    for system in systems:
        if evaluate and system in recipe.systems:
            t0 = time.time()
            ev = evaluate_run(grid.spec(system, fold, seed).dir, opened, fold, system, recipe.train_noise, device)
            if not ev.cached:
                evaluated[(system, fold, seed)] = time.time() - t0
    return lines, evaluated


def train_parallel(
    recipe: Recipe,
    stores: dict[int, Path],
    folds: tuple[int, ...],
    order: list[str],
    jobs: int,
    device: str,
    log: Callable[[str], None],
    evaluate: bool = True,
) -> dict[tuple[str, int, int], float]:
    """Train (and unless `evaluate` is False, evaluate) every (fold, seed) group in `jobs` local
    processes, logging as groups finish; the seconds of each evaluation made there."""
    groups = [(fold, seed) for seed in recipe.seeds for fold in folds]
    log(f"training {len(groups)} (fold, seed) groups in {jobs} parallel processes")
    evaluated: dict[tuple[str, int, int], float] = {}
    with spawned_pool(jobs) as pool:
        futures = [
            pool.submit(train_group, recipe, order, fold, seed, stores[seed], device, evaluate) for fold, seed in groups
        ]
        for future in as_completed(futures):
            lines, seconds = future.result()
            evaluated.update(seconds)
            for line in lines:
                log(line)
    return evaluated


def stacks(grid: Grid) -> list[tuple[str, list[tuple[int, int]]]]:
    """The stacked training tasks of a grid, (system, [(fold, seed), ...]): each system's runs in
    grid order, cut into near-equal stacks of at most `stack_size(grid)`, systems in training
    order (Baseline-c, the teacher, first). It depends on the recipe and the device alone, so
    every engine and any --jobs train the same stacks: a run's numbers depend on its stack's
    other runs through float rounding (docs/design.md §7.1)."""
    chunks = split_even(grid.groups, stack_size(grid))
    return [(system, chunk) for system in grid.order for chunk in chunks]


def stack_size(grid: Grid) -> int:
    """Most runs per stack: the recipe's `batch_runs`, or with 0 (auto) AUTO_STACK on CUDA and 1
    (no stacking: the runs of earlier versions, bit for bit) on the CPU, where stacks measured
    slower than one run per process (docs/benchmarks.md)."""
    if grid.recipe.engine.batch_runs:
        return grid.recipe.engine.batch_runs
    return AUTO_STACK if str(grid.device).startswith("cuda") else 1


def split_even(items: list, most: int) -> list[list]:
    """`items` cut, in order, into the fewest near-equal chunks of at most `most` (10 by 8: 5 + 5)."""
    if not items:
        return []
    size = -(-len(items) // -(-len(items) // most))
    return [items[i : i + size] for i in range(0, len(items), size)]


def train_stack(grid: Grid, system: str, pairs: list[tuple[int, int]], threads: int | None = None) -> Trained:
    """Train one stack (teachers must be trained, or are trained here first); (system, fold,
    seed) -> (seconds, or None if trained before; done.json)."""
    if threads is not None:
        torch.set_num_threads(threads)
    specs = [grid.spec(system, fold, seed) for fold, seed in pairs]
    seconds = train_batched(specs, quiet=True, wait=True)
    return {(system, s.fold, s.seed): (seconds[s.dir], runs.read_done(s.dir)) for s in specs}


def stack_lines(trained: Trained) -> list[str]:
    return [
        f"{run_head(system, fold, seed, best)}  trained {seconds:.0f} s (stacked)"
        for (system, fold, seed), (seconds, best) in trained.items()
        if seconds is not None
    ]


def train_stacks(grid: Grid, jobs: int, log: Log) -> Trained:
    """Every stack of the grid in `jobs` local processes of one thread each (or here, with
    jobs = 1): the teachers' stacks first, then the rest, logging as stacks finish."""
    tasks = stacks(grid)
    teacher = configs.teacher()
    phases = [[t for t in tasks if t[0] == teacher], [t for t in tasks if t[0] != teacher]]
    out: Trained = {}
    if jobs <= 1:
        for system, pairs in tasks:
            trained = train_stack(grid, system, pairs)
            for line in stack_lines(trained):
                log(line)
            out.update(trained)
        return out
    log(f"training {len(tasks)} stacks of runs in {jobs} parallel processes")
    with spawned_pool(jobs) as pool:
        for phase in phases:
            futures = [pool.submit(train_stack, grid, system, pairs, 1) for system, pairs in phase]
            for future in as_completed(futures):
                trained = future.result()
                for line in stack_lines(trained):
                    log(line)
                out.update(trained)
    return out


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
        logging a line per finished task; (system, fold, seed) -> result. With
        `grid.evaluate` False, train only: a line per run, and no result."""
        raise NotImplementedError


class LocalEngine(Engine):
    """The default: `jobs` local processes train (fold, seed) groups and evaluate their runs (or
    the runs are trained as stacks), then whatever is left is trained and evaluated in this
    process, in grid order, and every run's line is printed."""

    name = "local"

    def __init__(self, jobs: int = 1):
        self.jobs = jobs

    def describe(self) -> dict[str, Any]:
        return {"kind": self.name, "jobs": self.jobs}

    def run_grid(self, grid: Grid, verbose: bool, log: Log) -> dict[tuple[str, int, int], RunResult]:
        recipe = grid.recipe
        stacked: Trained = {}
        evaluated: dict[tuple[str, int, int], float] = {}  # evaluations the training processes made
        if stack_size(grid) > 1:
            stacked = train_stacks(grid, self.jobs, log)
        elif self.jobs > 1:
            evaluated = train_parallel(
                recipe, grid.stores, grid.folds, grid.order, self.jobs, grid.device, log, grid.evaluate
            )
        done, out = 0, {}
        for seed in recipe.seeds:
            store = ConditionStore(grid.stores[seed])
            for fold in grid.folds:
                for system in grid.order:
                    spec = grid.spec(system, fold, seed)
                    key = (system, fold, seed)
                    trained = stacked[key][0] if key in stacked else train_locked(spec, quiet=not verbose)
                    best = runs.read_done(spec.dir)
                    if system not in recipe.systems:
                        log(f"[teacher]  {run_head(system, fold, seed, best)}  {trained_status(trained)}")
                        continue
                    if not grid.evaluate:
                        done += 1
                        log(f"[{done}/{grid.total}] {run_head(system, fold, seed, best)}  {trained_status(trained)}")
                        continue
                    t0 = time.time()
                    ev = evaluate_run(spec.dir, store, fold, system, recipe.train_noise, grid.device)
                    if key in evaluated:  # made by a training process just now: say so, with its time
                        ev = replace(ev, cached=False)
                    done += 1
                    result = RunResult(system, fold, seed, spec.dir, best, ev)
                    log(evaluated_line(done, grid.total, result, trained, evaluated.get(key, time.time() - t0)))
                    out[(system, fold, seed)] = result
        return out
