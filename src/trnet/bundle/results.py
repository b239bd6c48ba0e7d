"""Stage 5 of `trnet bundle`: the measured results, as files the model card and the bundle's
manifest are written from.

    results/loco.csv       one row per LOCO run x condition: train, test, system, seed, noise,
                           snr, uar, war, mean_c, n
    results/summary.json   the shipped run (validation UAR, best epoch, split, training time),
                           the LOCO summary per direction and system (mean +- std over seeds),
                           the corpora, and the wall time of each stage
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from trnet import configs, runs
from trnet.bundle.recipe import BundleRecipe
from trnet.bundle.transfer import noisy_mean
from trnet.utils import write_json_atomic, write_text_atomic

LOCO_COLUMNS = ("train", "test", "system", "seed", "noise", "snr", "uar", "war", "mean_c", "n")


def one_line(conditions: list[dict[str, Any]], noise: str | None) -> str:
    """'clean 61.2 | demand 0-20 dB 55.0 | -5 dB 40.1' (UAR %)."""
    clean = next(c["uar"] for c in conditions if c["snr"] is None)
    parts = [f"clean {100 * clean:.1f}", f"{noise} 0-20 dB {100 * noisy_mean(conditions):.1f}"]
    parts += [f"{c['snr']} dB {100 * c['uar']:.1f}" for c in conditions if c["snr"] is not None and c["snr"] < 0]
    return " | ".join(parts)


def training_seconds(run: Path) -> float:
    """The epochs' wall time of a run (its log.csv), whatever invocation trained them."""
    return float(sum(row["seconds"] for row in runs.read_log(run)))


def final_summary(final: Path) -> dict[str, Any]:
    config, done = runs.read_config(final), runs.read_done(final)
    teacher = final.parents[1] / configs.teacher() / final.name
    return {
        "run": str(final),
        "val_uar": done["val_uar"],
        "best_epoch": done["epoch"],
        "epochs_run": done["epochs_run"],
        "val_speakers": config.get("val_speakers"),
        "train_speakers": config.get("train_speakers"),
        "train_noise": config.get("train_noise"),
        "train_conditions": config.get("train_conditions"),
        "train_seconds": round(training_seconds(final), 1),
        "teacher_seconds": round(training_seconds(teacher), 1) if (teacher / runs.LOG).exists() else None,
    }


def _stat(values: list[float | None]) -> dict[str, float | None]:
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def loco_summary(loco: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (train, test, system): every metric as mean/std/n over the seeds."""
    keys = list(dict.fromkeys((r["train"], r["test"], r["system"]) for r in loco))
    out = []
    for train, test, system in keys:
        rs = [r for r in loco if (r["train"], r["test"], r["system"]) == (train, test, system)]
        conds = [(c["noise"], c["snr"]) for c in rs[0]["conditions"]]

        def cond_stat(noise: str, snr: int | None, metric: str, rs=rs) -> dict[str, float | None]:
            return _stat(
                [next(c[metric] for c in r["conditions"] if (c["noise"], c["snr"]) == (noise, snr)) for r in rs]
            )

        out.append(
            {
                "train": train,
                "test": test,
                "system": system,
                "seeds": [r["seed"] for r in rs],
                "noisy_uar_0_20": _stat([noisy_mean(r["conditions"]) for r in rs]),
                "noisy_war_0_20": _stat([noisy_mean(r["conditions"], "war") for r in rs]),
                "conditions": [
                    {
                        "noise": n,
                        "snr": s,
                        "uar": cond_stat(n, s, "uar"),
                        "war": cond_stat(n, s, "war"),
                        "mean_c": cond_stat(n, s, "mean_c"),
                    }
                    for n, s in conds
                ],
                "rho": _stat([r.get("rho") for r in rs]),
                "monotone": [r.get("monotone") for r in rs],
                "flat": [r.get("flat") for r in rs],
                "clean_minus_0db": _stat([r.get("clean_minus_0db") for r in rs]),
            }
        )
    return out


def write(
    recipe: BundleRecipe, loco: list[dict[str, Any]], final: Path, info: dict[str, Any], times: dict[str, float]
) -> dict[str, Any]:
    """results/loco.csv and results/summary.json; returns the summary."""
    folder = recipe.work / "results"
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOCO_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in loco:
        for c in r["conditions"]:
            writer.writerow(
                {
                    **{k: r[k] for k in ("train", "test", "system", "seed")},
                    **c,
                    "snr": "" if c["snr"] is None else c["snr"],
                }
            )
    write_text_atomic(folder / "loco.csv", buf.getvalue())
    summary = {
        "name": recipe.name,
        "system": recipe.system,
        "baseline": recipe.baseline,
        "width": recipe.width,
        "encoder": recipe.encoder,
        "epochs": recipe.epochs,
        "batch_size": recipe.batch_size,
        "patience": recipe.patience,
        "train_noise": list(recipe.train_noise),
        "loco_train_noise": list(recipe.loco_train_noise),
        "test_noise": recipe.test_noise,
        "train_snrs": list(recipe.train_snrs),
        "test_snrs": list(recipe.test_snrs),
        "placeholder": recipe.placeholder,
        "final": final_summary(final),
        "loco": loco_summary(loco),
        "loco_runs": [{k: r[k] for k in ("train", "test", "system", "seed", "run")} for r in loco],
        **info,
        "times": dict(times),
    }
    write_json_atomic(folder / "summary.json", summary)
    return summary


def read_summary(recipe: BundleRecipe) -> dict[str, Any]:
    return json.loads((recipe.work / "results" / "summary.json").read_text())


def write_times(recipe: BundleRecipe, times: dict[str, float]) -> None:
    """Record the wall time of every stage of this invocation in summary.json."""
    summary = read_summary(recipe)
    summary["times"] = dict(times)
    write_json_atomic(recipe.work / "results" / "summary.json", summary)
