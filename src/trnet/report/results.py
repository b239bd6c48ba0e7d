"""A results directory: the one owner of its files and of the predictions layout.

    results.csv, results.json   tidy rows: system, fold, seed, test speaker, noise, SNR, metrics
                                (UAR, WAR, mean and std of the estimated c, n)
    runs.csv                    one row per run: validation UAR, best epoch, Spearman rho of c vs
                                SNR over the test utterances x conditions (all; per noise corpus)
    meta.json                   provenance: recipe, commit, corpus, SE, sizes, runs
    predictions/<system>/fold<K>-seed<S>.npz   per-utterance predictions of each run

`trnet reproduce` writes it; `trnet report` reads only it, so a results directory can be
copied elsewhere and reported there.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trnet import configs
from trnet.enhance import Spec
from trnet.store import parse_condition
from trnet.utils import UserError, atomic_path, write_json_atomic, write_text_atomic

RESULT_COLUMNS = ("system", "fold", "seed", "test_speaker", "noise", "snr", "uar", "war", "mean_c", "c_std", "n")
RUN_COLUMNS = ("system", "fold", "seed", "test_speaker", "val_uar", "best_epoch", "epochs_run", "rho")  # + rho_<noise>


def tsne_systems() -> tuple[str, ...]:
    """Systems whose representations h are kept for Figure 3 (`figure3 = true` in their config:
    the paper's Baseline-c, Baseline-e and TRNet)."""
    return tuple(s for s, info in configs.systems().items() if info.figure3)


TSNE_SNRS = (20, 10, 0)  # Figure 3's conditions: the training noise at these SNRs (and clean)

Run = tuple[str, int, int]  # (system, fold, seed)


# --------------------------------------------------------------------------- predictions


@dataclass
class RunPredictions:
    """A run's test-speaker predictions under every condition (keys: condition names).
    `h` holds the representations kept for Figure 3 (float16), for some systems only."""

    index: np.ndarray  # store rows, in the order evaluated
    ids: np.ndarray  # utterance ids
    y_true: np.ndarray
    pred: dict[str, np.ndarray] = field(default_factory=dict)
    c: dict[str, np.ndarray] = field(default_factory=dict)
    oracle: dict[str, np.ndarray] = field(default_factory=dict)  # least-squares c (systems with c)
    h: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        arrays = {"index": self.index.astype(np.int32), "ids": self.ids, "y_true": self.y_true.astype(np.int8)}
        arrays |= {f"pred__{k}": v.astype(np.int8) for k, v in self.pred.items()}
        arrays |= {f"c__{k}": v.astype(np.float32) for k, v in self.c.items()}
        arrays |= {f"oracle__{k}": v.astype(np.float32) for k, v in self.oracle.items()}
        arrays |= {f"h__{k}": v.astype(np.float16) for k, v in self.h.items()}
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> RunPredictions:
        """A predictions file; UserError naming it if it is truncated or not one."""
        try:
            with np.load(path, allow_pickle=False) as z:
                out = cls(z["index"], z["ids"], z["y_true"].astype(int))
                for key in z.files:
                    kind, sep, cond = key.partition("__")
                    if sep and kind in ("pred", "c", "oracle", "h"):
                        parse_condition(cond)  # a malformed name is an error here, not a silent gap
                        getattr(out, kind)[cond] = z[key].astype(int) if kind == "pred" else z[key]
        except UserError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise UserError(f"{path}: not a readable predictions file ({type(err).__name__}: {err})") from None
        return out


def predictions_path(results_dir: Path, system: str, fold: int, seed: int) -> Path:
    return Path(results_dir) / "predictions" / system / f"fold{fold}-seed{seed}.npz"


# --------------------------------------------------------------------------- tidy results


# what two results directories must share for one to add runs to the other (Results.extend)
SAME_STUDY = (
    "se",
    "se_options",
    "se_version",
    "noise_seed",
    "snrs",
    "noise",
    "train_noise",
    "corpus",
    "encoder",
    "width",
    "epochs",
    "batch_size",
)


def table_order(systems: set[str]) -> list[str]:
    """Systems in the registry's table order, any it does not know after them by name."""
    known = configs.names()
    return [s for s in known if s in systems] + sorted(systems - set(known))


class Results:
    """The tidy rows of results.json, indexed: (system, fold, seed) -> (noise, snr) -> row."""

    def __init__(self, rows: list[dict[str, Any]], meta: dict[str, Any], root: Path | None = None) -> None:
        self.meta = meta
        nested = meta.get("se")  # older results: "se": {"name", "options", "version"}
        try:
            se = Spec.from_fields(meta)
        except ValueError:  # a meta.json edited by hand: the report says '?', as for a missing one
            se = None
        self.se_name: str | None = None if se is None else se.name
        self.se_version: str | None = nested.get("version") if isinstance(nested, dict) else meta.get("se_version")
        self.root = root
        self.sources: dict[str, tuple[Path | None, str]] = {}  # system -> (results dir, name there)
        self.run_sources: dict[Run, Path | None] = {}  # runs added by extend(): their results dir
        self.by_run: dict[Run, dict[tuple[str, int | None], dict[str, Any]]] = defaultdict(dict)
        noises: list[str] = []
        snrs: set[int] = set()
        for r in rows:
            self.by_run[(r["system"], int(r["fold"]), int(r["seed"]))][(r["noise"], r["snr"])] = r
            if r["noise"] != "clean":
                snrs.add(int(r["snr"]))
                if r["noise"] not in noises:
                    noises.append(r["noise"])
        present = {run[0] for run in self.by_run}
        self.sources = {s: (root, s) for s in present}
        self.systems = table_order(present)
        self.noises = [n for n in meta.get("noise", {}) if n in noises] + [
            n for n in noises if n not in meta.get("noise", {})
        ]
        self.snrs = sorted(snrs, reverse=True)
        self.train_noise = meta.get("train_noise") or ("esc50" if "esc50" in self.noises else (self.noises or [""])[0])

    def merge(self, other: Results, tag: str) -> None:
        """Add `other`'s runs as systems "<system>@<tag>" (e.g. the same systems with another SE
        setting): their rows, their meta.json runs and where their predictions are."""
        for (system, fold, seed), conds in other.by_run.items():
            name = f"{system}@{tag}"
            self.by_run[(name, fold, seed)] = {k: {**r, "system": name} for k, r in conds.items()}
        for system in other.systems:
            self.sources[f"{system}@{tag}"] = other.sources[system]
            self.systems.append(f"{system}@{tag}")
        self.meta.setdefault("runs", [])
        self.meta["runs"] = [
            *self.meta["runs"],
            *({**r, "system": f"{r['system']}@{tag}"} for r in other.meta.get("runs", [])),
        ]

    def extend(self, other: Results) -> None:
        """Add `other`'s runs under their own names: more runs of the same study from another
        results directory (e.g. the seeds a seed rule adds to some systems, design §10). Refused
        unless both hold the same recipe, SE, noise, SNRs and training setting, and no
        (system, fold, seed) is in both."""
        differ = [k for k in SAME_STUDY if self.meta.get(k) != other.meta.get(k)]
        mine, theirs = self.meta.get("recipe", {}), other.meta.get("recipe", {})
        differ += [f"recipe {k}" for k in ("name", "table") if mine.get(k) != theirs.get(k)]
        if {v.get("hash") for v in self.meta.get("stores", {}).values()} != {
            v.get("hash") for v in other.meta.get("stores", {}).values()
        }:
            differ.append("condition stores")
        if differ:
            raise UserError(f"{other.root}: not more runs of the same study as {self.root}: {', '.join(differ)} differ")
        both = sorted(set(self.by_run) & set(other.by_run))
        if both:
            system, fold, seed = both[0]
            raise UserError(
                f"{other.root}: {system} fold {fold} seed {seed} is also in {self.root} (a run counts once)"
            )
        for run, conds in other.by_run.items():
            self.by_run[run] = conds
            self.run_sources[run] = other.root
        self.systems = table_order({*self.systems, *other.systems})
        meta = self.meta
        meta["runs"] = [*meta.get("runs", []), *other.meta.get("runs", [])]
        for key in ("seeds", "folds"):
            meta[key] = sorted({*meta.get(key, []), *other.meta.get(key, [])})
        meta["systems"] = list(self.systems)
        meta.setdefault("more", []).append(
            {
                "path": str(other.root),
                "systems": other.meta.get("systems"),
                "seeds": other.meta.get("seeds"),
                "folds": other.meta.get("folds"),
                "commit": other.meta.get("commit"),
            }
        )

    def predictions(self, system: str, fold: int, seed: int) -> Path | None:
        """The predictions file of a run, wherever its results directory is (None if unknown)."""
        if (system, fold, seed) in self.run_sources:
            return predictions_path(self.run_sources[(system, fold, seed)], system, fold, seed)
        root, name = self.sources.get(system, (None, system))
        return None if root is None else predictions_path(root, name, fold, seed)

    @property
    def c_systems(self) -> list[str]:
        """Systems with an SNR-aware module (their rows carry an estimated c), in table order."""
        with_c = {
            run[0] for run, conds in self.by_run.items() if any(r.get("mean_c") is not None for r in conds.values())
        }
        return [s for s in self.systems if s in with_c]

    def run_info(self, system: str) -> dict[tuple[int, int], dict[str, Any]]:
        """(fold, seed) -> the run's entry of meta.json (validation UAR, best epoch, rho, ...)."""
        return {(int(r["fold"]), int(r["seed"])): r for r in self.meta.get("runs", []) if r.get("system") == system}

    def runs(self, system: str) -> list[tuple[int, int]]:
        return sorted((f, s) for (sys_, f, s) in self.by_run if sys_ == system)

    def value(self, run: Run, metric: str, noise: str, snr: int | None = None) -> float:
        """A run's metric under clean (noise "clean"), one condition, or a noise corpus's SNR mean
        (snr None); nan where missing."""
        conds = self.by_run.get(run, {})
        if noise == "clean" or snr is not None:
            row = conds.get((noise, snr))
            return float("nan") if row is None or row[metric] is None else float(row[metric])
        values = [conds[(noise, s)][metric] for s in self.snrs if (noise, s) in conds]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float("nan")

    def scores(self, system: str, metric: str, noise: str, snr: int | None = None) -> dict[tuple[int, int], float]:
        """(fold, seed) -> value, for runs where it is defined."""
        out = {fs: self.value((system, *fs), metric, noise, snr) for fs in self.runs(system)}
        return {fs: v for fs, v in out.items() if not np.isnan(v)}


def load_results(results_dir: Path, also: dict[str, Path] | None = None) -> Results:
    """A results directory, with the runs of `also` (tag -> another results directory) merged
    in as systems "<system>@<tag>"."""
    results_dir = Path(results_dir)
    path = results_dir / "results.json"
    if not path.is_file():
        raise UserError(f"{path}: not found (write it with `trnet reproduce RECIPE`)")
    meta_path = results_dir / "meta.json"
    meta = read_json(meta_path, dict) if meta_path.is_file() else {}
    rows = read_json(path, list)
    check_rows(rows, path)
    if not isinstance(meta.get("runs", []), list) or not all(isinstance(r, dict) for r in meta.get("runs", [])):
        raise UserError(f"{meta_path}: 'runs' is not a list of runs (expected meta.json written by trnet reproduce)")
    res = Results(rows, meta, results_dir)
    for tag, other in (also or {}).items():
        res.merge(load_results(other), tag)
    return res


def _cell(value: str, kind: type) -> Any:
    return None if value == "" else kind(value)


def from_csv(folder: Path, prefix: str = "") -> Results:
    """The Results of a report folder's committed tables (`<prefix>results.csv` and
    `<prefix>runs.csv`, as `trnet report --out` copies them): enough to recompute the declared
    comparison (primary.json) without the run folders. The CSVs carry 6 decimals."""
    folder = Path(folder)
    tables = {}
    for name in ("results", "runs"):
        path = folder / f"{prefix}{name}.csv"
        try:
            tables[name] = list(csv.DictReader(io.StringIO(path.read_text())))
        except OSError as err:
            raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    floats = ("uar", "war", "mean_c", "c_std", "val_uar", "rho")
    try:
        rows = [
            {
                **r,
                "fold": int(r["fold"]),
                "seed": int(r["seed"]),
                "snr": _cell(r["snr"], int),
                "n": _cell(r["n"], int),
                **{k: _cell(r[k], float) for k in floats if k in r},
            }
            for r in tables["results"]
        ]
        runs = [
            {**r, "fold": int(r["fold"]), "seed": int(r["seed"]), **{k: _cell(r[k], float) for k in floats if k in r}}
            for r in tables["runs"]
        ]
    except (KeyError, ValueError) as err:
        raise UserError(f"{folder}: {prefix}results.csv or {prefix}runs.csv is not trnet's table ({err})") from None
    check_rows(rows, folder / f"{prefix}results.csv")
    return Results(rows, {"runs": runs}, None)


def write_tables(res: Results, out: Path, prefix: str = "") -> None:
    """The rows and runs a report read, as `<prefix>results.csv` and `<prefix>runs.csv` in its
    folder, so that the folder alone recomputes its numbers (report.primary.recompute)."""
    _write_csvs(
        Path(out), [r for conds in res.by_run.values() for r in conds.values()], res.meta.get("runs", []), prefix
    )


def _write_csvs(folder: Path, rows: list[dict[str, Any]], runs: list[dict[str, Any]], prefix: str = "") -> None:
    extra = tuple(sorted({k for r in runs for k in r if k.startswith("rho_")}))
    write_text_atomic(folder / f"{prefix}results.csv", _csv(rows, RESULT_COLUMNS))
    write_text_atomic(folder / f"{prefix}runs.csv", _csv(runs, RUN_COLUMNS + extra))


def read_json(path: Path, kind: type) -> Any:
    """The JSON document in `path`, of type `kind`; UserError naming the file otherwise."""
    try:
        doc = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err}); rewrite it with `trnet reproduce RECIPE`") from None
    if not isinstance(doc, kind):
        raise UserError(f"{path}: expected a JSON {'list' if kind is list else 'object'}, got {type(doc).__name__}")
    return doc


