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
from scipy import stats

from trnet import configs, runs
from trnet.bundle.recipe import BundleRecipe
from trnet.bundle.transfer import noisy_mean
from trnet.models import load_config
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


def c_training(system: str) -> str | None:
    """How the system's c learns (for the model card's words on c): None (no c), "snr" (L_c
    towards clip(SNR / 25 dB, 0, 1)), "oracle" (L_c towards the least-squares c of eq. (5)), or
    "unsupervised" (only through the losses of the paper)."""
    cfg = load_config(system)
    if cfg.input != "trnet":
        return None
    return cfg.c_target if cfg.gamma > 0 else "unsupervised"


def _stat(values: list[float | None]) -> dict[str, Any]:
    """mean, sample std, n and the 95 % t interval of the mean over seeds (None below 2 seeds)."""
    v = [x for x in values if x is not None]
    if not v:
        return {"mean": None, "std": None, "n": 0, "ci": None}
    mean, std = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    half = float(stats.t.ppf(0.975, len(v) - 1) * std / np.sqrt(len(v))) if len(v) > 1 else None
    return {"mean": mean, "std": std, "n": len(v), "ci": None if half is None else [mean - half, mean + half]}


OUTCOMES = ("noisy_uar_0_20", "noisy_war_0_20", "clean_uar", "clean_war")


def outcome(conditions: list[dict[str, Any]], name: str) -> float:
    """One of OUTCOMES for a run's conditions: the 0-20 dB mean, or the clean value."""
    metric = name.split("_")[1]
    if name.startswith("noisy_"):
        return noisy_mean(conditions, metric)
    return next(c[metric] for c in conditions if c["snr"] is None)


def loco_differences(loco: list[dict[str, Any]], system: str, baseline: str) -> list[dict[str, Any]]:
    """Per direction: system - baseline on noisy (0-20 dB) and clean UAR and WAR, paired by seed
    (the seeds both ran), as _stat over the seeds' differences; none when the system is the
    baseline itself."""
    out: list[dict[str, Any]] = []
    if system == baseline:
        return out
    for train, test in dict.fromkeys((r["train"], r["test"]) for r in loco):
        by = {(r["system"], r["seed"]): r for r in loco if (r["train"], r["test"]) == (train, test)}
        seeds = sorted(s for (name, s) in by if name == system and (baseline, s) in by)
        if not seeds:
            continue
        a, b = ([by[(name, s)]["conditions"] for s in seeds] for name in (system, baseline))
        out.append(
            {
                "train": train,
                "test": test,
                "system": system,
                "baseline": baseline,
                "seeds": seeds,
                **{k: _stat([outcome(x, k) - outcome(y, k) for x, y in zip(a, b, strict=True)]) for k in OUTCOMES},
            }
        )
    return out


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
                **{k: _stat([outcome(r["conditions"], k) for r in rs]) for k in OUTCOMES},
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
                "nonspeech": None
                if any(r.get("nonspeech") is None for r in rs)
                else {k: _stat([float(np.mean(r["nonspeech"][k])) for r in rs]) for k in rs[0]["nonspeech"]},
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
        "loco_differences": loco_differences(loco, recipe.system, recipe.baseline),
        "loco_targets": [
            {"train": a, "test": b, "noisy_uar_0_20": target / 100} for (a, b), target in recipe.loco_targets.items()
        ],
        "c_training": c_training(recipe.system),
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
