"""`trnet reproduce RECIPE`: the paper's grid (systems x folds x seeds, §4-§5) from one recipe
file (see trnet.evaluation.recipe), end to end and resumable.

Steps, each of which skips what is already done, so that a killed run just continues:
  1. prepare  manifests of the corpus and every noise corpus (rewritten only if they changed)
  2. store    the condition store(s): clean/noisy/enhanced LMFB (store.build resumes itself)
  3. train    every (system, fold, seed), Baseline-c first since it is TRNet's teacher;
              finished runs are skipped, unfinished ones resume after their last epoch
  4. evaluate every chosen run on its TEST speaker under every condition; the result is
              cached in the run directory, keyed by the store hash and the checkpoint hash
  5. results  WORK/results/results.{csv,json} (one row per system, fold, seed, noise, SNR),
              meta.json, predictions/<system>/fold<K>-seed<S>.npz; then the report

Layout of WORK:
    manifests/corpus.csv, manifests/noise-<name>.csv
    stores/seed<S>/ (or stores/noise-seed<N>/ with `noise_seed`)
    runs/<store>/<encoder>-w<width>-e<epochs>-b<batch>-<train noise>-<store hash>/<system>/fold<K>-seed<S>/
    results/
Runs live under the store's hash and the training settings, so changing the SE back-end,
the corpus, the width or the epochs starts new runs instead of silently reusing old ones.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from trnet.corpora import CorpusError, LoadResult, read_manifest, write_manifest
from trnet.evaluation.recipe import Recipe, RecipeError, Source, load_recipe, parse_int_list
from trnet.evaluation.report import TSNE_SNRS, TSNE_SYSTEMS
from trnet.store import BuildSpec, ConditionStore, condition_name
from trnet.utils import atomic_path, write_json_atomic, write_text_atomic

EVAL_VERSION = 1  # bump when the cached evaluation files would change
RESULT_COLUMNS = ("system", "fold", "seed", "test_speaker", "noise", "snr", "uar", "war", "mean_c", "n")


# --------------------------------------------------------------------------- 1. prepare


def load_source(source: Source, role: str) -> LoadResult:
    """Run the loader of one recipe corpus; `role` is "utterances" or "noise"."""
    from trnet.corpora import folder, noisefolder

    opts = dict(source.options)
    if source.kind == "synthetic":
        from trnet.corpora import synthetic

        if "duration" in opts:
            opts["duration"] = tuple(opts["duration"])
        labels_csv = Path(synthetic.generate(source.root, **opts))
        return folder.load(labels_csv) if role == "utterances" else noisefolder.load(labels_csv.parent / "noise")
    if source.kind == "folder":
        return folder.load(source.root, csv_path=opts.get("csv"), labels=opts.get("labels"))
    module = importlib.import_module(f"trnet.corpora.{'noisefolder' if source.kind == 'noise' else source.kind}")
    return module.load(source.root, **opts)


def _write_if_changed(path: Path, result: LoadResult) -> bool:
    """Write the manifest only if its content differs from what is on disk, so that an
    unchanged corpus keeps its file (and the store keyed on it) untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".new", dir=path.parent)
    os.close(fd)
    try:
        write_manifest(tmp, result.rows, result.kind)
        if path.is_file() and Path(tmp).read_bytes() == path.read_bytes():
            return False
        os.replace(tmp, path)
        return True
    finally:
        Path(tmp).unlink(missing_ok=True)


def _describe(source: Source, result: LoadResult) -> dict[str, Any]:
    info: dict[str, Any] = {"kind": source.kind, "root": str(source.root), "options": {k: str(v) if isinstance(v, Path) else v
                                                                                       for k, v in source.options.items()}}
    if result.kind == "utterances":
        info.update(utterances=len(result.rows), speakers=len({r["speaker"] for r in result.rows}),
                    classes={c: sum(r["label"] == c for r in result.rows) for c in sorted({r["label"] for r in result.rows})})
    else:
        info.update(clips=len(result.rows), sources=len({r["source"] for r in result.rows}))
    return {**info, "set_aside": result.set_aside, "notes": result.notes}


