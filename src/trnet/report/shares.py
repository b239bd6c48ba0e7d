"""Predicted-class shares: how far a run's predictions for its unseen test speaker pile into a
few classes, and how much of the run-to-run spread in UAR goes with it (docs/design.md §10).

In leave-one-speaker-out SER the classes are close to balanced within every speaker, so a model
whose decision boundaries transfer predicts each class about as often as it occurs. A model
that meets a speaker whose voice sits on one side of a boundary (higher arousal, say) labels
most of that speaker's utterances with one class, whatever the emotion; which class depends on
where the seed put the boundary. That is seed-to-seed variation (the σ_e of the declared
comparison) that more epochs of the same training do not remove, and speaker normalisation
would. These numbers describe it; they choose nothing.

    tv       total-variation distance between the predicted and true class shares of a run under
             one condition: 0 when each class is predicted as often as it occurs, 1 at most
    piled    the most-predicted class is predicted at least twice as often as it occurs
    r        Pearson r between tv and UAR over (run, condition)
    r_within the same over runs, each run's noisy mean centred on its test speaker's mean over
             seeds: what goes with the seed-to-seed spread (None with one seed per speaker)
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from trnet.configs import display_name
from trnet.corpora import LABELS
from trnet.evaluation.metrics import uar
from trnet.report.primary import test_speakers
from trnet.report.results import Results, RunPredictions

PILED = 2.0  # the most-predicted class at >= this multiple of its true share counts as piled up


def share_distance(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[float, bool]:
    """(total-variation distance between predicted and true class shares, piled up or not)."""
    true = np.bincount(y_true, minlength=n_classes) / len(y_true)
    pred = np.bincount(y_pred, minlength=n_classes) / len(y_pred)
    top = int(np.argmax(pred))
    return 0.5 * float(np.abs(pred - true).sum()), bool(pred[top] >= PILED * true[top])


def _pearson(a: list[float], b: list[float]) -> float | None:
    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 3 or x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def class_shares(res: Results, system: str) -> dict[str, Any] | None:
    """The summary above for one system (None without predictions files)."""
    tvs, piled, uars = [], [], []
    noisy: dict[str, list[tuple[float, float]]] = defaultdict(list)  # test speaker -> (tv, uar) per run
    speakers = test_speakers(res, system)
    for fold, seed in res.runs(system):
        path = res.predictions(system, fold, seed)
        if path is None or not path.is_file():
            continue
        p = RunPredictions.load(path)
        run_tv, run_uar = [], []
        for cond, pred in p.pred.items():
            tv, up = share_distance(p.y_true, pred, len(LABELS))
            u = uar(p.y_true, pred, len(LABELS))
            tvs.append(tv)
            piled.append(up)
            uars.append(u)
            if cond != "clean":
                run_tv.append(tv)
                run_uar.append(u)
        if run_tv:
            noisy[speakers[(fold, seed)]].append((float(np.mean(run_tv)), float(np.mean(run_uar))))
    if not tvs:
        return None
    centred = [
        (tv - np.mean([t for t, _ in runs]), u - np.mean([v for _, v in runs]))
        for runs in noisy.values()
        if len(runs) > 1
        for tv, u in runs
    ]
    return {
        "system": system,
        "cases": len(tvs),
        "mean_tv": float(np.mean(tvs)),
        "piled": float(np.mean(piled)),
        "r": _pearson(tvs, uars),
        "r_within": _pearson([t for t, _ in centred], [u for _, u in centred]) if centred else None,
    }


def shares_section(res: Results) -> tuple[list[str], list[dict[str, Any]]]:
    """The report's lines on predicted-class shares, and their numbers."""
    rows = [s for s in (class_shares(res, system) for system in res.systems) if s is not None]
    if not rows:
        return ["Skipped: no predictions files."], []

    def r(v: float | None) -> str:
        return "–" if v is None else f"{v:+.2f}"

    md = [
        "How far each run's predictions for its unseen test speaker pile into a few classes: the "
        "total-variation distance (TV) between predicted and true class shares (0: each class predicted "
        f"as often as it occurs), the share of (run, condition) cases whose most-predicted class is predicted "
        f"≥ {PILED:g}× as often as it occurs, and Pearson r of TV with UAR, over all cases and within speaker "
        "(each run's noisy mean centred on its test speaker's mean over seeds: what goes with the seed-to-seed "
        "spread). Descriptive only (docs/design.md §10).",
        "",
        "| System | cases | mean TV | piled up | r(TV, UAR) | r within speaker |",
        "|---|---|---|---|---|---|",
    ]
    md += [
        f"| {display_name(s['system'])} | {s['cases']} | {s['mean_tv']:.3f} | {100 * s['piled']:.0f} % | "
        f"{r(s['r'])} | {r(s['r_within'])} |"
        for s in rows
    ]
    return md, rows
