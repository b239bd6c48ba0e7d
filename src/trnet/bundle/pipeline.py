"""`trnet bundle RECIPE`: the bundled model from one command, end to end and resumable
(docs/design.md §11). Stages, each of which skips what is done, so that a
run killed at any point (even kill -9) continues where it stopped when started again:

  1. manifests   each corpus prefixed, all corpora combined, each noise corpus (plan.py)
  2. stores      the shipped model's store and, per leave-one-corpus-out direction, a
                 training store (no test noise) and the held-out corpus's test store
                 (trnet.store resumes itself)
  3. train       the shipped model, then every direction x seed for the system and the
                 baseline; runs resume after their last epoch (trnet.training)
  4. evaluate    every LOCO run on all of the held-out corpus, cached (transfer.py), and
                 c on non-speech input: silence, white noise, the test noise alone (nonspeech.py)
  5. results     results/loco.csv, results/summary.json (results.py)
  6. bundle      WORK/bundle/<name>/: weights, config, manifest with SHA-256s (publish.py)
  7. measure     RTF and peak memory of `trnet predict` on 5 s and 60 s inputs (measure.py)
  8. card        card/results.md, the model card's measured sections (card.py)

Progress lines carry wall times and go to stdout and WORK/bundle.log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from trnet import corpora, runs
from trnet.bundle import card, measure, plan, publish, results
from trnet.bundle.nonspeech import nonspeech_c
from trnet.bundle.recipe import BundleRecipe, BundleRecipeError
from trnet.bundle.transfer import evaluate_transfer
from trnet.corpora import LoadResult, write_manifest
from trnet.corpora.combined import combine
from trnet.models import training_order
from trnet.options import check_counts
from trnet.store import BuildSpec, ConditionStore, SettingsChanged, build
from trnet.training.trainer import RunSpec, train
from trnet.utils import LockedError, UserError, check_folder_path, exclusive_lock, spawned_pool

Log = Callable[[str], None]


def logger(work: Path, echo: Log = print) -> Log:
    """Print a line and append it, with the time, to WORK/bundle.log."""

    def log(line: str) -> None:
        echo(line)
        with open(work / "bundle.log", "a") as f:
            f.write(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}\n")

    return log


def write_if_changed(path: Path, result: LoadResult) -> bool:
    """Write a manifest only if its content changed, so that the stores keyed on it stay valid."""
    tmp = path.with_name(f".{path.name}.new")
    write_manifest(tmp, result.rows, result.kind)
    if path.is_file() and tmp.read_bytes() == path.read_bytes():
        tmp.unlink()
        return False
    os.replace(tmp, path)
    return True


def prepare(recipe: BundleRecipe, log: Log) -> dict[str, Any]:
    """Stage 1: the manifests; returns what the bundle's manifest says about each corpus."""
    info: dict[str, Any] = {"corpora": {}, "noise": {}}
    parts = {}
    for name, source in recipe.corpora.items():
        found = corpora.load(source.kind, source.root, "utterances", **source.options)
        parts[name] = found.rows
        info["corpora"][name] = {
            "utterances": len(found.rows),
            "speakers": len({r["speaker"] for r in found.rows}),
            "set_aside": found.set_aside,
        }
        rows = combine({name: found.rows})
        written = write_if_changed(plan.manifest_path(recipe, name), LoadResult("utterances", rows))
        log(f"manifest {name}: {len(rows)} utterances{' (written)' if written else ' (unchanged)'}")
    combined = combine(parts)
    write_if_changed(plan.manifest_path(recipe, plan.ALL), LoadResult("utterances", combined))
    for name, source in recipe.noise.items():
        found = corpora.load(source.kind, source.root, "noise", **source.options)
        info["noise"][name] = {"clips": len(found.rows), "sources": len({r["source"] for r in found.rows})}
        written = write_if_changed(plan.noise_path(recipe, name), found)
        log(f"manifest noise {name}: {len(found.rows)} clips{' (written)' if written else ' (unchanged)'}")
    return info


def build_stores(recipe: BundleRecipe, workers: int, log: Log) -> None:
    """Stage 2: every store of the recipe (each resumes itself)."""
    for name, sp in plan.stores(recipe).items():
        t0 = time.time()
        path = plan.store_path(recipe, name)
        spec = BuildSpec(
            corpus=plan.manifest_path(recipe, sp.corpus).resolve(),
            noise={n: plan.noise_path(recipe, n).resolve() for n in sp.noises},
            se=recipe.se,
            seed=recipe.noise_seed,
            snrs=sp.snrs,
        )
        try:
            build(spec, path, workers=workers, quiet=True)
        except SettingsChanged as err:
            raise BundleRecipeError(
                f"the store {path} was built with other settings ({err.differences}); use "
                f"another --work, or delete {path} to build it again"
            ) from None
        store = ConditionStore(path)
        log(
            f"store {name}: {len(store.rows)} utterances x {len(store.conditions)} conditions "
            f"({', '.join(sp.noises)} at {', '.join(map(str, sp.snrs))} dB)  ({time.time() - t0:.0f} s)"
        )


def train_locked(spec: RunSpec) -> float | None:
    """Train (or resume) a run under its lock, waiting for another process that trains it;
    seconds spent, or None if it was finished before."""
    if runs.is_finished(spec.dir):
        return None
    t0 = time.time()
    with runs.lock(spec.dir, wait=True):
        if runs.is_finished(spec.dir):
            return None
        train(spec, quiet=True)
    return time.time() - t0