def prepare(recipe: Recipe, log: Callable[[str], None] = print) -> tuple[Path, dict[str, Path], dict[str, Any]]:
    """Manifests of the corpus and the noise corpora: (corpus path, name -> noise path, info)."""
    from trnet.corpora.cli import summary

    folder = recipe.work / "manifests"
    jobs = [("corpus", recipe.corpus, "utterances", folder / "corpus.csv")]
    jobs += [(name, src, "noise", folder / f"noise-{name}.csv") for name, src in recipe.noise.items()]
    info: dict[str, Any] = {"noise": {}}
    for name, source, role, path in jobs:
        result = load_source(source, role)
        if result.kind != role:
            raise RecipeError(f"{name}: kind {source.kind!r} gives {result.kind}, expected {role}")
        if _write_if_changed(path, result):
            log(summary(name, result))
            log(f"wrote {path}")
        else:
            log(f"manifest {path} unchanged ({len(result.rows)} rows)")
        if role == "utterances":
            info["corpus"] = _describe(source, result)
        else:
            info["noise"][name] = _describe(source, result)
    return folder / "corpus.csv", {name: folder / f"noise-{name}.csv" for name in recipe.noise}, info


# --------------------------------------------------------------------------- 2. stores


def store_name(recipe: Recipe, seed: int) -> str:
    return f"noise-seed{recipe.noise_seed}" if recipe.noise_seed is not None else f"seed{seed}"


def build_stores(recipe: Recipe, corpus: Path, noise: dict[str, Path], seeds: tuple[int, ...], workers: int,
                 quiet: bool) -> dict[int, Path]:
    """seed -> finished store (one per seed, or one shared with `noise_seed`)."""
    from trnet import store

    out: dict[int, Path] = {}
    for seed in seeds:
        path = recipe.work / "stores" / store_name(recipe, seed)
        if path not in out.values():
            spec = BuildSpec(corpus=corpus.resolve(), noise={k: v.resolve() for k, v in noise.items()}, se=recipe.se,
                             se_options=recipe.se_options, seed=seed if recipe.noise_seed is None else recipe.noise_seed,
                             snrs=recipe.snrs)
            store.build(spec, path, workers=workers, quiet=quiet)
        out[seed] = path
    return out


# --------------------------------------------------------------------------- 4. evaluate


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def h_conditions(system: str, store: ConditionStore, train_noise: str) -> list:
    """Conditions whose representations h are kept (paper Figure 3): clean and the training
    noise at 20/10/0 dB, for Baseline-c, Baseline-e and TRNet only (h is the bulky part)."""
    if system not in TSNE_SYSTEMS:
        return []
    return ["clean", *[(train_noise, s) for s in TSNE_SNRS if s in store.snrs]]


@dataclass
class Evaluation:
    """A run's test-speaker results: one metrics dict per condition, and the predictions file."""

    test_speaker: str
    conditions: list[dict[str, Any]]
    predictions: Path
    cached: bool


def evaluate_run(run: Path, store: ConditionStore, fold: int, system: str, train_noise: str, device: str) -> Evaluation:
    """Evaluate a finished run on its test speaker under every condition of the store, or read
    the cached result made from the same store and the same checkpoint."""
    from trnet.evaluation.evaluate import predict_condition
    from trnet.training.data import label_indices
    from trnet.training.trainer import fold_rows, load_run

    keep_h = h_conditions(system, store, train_noise)
    ident = {"version": EVAL_VERSION, "store": store.key["hash"], "checkpoint": _sha256(run / "best.safetensors"),
             "fold": fold, "h": [condition_name(c) for c in keep_h]}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    npz_path, json_path = run / "eval" / f"{key}.npz", run / "eval" / f"{key}.json"
    if json_path.is_file() and npz_path.is_file():
        done = json.loads(json_path.read_text())
        return Evaluation(done["test_speaker"], done["conditions"], npz_path, cached=True)

    model, _ = load_run(run, device)
    labels = label_indices(store)
    _, _, test_rows, speakers = fold_rows(store, fold)
    arrays: dict[str, np.ndarray] = {}
    conditions = []
    for cond in store.conditions:
        p = predict_condition(model, store, labels, test_rows, cond, device=device, keep_h=cond in keep_h)
        name = condition_name(cond)
        if not arrays:  # the order (by length) is the same under every condition
            arrays["index"], arrays["y_true"] = p.index.astype(np.int32), p.y_true.astype(np.int8)
        arrays[f"pred__{name}"] = p.y_pred.astype(np.int8)
        if p.c is not None:
            arrays[f"c__{name}"] = p.c.astype(np.float32)
        if cond in keep_h and p.h is not None:
            arrays[f"h__{name}"] = p.h.astype(np.float16)
        conditions.append({
            "noise": "clean" if cond == "clean" else cond[0],
            "snr": None if cond == "clean" else int(cond[1]),
            "uar": p.uar(), "war": p.war(),
            "mean_c": float(np.mean(p.c)) if p.c is not None else None,
            "n": int(len(p.y_true)),
        })
    arrays["ids"] = np.array([store.rows[i]["id"] for i in arrays["index"]])
    with atomic_path(npz_path) as tmp, tmp.open("wb") as f:
        np.savez(f, **arrays)
    # the JSON is written last: its presence marks a complete evaluation
    write_json_atomic(json_path, {**ident, "test_speaker": speakers["test_speaker"], "conditions": conditions})
    return Evaluation(speakers["test_speaker"], conditions, npz_path, cached=False)


