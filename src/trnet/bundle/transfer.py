"""Leave-one-corpus-out evaluation (docs/design.md §11): a run trained on
one corpus, tested on EVERY utterance of another corpus's condition store, clean and under
each SNR of that store's noise (DEMAND, which the run never heard).

A run's own evaluation (`trnet.experiments.evalcache`) is keyed by its own store and reads
only its fold's test speaker; here the store is another corpus's, so the cache key names
that store's hash, the checkpoint's SHA-256 and "all rows", and lives beside it:

    RUN/transfer/<key>.npz    per utterance: y_true, pred__<condition>, c__<condition>
    RUN/transfer/<key>.json   per-condition metrics and the c diagnostics; written last

The run's SE back-end and options must be the store's: the model learnt its own SE's
artefacts, and features enhanced by another SE would test something else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from trnet.batches import label_indices
from trnet.enhance import Spec
from trnet.evaluation.evaluate import predict_condition
from trnet.models.diagnostics import c_snr_spearman
from trnet.report.selection import trend
from trnet.runs import BEST, RunError, load_run, read_config
from trnet.store import ConditionStore, condition_name, condition_snr
from trnet.utils import atomic_path, damaged_cache, sha256_file, write_json_atomic

VERSION = 1  # bump when the cached files would change


def check_compatible(run: Path, store: ConditionStore) -> None:
    """RunError unless the run was trained on features of the store's SE back-end and options."""
    trained, here = Spec.from_fields(read_config(run)), store.se
    if trained != here:
        was = "no SE" if trained is None else f"SE {trained.name} {trained.options}"
        raise RunError(
            f"run {run} was trained with {was}, the store {store.root} holds "
            f"features of SE {here.name} {here.options}: build the test store with the run's SE"
        )


def c_profile(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean c from clean down the SNRs: whether it never rises as the SNR falls, and whether it
    is flat (moves less than FLAT_SPREAD in all, report.selection.trend): a flat c is not monotone."""
    ordered = sorted(conditions, key=lambda c: -(float("inf") if c["snr"] is None else c["snr"]))
    means = [c["mean_c"] for c in ordered]
    if any(m is None for m in means):
        return {}
    return {
        "monotone": trend(means) == "yes",
        "flat": trend(means) == "flat",
        "clean_minus_0db": next((means[0] - c["mean_c"] for c in ordered if c["snr"] == 0), None),
    }


def evaluate_transfer(run: Path, store: ConditionStore, device: str = "cpu") -> dict[str, Any]:
    """Every utterance of `store` under every condition, through the run's best model; cached.
    Returns {"conditions": [{noise, snr, uar, war, mean_c, n}], "rho": Spearman of c vs SNR
    (None without c), "monotone", "clean_minus_0db", "cached"}."""
    run = Path(run)
    check_compatible(run, store)
    ident = {"version": VERSION, "store": store.key["hash"], "checkpoint": sha256_file(run / BEST), "rows": "all"}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    npz_path, json_path = run / "transfer" / f"{key}.npz", run / "transfer" / f"{key}.json"
    if json_path.is_file() and npz_path.is_file():
        try:
            done = json.loads(json_path.read_text())
            if isinstance(done, dict) and isinstance(done.get("conditions"), list) and "rho" in done:
                return {**done, "cached": True}
            raise ValueError("not an evaluation")
        except ValueError as err:
            damaged_cache(json_path, err)

    model, _ = load_run(run, device)
    labels = label_indices(store)
    rows = np.arange(len(store.rows))
    arrays: dict[str, np.ndarray] = {}
    conditions, cs, snrs = [], [], []
    for cond in store.conditions:
        p = predict_condition(model, store, labels, rows, cond, device=device)
        name = condition_name(cond)
        arrays.setdefault("index", p.index)
        arrays.setdefault("y_true", p.y_true)
        arrays[f"pred__{name}"] = p.y_pred
        if p.c is not None:
            arrays[f"c__{name}"] = p.c
            cs.append(p.c)
            snrs.append(np.full(len(p.c), condition_snr(cond)))
        conditions.append(p.summary(cond))
    rho = c_snr_spearman(np.concatenate(cs), np.concatenate(snrs)) if cs else float("nan")
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    done = {
        **ident,
        "run": str(run),
        "test_store": str(store.root),
        "conditions": conditions,
        "rho": None if np.isnan(rho) else rho,
        **c_profile(conditions),
    }
    write_json_atomic(json_path, done)  # last: its presence marks a complete evaluation
    return {**done, "cached": False}


def noisy_mean(conditions: list[dict[str, Any]], metric: str = "uar", low: int = 0, high: int = 20) -> float:
    """The mean of `metric` over the noisy conditions with low <= SNR <= high (the studies'
    noise columns: 0-20 dB)."""
    values = [c[metric] for c in conditions if c["snr"] is not None and low <= c["snr"] <= high]
    if not values:
        raise RunError(f"no condition between {low} and {high} dB to average")
    return float(np.mean(values))