def check_rows(rows: list[Any], path: Path) -> None:
    """UserError naming `path` for a row without the result keys, with a fold or seed that is not
    an integer, or given twice (one (system, fold, seed, noise, SNR) would count twice)."""
    seen = set()
    for k, r in enumerate(rows, 1):
        if not isinstance(r, dict) or not all(key in r for key in ("system", "fold", "seed", "noise", "snr")):
            raise UserError(f"{path}: row {k} lacks system, fold, seed, noise or snr (expected trnet reproduce's rows)")
        try:
            key = (str(r["system"]), int(r["fold"]), int(r["seed"]), str(r["noise"]), r["snr"])
            if r["noise"] != "clean":
                int(r["snr"])
        except (TypeError, ValueError):
            raise UserError(f"{path}: row {k}: fold, seed and snr must be integers") from None
        if key in seen:
            raise UserError(f"{path}: row {k} repeats {key[0]} fold {key[1]} seed {key[2]} {key[3]} {key[4]}")
        seen.add(key)


def git_commit() -> str:
    """The commit of the trnet checkout that ran (with "+dirty" for uncommitted changes)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        status = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: "" if row.get(k) is None else (f"{row[k]:.6f}" if isinstance(row[k], float) else row[k])
                for k in columns
            }
        )
    return buf.getvalue()


def write_results(results: Path, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """results.csv and results.json (the same tidy rows), runs.csv (from meta["runs"]) and
    meta.json, atomically."""
    _write_csvs(results, rows, meta.get("runs", []))
    write_json_atomic(results / "results.json", rows)
    write_json_atomic(results / "meta.json", meta)
