"""Step 4 of a recipe: evaluate a finished run on its TEST speaker under every condition of
its store, once. The result is cached in the run directory, keyed by the store hash and the
checkpoint's SHA-256, so an unchanged run is never evaluated twice and a retrained one
never reuses a stale evaluation.

    RUN/eval/<key>.npz    per-utterance predictions (`results.RunPredictions`)
    RUN/eval/<key>.json   per-condition metrics; written last, so its presence marks completion
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trnet.batches import label_indices
from trnet.evaluation.evaluate import predict_condition
from trnet.models.diagnostics import c_snr_spearman
from trnet.protocol.folds import split
from trnet.report.results import TSNE_SNRS, RunPredictions, tsne_systems
from trnet.runs import BEST, load_run
from trnet.store import Condition, ConditionStore, condition_name, condition_snr
from trnet.utils import damaged_cache, sha256_file, write_json_atomic

EVAL_VERSION = 2  # bump when the cached evaluation files would change (2: c std, oracle c, rho)


def h_conditions(system: str, store: ConditionStore, train_noise: str) -> list[Condition]:
    """Conditions whose representations h are kept (paper Figure 3): clean and the training
    noise at 20/10/0 dB, for Baseline-c, Baseline-e and TRNet only (h is the bulky part)."""
    if system not in tsne_systems():
        return []
    return ["clean", *[(train_noise, s) for s in TSNE_SNRS if s in store.snrs]]


@dataclass
class Evaluation:
    """A run's test-speaker results: one metrics dict per condition, the run's diagnostics of c
    (Spearman rho of c vs SNR: `rho` over all conditions, `rho_<noise>` over clean and that
    noise corpus; empty for systems without c), and the predictions file."""

    test_speaker: str
    conditions: list[dict[str, Any]]
    diagnostics: dict[str, float | None]
    predictions: Path
    cached: bool


def c_diagnostics(preds: RunPredictions, store: ConditionStore) -> dict[str, float | None]:
    """Spearman rho between c and SNR over the test utterances x conditions (clean highest):
    over every condition, and per noise corpus (clean + its SNRs); None where undefined."""
    if not preds.c:
        return {}

    def rho(conds: list[Condition]) -> float | None:
        c = np.concatenate([preds.c[condition_name(k)] for k in conds])
        snr = np.concatenate([np.full(len(preds.c[condition_name(k)]), condition_snr(k)) for k in conds])
        value = c_snr_spearman(c, snr)
        return None if np.isnan(value) else value

    out = {"rho": rho(store.conditions)}
    for noise in store.noises:
        out[f"rho_{noise}"] = rho(["clean", *[(noise, s) for s in store.snrs]])
    return out


def evaluate_run(run: Path, store: ConditionStore, fold: int, system: str, train_noise: str, device: str) -> Evaluation:
    """Evaluate a finished run on its test speaker under every condition of the store, or read
    the cached result made from the same store and the same checkpoint."""
    keep_h = h_conditions(system, store, train_noise)
    ident = {
        "version": EVAL_VERSION,
        "store": store.key["hash"],
        "checkpoint": sha256_file(run / BEST),
        "fold": fold,
        "h": [condition_name(c) for c in keep_h],
    }
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    npz_path, json_path = run / "eval" / f"{key}.npz", run / "eval" / f"{key}.json"
    if json_path.is_file() and npz_path.is_file():
        try:
            done = json.loads(json_path.read_text())
            RunPredictions.load(npz_path)  # readable whole, or evaluated again
            return Evaluation(done["test_speaker"], done["conditions"], done["diagnostics"], npz_path, cached=True)
        except (ValueError, KeyError, TypeError) as err:  # UserError is a ValueError
            damaged_cache(json_path, err)

    model, _ = load_run(run, device)
    labels = label_indices(store)
    test = split(store.rows, fold)
    preds: RunPredictions | None = None
    conditions = []
    for cond in store.conditions:
        p = predict_condition(model, store, labels, test.test, cond, device=device, keep_h=cond in keep_h)
        name = condition_name(cond)
        if preds is None:  # the order (by length) is the same under every condition
            preds = RunPredictions(p.index, np.array([store.rows[i]["id"] for i in p.index]), p.y_true)
        preds.pred[name] = p.y_pred
        if p.c is not None:
            preds.c[name] = p.c
            preds.oracle[name] = p.oracle
        if cond in keep_h and p.h is not None:
            preds.h[name] = p.h
        conditions.append(p.summary(cond))
    preds.save(npz_path)
    diagnostics = c_diagnostics(preds, store)
    # the JSON is written last: its presence marks a complete evaluation
    write_json_atomic(
        json_path,
        {**ident, "test_speaker": test.fold.test_speaker, "conditions": conditions, "diagnostics": diagnostics},
    )
    return Evaluation(test.fold.test_speaker, conditions, diagnostics, npz_path, cached=False)
