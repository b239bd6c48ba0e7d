"""Does c move with the SNR? Checked on VALIDATION speakers only, before any test result
(docs/design.md §6.2, §10).

A study that rests on TRNet's SNR coefficient c (eq. (1)) must show, at its declared SE
operating point, that c falls as the SNR falls; if that is shown on test speakers, the choice
of operating point has already seen the test. So this check reads only each run's validation
speaker (the one that chose its epoch): for every finished run it loads the best model as
evaluation does (`trnet.runs.load_run`), runs `predict_condition` over the validation rows
under every condition of the run's store (clean and each noise corpus at each SNR), and
reports per run the mean c per condition, Spearman rho between c and the SNR over the
validation utterances x conditions with clean ranked highest (`evalcache.c_diagnostics`: the
definition the report uses for test speakers), and whether the mean c falls monotonically from
clean to the lowest SNR, per noise corpus, by the report's rule (`report.selection.trend`:
"yes", "no", or "flat" when it moves less than FLAT_SPREAD, which is no SNR estimate). Systems without c
(the baselines) are skipped, with a note; a c that is NaN or infinite is an error.

It lives beside `evalcache` (not in `trnet.evaluation`) because it reuses the report's and the
evaluation cache's definitions rather than restating them. Runs may come from
`trnet reproduce RECIPE --train-only`, which trains the grid and evaluates nothing.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trnet import runs
from trnet.batches import label_indices
from trnet.configs import display_name
from trnet.evaluation.evaluate import predict_condition
from trnet.experiments.evalcache import c_diagnostics
from trnet.protocol.folds import Holdout, split
from trnet.report.results import RunPredictions
from trnet.report.selection import trend
from trnet.store import ConditionStore, condition_name
from trnet.utils import UserError, write_text_atomic

COLUMNS = ("run", "system", "fold", "seed", "val_speaker", "noise", "snr", "mean_c", "n")


@dataclass
class RunCheck:
    """One run's validation-only c check."""

    run: Path
    system: str
    fold: int | str
    seed: int
    val_speaker: str  # the validation speaker (a holdout's several: joined by '+')
    conditions: list[dict[str, Any]]  # per condition of the store: noise, snr, mean_c, n
    diagnostics: dict[str, float | None]  # rho (all conditions), rho_<noise> (clean + that noise)
    monotone: dict[str, str] = field(default_factory=dict)  # noise -> "yes" | "no" | "flat" (`selection.trend`)

    def rows(self) -> list[dict[str, Any]]:
        """The CSV rows (COLUMNS) of this run: one per condition."""
        head = {"run": str(self.run), "system": self.system, "fold": self.fold, "seed": self.seed}
        return [{**head, "val_speaker": self.val_speaker, **{k: c[k] for k in COLUMNS[5:]}} for c in self.conditions]


@dataclass
class Skipped:
    run: Path
    system: str
    reason: str


def validation_rows(config: dict[str, Any], store: ConditionStore, where: Path) -> tuple[np.ndarray, str]:
    """The store rows of the run's validation speaker(s), and their name; refuses a store whose
    folds no longer give the validation speaker that config.json records. Asserts that no
    row belongs to the test speaker (the point of the check)."""
    fold = config["fold"]
    if isinstance(fold, int):
        sp = split(store.rows, fold)
        speakers = [sp.fold.val_speaker]
        recorded = [config.get("val_speaker")]
    else:  # a named split (Holdout) with no test speaker
        sp = split(store.rows, Holdout(str(fold), tuple(config["val_speakers"]), tuple(config["train_speakers"])))
        speakers = recorded = list(sp.fold.val_speakers)
    if speakers != recorded:
        raise UserError(
            f"{where}: fold {fold} of the store {store.root} validates on {speakers}, but the run records "
            f"{recorded}; check the run against the store it was trained on"
        )
    found = {str(store.rows[i]["speaker"]) for i in sp.val}
    test = config.get("test_speaker")
    if found != set(speakers) or test in found or np.intersect1d(sp.val, sp.test).size:
        raise AssertionError(f"{where}: validation rows of speakers {sorted(found)} (test speaker {test})")
    return sp.val, "+".join(speakers)


def check_run(run: Path, device: str = "cpu") -> RunCheck | Skipped:
    """The c check of one finished run (see the module docstring)."""
    run = Path(run)
    if not (run / runs.CONFIG).is_file():
        raise UserError(f"{run}: not a run directory (no {runs.CONFIG})")
    config = runs.read_config(run)
    system = str(config.get("system", {}).get("name", run.parent.name))
    if not runs.is_finished(run):
        return Skipped(run, system, f"not finished (no {runs.DONE})")
    if config["system"].get("input") != "trnet":
        return Skipped(run, system, "no SNR-aware module: no c")
    store = ConditionStore(config["store"])
    if store.key["hash"] != config.get("store_hash"):
        raise UserError(
            f"{run}: the store {store.root} is not the one the run was trained on (its hash differs from "
            "config.json's store_hash); rebuild it with the run's recipe"
        )
    model, _ = runs.load_run(run, device)  # verifies best.safetensors against done.json
    labels = label_indices(store)
    rows, speaker = validation_rows(config, store, run)
    preds: RunPredictions | None = None
    conditions = []
    for cond in store.conditions:
        p = predict_condition(model, store, labels, rows, cond, device=device)
        name = condition_name(cond)
        if p.c is None:
            return Skipped(run, system, "the model gives no c")
        if not np.all(np.isfinite(p.c)):
            raise UserError(f"{run}: c is not finite under {name} on the validation speaker {speaker}")
        if preds is None:
            preds = RunPredictions(p.index, np.array([store.rows[i]["id"] for i in p.index]), p.y_true)
        preds.c[name] = p.c
        summary = p.summary(cond)
        conditions.append({k: summary[k] for k in ("noise", "snr", "mean_c", "n")})
    assert preds is not None  # a store always has the clean condition
    means = {(c["noise"], c["snr"]): c["mean_c"] for c in conditions}
    falls = {
        noise: trend([means[("clean", None)], *(means[(noise, s)] for s in sorted(store.snrs, reverse=True))])
        for noise in store.noises
    }
    return RunCheck(
        run, system, config["fold"], int(config["seed"]), speaker, conditions, c_diagnostics(preds, store), falls
    )


