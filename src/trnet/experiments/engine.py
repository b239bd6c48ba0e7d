"""How a recipe's independent work is run: here, in local processes (the default engine).

Training is the parallel part: the (fold, seed) groups are independent of each other, and
inside a group Baseline-c (TRNet's teacher) trains before the systems that need it. Each
group runs in a one-thread process: on CPU, small convolutions scale better across processes
than across threads. Results are the same as sequential training (each run is seeded by
itself), so the engine decides speed, never numbers.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from trnet import runs
from trnet.experiments.grid import run_spec, runs_dir
from trnet.experiments.recipe import Recipe
from trnet.store import ConditionStore
from trnet.training.trainer import train
from trnet.utils import die_with_parent


def train_group(recipe: Recipe, systems: list[str], fold: int, seed: int, store: Path, device: str) -> list[str]:
    """Train one (fold, seed)'s systems in order (Baseline-c, the teacher, first); returns a
    progress line per run it trained."""
    torch.set_num_threads(1)  # the parallelism is across processes
    root = runs_dir(recipe, seed, ConditionStore(store))
    lines = []
    for system in systems:
        spec = run_spec(recipe, system, fold, seed, store, root, device)
        if runs.is_finished(spec.dir):
            continue
        t0 = time.time()
        train(spec, quiet=True)
        best = runs.read_done(spec.dir)
        lines.append(f"{system:<14} fold {fold:>2} seed {seed}  val UAR {100 * best['val_uar']:5.1f} "
                     f"(epoch {best['epoch']})  trained {time.time() - t0:.0f} s")
    return lines


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