def train_group(recipe: BundleRecipe, group: plan.Group, device: str, threads: int | None) -> list[str]:
    """Train a group's runs in order; a progress line per run."""
    if threads:
        torch.set_num_threads(threads)
    lines = []
    for system in training_order(group.systems):
        spec = plan.run_spec(recipe, group, system, device)
        seconds = train_locked(spec)
        done = runs.read_done(spec.dir)
        status = "trained before" if seconds is None else f"trained {seconds:.0f} s"
        lines.append(
            f"{group.label}: {system:<14} val UAR {100 * done['val_uar']:5.1f} (epoch {done['epoch']} of "
            f"{done['epochs_run']})  {status}  {spec.dir}"
        )
    return lines


def train_all(recipe: BundleRecipe, device: str, jobs: int, threads: int | None, log: Log) -> None:
    """Stage 3: every group, in `jobs` processes (one thread each unless --threads) or here."""
    todo = plan.groups(recipe)
    if jobs <= 1:
        for group in todo:
            for line in train_group(recipe, group, device, threads):
                log(line)
        return
    log(f"training {len(todo)} groups in {jobs} parallel processes")
    with spawned_pool(jobs) as pool:
        futures = [pool.submit(train_group, recipe, group, device, threads or 1) for group in todo]
        for future in as_completed(futures):
            for line in future.result():
                log(line)


def evaluate_all(recipe: BundleRecipe, device: str, log: Log) -> list[dict[str, Any]]:
    """Stage 4: every LOCO run on all of its held-out corpus; one record per run."""
    out = []
    for group in plan.groups(recipe):
        if group.test_store is None:
            continue
        test = ConditionStore(plan.store_path(recipe, group.test_store))
        for system in group.systems:
            t0 = time.time()
            spec = plan.run_spec(recipe, group, system, device)
            ev = evaluate_transfer(spec.dir, test, device)
            has_c = any(c["mean_c"] is not None for c in ev["conditions"])
            out.append(
                {
                    "train": group.train_corpus,
                    "test": group.test_corpus,
                    "system": system,
                    "seed": group.seed,
                    "run": str(spec.dir),
                    **ev,
                    "nonspeech": nonspeech_c(spec.dir, plan.noise_path(recipe, recipe.test_noise)) if has_c else None,
                }
            )
            status = "evaluated before" if ev["cached"] else f"evaluated {time.time() - t0:.0f} s"
            log(f"{group.label}: {system:<14} {results.one_line(ev['conditions'], recipe.test_noise)}  ({status})")
    return out


def stage(name: str, log: Log, times: dict[str, float]) -> Callable[[], None]:
    """Start a stage; the returned function ends it, logging and recording its wall time."""
    t0 = time.time()
    log(f"== {name}")

    def end() -> None:
        times[name] = round(time.time() - t0, 1)
        log(f"== {name} done in {times[name]:.0f} s")

    return end


def make(
    recipe: BundleRecipe,
    workers: int = 1,
    jobs: int = 1,
    device: str | None = None,
    threads: int | None = None,
    measure_inputs: bool = True,
    echo: Log = print,
    stores_only: bool = False,
) -> Path | None:
    """Run every stage of a bundle recipe; returns the bundle folder WORK/bundle/<name> (None with
    `stores_only`: the manifests and stores only, which do not depend on the system)."""
    check_counts(workers=workers, jobs=jobs, threads=threads)
    try:
        check_folder_path(recipe.work, "work")
    except UserError as err:
        raise BundleRecipeError(str(err)) from None
    recipe.work.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(recipe.work / ".lock", f"another `trnet bundle` on {recipe.work}"):
            return _make(
                recipe,
                workers,
                jobs,
                device or ("cuda" if torch.cuda.is_available() else "cpu"),
                threads,
                measure_inputs,
                logger(recipe.work, echo),
                stores_only,
            )
    except LockedError as err:
        raise BundleRecipeError(str(err)) from None


def _make(
    recipe: BundleRecipe,
    workers: int,
    jobs: int,
    device: str,
    threads: int | None,
    measure_inputs: bool,
    log: Log,
    stores_only: bool = False,
) -> Path | None:
    started, times = time.time(), {}
    log(
        f"bundle {recipe.name} ({recipe.origin}) -> {recipe.work}: system {recipe.system}, width {recipe.width}, "
        f"{recipe.epochs} epochs, device {device}{', PLACEHOLDER' if recipe.placeholder else ''}"
    )
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        end = stage("1/8 manifests", log, times)
        info = prepare(recipe, log)
        end()
        end = stage("2/8 stores", log, times)
        build_stores(recipe, workers, log)
        end()
        if stores_only:
            return None
        end = stage("3/8 train", log, times)
        train_all(recipe, device, jobs, threads, log)
        end()
        end = stage("4/8 evaluate (leave-one-corpus-out)", log, times)
        loco = evaluate_all(recipe, device, log)
        end()
        end = stage("5/8 results", log, times)
        final = plan.run_spec(recipe, plan.groups(recipe)[0], recipe.system, device).dir
        summary = results.write(recipe, loco, final, info, times)
        end()
        end = stage("6/8 bundle", log, times)
        bundle = publish.write_bundle(recipe, final, summary)
        log(f"bundle: {bundle}")
        end()
        end = stage("7/8 measure", log, times)
        measured = (
            measure.measure_bundle(bundle, recipe.work / "results" / "measure.json", log) if measure_inputs else None
        )
        end()
        end = stage("8/8 card", log, times)
        times["total"] = round(time.time() - started, 1)
        results.write_times(recipe, times)
        log(f"card: {card.write_fragment(recipe, measured)}")
        end()
    finally:
        torch.set_num_threads(before)
    log(f"done in {time.time() - started:.0f} s: install with `trnet bundle {recipe.origin} --install`")
    return bundle