def check_runs(
    paths: Sequence[Path], device: str = "cpu", log: Callable[[str], None] = print
) -> tuple[list[RunCheck], list[Skipped]]:
    """`check_run` over runs, logging a line per run."""
    checks, skipped = [], []
    for path in paths:
        result = check_run(Path(path), device)
        if isinstance(result, Skipped):
            skipped.append(result)
            log(f"skipped {result.run}: {result.reason}")
            continue
        checks.append(result)
        rho = result.diagnostics.get("rho")
        log(
            f"{result.system} fold {result.fold} seed {result.seed} (validation {result.val_speaker}): "
            f"rho {'–' if rho is None else f'{rho:.2f}'}, "
            + ", ".join(f"{n} monotone: {m}" for n, m in result.monotone.items())
        )
    return checks, skipped


def _csv(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows({k: "" if r.get(k) is None else r[k] for k in columns} for r in rows)
    return buf.getvalue()


def runs_table(checks: list[RunCheck]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per run: its rho values and whether the mean c falls monotonically, per noise."""
    noises = sorted({n for c in checks for n in c.monotone})
    columns = ["run", "system", "fold", "seed", "val_speaker", "rho", *(f"rho_{n}" for n in noises)]
    columns += [f"monotone_{n}" for n in noises]
    rows = [
        {
            "run": str(c.run),
            "system": c.system,
            "fold": c.fold,
            "seed": c.seed,
            "val_speaker": c.val_speaker,
            **c.diagnostics,
            **{f"monotone_{n}": m for n, m in c.monotone.items()},
        }
        for c in checks
    ]
    return rows, columns


def markdown(checks: list[RunCheck], skipped: list[Skipped]) -> str:
    """Two tables: per system, rho (mean ± sd over runs), how many runs' mean c falls
    monotonically per noise corpus ("yes" of `selection.trend`) and the trend of the system's
    mean c; and the mean c (over runs) per condition, one row per condition."""
    by_system: dict[str, list[RunCheck]] = defaultdict(list)
    for c in checks:
        by_system[c.system].append(c)
    systems = sorted(by_system)
    noises = sorted({n for c in checks for n in c.monotone})
    header = ["System", "runs", "rho (all)"] + [h for n in noises for h in (f"rho {n}", f"{n}: monotone runs", "trend")]
    lines = [
        "Validation speakers only: Spearman rho between c and the SNR (clean ranked highest), mean ± sd over runs.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    conds: list[tuple[str, int | None]] = []
    for c in checks:
        conds += [(k["noise"], k["snr"]) for k in c.conditions if (k["noise"], k["snr"]) not in conds]
    mean_c = {
        s: {k: [m for c in by_system[s] for m in c.conditions if (m["noise"], m["snr"]) == k] for k in conds}
        for s in systems
    }
    for s in systems:
        cells = [display_name(s), str(len(by_system[s])), _rho(by_system[s], "rho")]
        for n in noises:
            snrs = sorted((k[1] for k in conds if k[0] == n), reverse=True)  # clean first, then high to low
            profile = [_mean(mean_c[s][("clean", None)]), *(_mean(mean_c[s][(n, snr)]) for snr in snrs)]
            falls = sum(c.monotone.get(n) == "yes" for c in by_system[s])
            cells += [_rho(by_system[s], f"rho_{n}"), f"{falls}/{len(by_system[s])}", trend(profile)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean c on the validation speakers (mean ± sd over runs of each run's mean):", ""]
    lines += ["| Noise | SNR (dB) | " + " | ".join(display_name(s) for s in systems) + " |"]
    lines.append("|" + "---|" * (2 + len(systems)))
    for k in conds:
        cells = [k[0], "–" if k[1] is None else str(k[1])]
        cells += [_mean_sd([m["mean_c"] for m in mean_c[s][k]], 3) for s in systems]
        lines.append("| " + " | ".join(cells) + " |")
    if skipped:
        lines += ["", *(f"- skipped {x.system} ({x.run}): {x.reason}" for x in skipped)]
    return "\n".join(lines) + "\n"


def _mean(conditions: list[dict[str, Any]]) -> float:
    return float(np.mean([c["mean_c"] for c in conditions])) if conditions else float("nan")


def _mean_sd(values: list[float], digits: int) -> str:
    """'mean ± sd' over runs (sample sd; the value alone for one run, '–' for none)."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _rho(checks: list[RunCheck], key: str) -> str:
    return _mean_sd([c.diagnostics[key] for c in checks if c.diagnostics.get(key) is not None], 2)


def write_check(out: Path, checks: list[RunCheck], skipped: list[Skipped]) -> str:
    """OUT/c_conditions.csv (COLUMNS: one row per run and condition), OUT/c_runs.csv (one row
    per run: rho, monotone) and OUT/c_check.md (`markdown`); returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "c_conditions.csv", _csv([r for c in checks for r in c.rows()], COLUMNS))
    rows, columns = runs_table(checks)
    write_text_atomic(out / "c_runs.csv", _csv(rows, columns))
    text = markdown(checks, skipped)
    write_text_atomic(out / "c_check.md", text)
    return text