# --------------------------------------------------------------------------- 5. results


def git_commit() -> str:
    """The commit of the trnet checkout that ran (with "+dirty" for uncommitted changes)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain"],
                                capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def write_results(results: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """results.csv and results.json (the same tidy rows) and meta.json, atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row[k] is None else (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k])
                         for k in RESULT_COLUMNS})
    write_text_atomic(results / "results.csv", buf.getvalue())
    write_json_atomic(results / "results.json", rows)
    write_json_atomic(results / "meta.json", meta)


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


# --------------------------------------------------------------------------- the grid


def _summary_uar(conditions: list[dict[str, Any]]) -> str:
    """'clean 58.0 | esc50 51.2 | demand 49.8': test UAR (%), noise corpora as SNR means."""
    parts, by_noise = [], {}
    for c in conditions:
        if c["noise"] == "clean":
            parts.append(f"clean {100 * c['uar']:.1f}")
        else:
            by_noise.setdefault(c["noise"], []).append(c["uar"])
    parts += [f"{noise} {100 * float(np.mean(v)):.1f}" for noise, v in by_noise.items()]
    return " | ".join(parts)


@contextlib.contextmanager
def work_lock(work: Path) -> Iterator[None]:
    """Hold WORK/.lock for the whole run: two runs on one work directory would train the same
    runs at once and overwrite each other's checkpoints. The OS drops the lock when the
    process dies, even by kill -9, so a killed run never blocks the next one."""
    import fcntl

    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RecipeError(f"another `trnet reproduce` is running on {work} (it holds {work / '.lock'})") from None
        yield


def runs_dir(recipe: Recipe, seed: int, store: ConditionStore) -> Path:
    """Runs live under the store's hash and the training settings (see the module docstring)."""
    tag = (f"{recipe.encoder}-w{recipe.width}-e{recipe.epochs}-b{recipe.batch_size}-{recipe.train_noise}-"
           f"{store.key['hash'][:10]}")
    return recipe.work / "runs" / store_name(recipe, seed) / tag


def run_spec(recipe: Recipe, system: str, fold: int, seed: int, store: Path, runs: Path, device: str):
    from trnet.training.trainer import spec_from_names

    return spec_from_names(system, fold, seed, store, runs,
                           system_overrides={"encoder": recipe.encoder, "width": recipe.width},
                           training_overrides={"epochs": recipe.epochs, "batch_size": recipe.batch_size},
                           train_noise=recipe.train_noise, device=device)


def _train_group(recipe: Recipe, systems: list[str], fold: int, seed: int, store: Path, device: str) -> list[str]:
    """Worker: train one (fold, seed)'s systems in order (Baseline-c, the teacher, first)."""
    import torch

    from trnet.training.trainer import is_finished, train

    torch.set_num_threads(1)  # the parallelism is across processes
    runs = runs_dir(recipe, seed, ConditionStore(store))
    lines = []
    for system in systems:
        spec = run_spec(recipe, system, fold, seed, store, runs, device)
        if is_finished(spec.dir):
            continue
        t0 = time.time()
        train(spec, quiet=True)
        best = json.loads((spec.dir / "done.json").read_text())
        lines.append(f"{system:<14} fold {fold:>2} seed {seed}  val UAR {100 * best['val_uar']:5.1f} "
                     f"(epoch {best['epoch']})  trained {time.time() - t0:.0f} s")
    return lines


def train_parallel(recipe: Recipe, stores: dict[int, Path], folds: tuple[int, ...], order: list[str], jobs: int,
                   device: str, log: Callable[[str], None]) -> None:
    """Train independent (fold, seed) groups in `jobs` processes of one thread each: on CPU,
    small convolutions scale better across processes than across threads. Results are the
    same as sequential training (each run is seeded by itself)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    groups = [(fold, seed) for seed in recipe.seeds for fold in folds]
    log(f"training {len(groups)} (fold, seed) groups in {jobs} parallel processes")
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_train_group, recipe, order, fold, seed, stores[seed], device) for fold, seed in groups]
        for future in as_completed(futures):
            for line in future.result():
                log(line)


def reproduce(recipe: Recipe, workers: int = 1, device: str = "cpu", verbose: bool = False, quiet: bool = False,
              report: bool = True, threads: int | None = None, jobs: int = 1,
              log: Callable[[str], None] = print) -> Path:
    """Run a recipe's whole grid; returns the results directory. `threads` caps torch's CPU
    threads (and OpenMP/BLAS pools, e.g. t-SNE's) for the run: on a shared machine, more OpenMP
    threads than free cores stall each other (measured: 3 epochs took 40-85 s with 2 threads,
    6 s with 1, on 2 busy cores)."""
    import torch
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    before = torch.get_num_threads()
    torch.set_num_threads(threads or before)
    try:
        with work_lock(recipe.work), threadpool_limits(limits=threads):  # also t-SNE's OpenMP, BLAS
            return _reproduce(recipe, workers, device, verbose, quiet, report, log, jobs)
    finally:
        torch.set_num_threads(before)


def _reproduce(recipe: Recipe, workers: int, device: str, verbose: bool, quiet: bool, report: bool,
               log: Callable[[str], None], jobs: int = 1) -> Path:
    from trnet.models import load_config
    from trnet.protocol.folds import loso_folds
    from trnet.training.trainer import is_finished, train

    started = time.time()
    log(f"recipe {recipe.name} ({recipe.origin}) -> {recipe.work}")
    corpus, noise, info = prepare(recipe, log)
    n_folds = len(loso_folds(read_manifest(corpus)))
    folds = recipe.folds if recipe.folds is not None else tuple(range(n_folds))
    bad = [f for f in folds if not 0 <= f < n_folds]
    if bad:
        raise RecipeError(f"folds {bad} out of range: this corpus has {n_folds} folds (0..{n_folds - 1})")
    stores = build_stores(recipe, corpus, noise, recipe.seeds, workers, quiet)

    needs_teacher = any(load_config(s).teacher for s in recipe.systems)
    order = [s for s in recipe.systems if s == "baseline-c"] + [s for s in recipe.systems if s != "baseline-c"]
    if needs_teacher and "baseline-c" not in order:
        order.insert(0, "baseline-c")  # trained as the teacher, not evaluated
    total = len(recipe.systems) * len(folds) * len(recipe.seeds)
    done = 0
    rows: list[dict[str, Any]] = []
    runs_meta: list[dict[str, Any]] = []
    stores_meta: dict[str, Any] = {}
    results_dir = recipe.work / "results"
    keep: set[Path] = set()
    if jobs > 1:
        train_parallel(recipe, stores, folds, order, jobs, device, log)
    for seed in recipe.seeds:
        store = ConditionStore(stores[seed])
        stores_meta[str(seed)] = {"path": str(stores[seed]), "hash": store.key["hash"], "se_version": store.key["se_version"]}
        runs = runs_dir(recipe, seed, store)
        for fold in folds:
            for system in order:
                spec = run_spec(recipe, system, fold, seed, stores[seed], runs, device)
                trained_before = is_finished(spec.dir)
                t0 = time.time()
                train(spec, quiet=not verbose)
                t_train = time.time() - t0
                best = json.loads((spec.dir / "done.json").read_text())
                head = f"{system:<14} fold {fold:>2} seed {seed}  val UAR {100 * best['val_uar']:5.1f} (epoch {best['epoch']})"
                status = "trained before" if trained_before else f"trained {t_train:.0f} s"
                if system not in recipe.systems:
                    log(f"[teacher]  {head}  {status}")
                    continue
                t0 = time.time()
                ev = evaluate_run(spec.dir, store, fold, system, recipe.train_noise, device)
                done += 1
                status += ", evaluated before" if ev.cached else f", evaluated {time.time() - t0:.0f} s"
                log(f"[{done}/{total}] {head}  test UAR {_summary_uar(ev.conditions)}  ({status})")
                pred = results_dir / "predictions" / system / f"fold{fold}-seed{seed}.npz"
                _copy(ev.predictions, pred)
                keep.add(pred)
                for c in ev.conditions:
                    rows.append({"system": system, "fold": fold, "seed": seed, "test_speaker": ev.test_speaker, **c})
                runs_meta.append({"system": system, "fold": fold, "seed": seed, "test_speaker": ev.test_speaker,
                                  "val_uar": best["val_uar"], "best_epoch": best["epoch"], "epochs_run": best["epochs_run"],
                                  "run": str(spec.dir), "predictions": str(pred.relative_to(results_dir))})
    for stale in (results_dir / "predictions").rglob("*.npz"):
        if stale not in keep:  # from an earlier, different grid: the report must not pick it up
            stale.unlink()
    meta = {
        "recipe": {"name": recipe.name, "origin": recipe.origin, "table": recipe.table},
        "commit": git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "se": {"name": recipe.se, "options": recipe.se_options, "version": stores_meta[str(recipe.seeds[0])]["se_version"]},
        **info,
        "train_noise": recipe.train_noise,
        "encoder": recipe.encoder, "width": recipe.width, "epochs": recipe.epochs, "batch_size": recipe.batch_size,
        "snrs": list(recipe.snrs), "systems": list(recipe.systems), "folds": list(folds), "seeds": list(recipe.seeds),
        "noise_seed": recipe.noise_seed, "stores": stores_meta, "notes": list(recipe.notes), "device": device,
        "runs": runs_meta, "seconds": round(time.time() - started, 1),
    }
    write_results(results_dir, rows, meta)
    log(f"results: {results_dir / 'results.csv'} ({len(rows)} rows)")
    if report:
        from trnet.evaluation.report import make_report

        log(f"report: {make_report(results_dir)}")
    return results_dir


def with_overrides(recipe: Recipe, folds: str | None = None, seeds: str | None = None, systems: str | None = None,
                   epochs: int | None = None, work: Path | None = None) -> Recipe:
    """The recipe with command-line subsets applied."""
    from trnet.models import SYSTEMS

    changes: dict[str, Any] = {}
    if folds is not None:
        changes["folds"] = parse_int_list(folds, "folds")
    if seeds is not None:
        parsed = parse_int_list(seeds, "seeds")
        if parsed is None:
            raise RecipeError("--seeds: expected comma-separated integers")
        changes["seeds"] = parsed
    if systems is not None:
        chosen = [s.strip() for s in systems.split(",") if s.strip()]
        bad = [s for s in chosen if s not in SYSTEMS]
        if bad or not chosen:
            raise RecipeError(f"--systems: unknown {bad or 'empty list'}; known: {', '.join(SYSTEMS)}")
        changes["systems"] = tuple(s for s in SYSTEMS if s in chosen)
    if epochs is not None:
        if epochs < 1:
            raise RecipeError("--epochs must be >= 1")
        changes["epochs"] = epochs
    if work is not None:
        changes["work"] = work.resolve()
    return replace(recipe, **changes)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe TOML (see recipes/)")
    p.add_argument("--folds", help="comma-separated fold indices, or 'all' (default: the recipe's)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the recipe's)")
    p.add_argument("--systems", help="comma-separated systems, e.g. trnet,baseline-e (default: the recipe's)")
    p.add_argument("--epochs", type=int, help="maximum epochs (default: the recipe's)")
    p.add_argument("--work", type=Path, help="work directory (default: the recipe's)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes building the condition store")
    p.add_argument("--device", help="torch device for training and evaluation (default: cuda if available, else cpu)")
    p.add_argument("--threads", type=int, help="torch CPU threads for training (default: torch's, one per core); "
                                               "use 1 on a machine shared with other jobs")
    p.add_argument("--jobs", type=int, default=1,
                   help="train this many (fold, seed) groups in parallel, one thread each (CPU: try the core count)")
    p.add_argument("--verbose", action="store_true", help="print every training epoch")
    p.add_argument("--no-report", action="store_true", help="write the results but not the report")


def run(args: argparse.Namespace) -> int:
    import torch

    try:
        recipe = with_overrides(load_recipe(args.recipe), args.folds, args.seeds, args.systems, args.epochs, args.work)
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        reproduce(recipe, workers=args.workers, device=device, verbose=args.verbose, report=not args.no_report,
                  threads=args.threads, jobs=args.jobs)
    except (RecipeError, CorpusError) as err:
        print(f"trnet reproduce: error: {err}", file=sys.stderr)
        return 2
    return 0
