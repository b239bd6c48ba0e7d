"""Tables and the curves figure of the training-recipe pilot (bench/training_pilot.py), from
its pilot.csv and curves.csv: validation speakers only.

    python bench/training_pilot_report.py docs/training-recipe [--chosen levers]

Per (setting, system): runs; mean validation UAR; the within-speaker seed sd (the seeds' sd
of validation UAR per fold, ddof 1, pooled as the root of the mean variance over folds with
2+ seeds); the share of runs whose selected epoch lies in the first 20 % of their epochs
(epoch <= max(1, floor(0.2 x epochs)): epoch 1 of 4 or of 8 counts); the epoch-to-epoch sd of
validation UAR after that first 20 % (per run, ddof 1, averaged over runs), and beside it the
same without the trend (the rms of successive differences / sqrt 2: a curve still rising has a
large sd and a small jitter); core-minutes per run (the trainer's per-epoch wall seconds, one
thread each, on a machine shared with other work: the mean, and the least as the idle estimate).
Prints a Markdown table and writes curves.png (the current setting beside the chosen one).
The declared choice rule (bench/training_pilot.py) is applied to the settings run on both
systems, and the EmoDB check (rows with corpus = emodb) is compared, fold by fold, with the
same systems' seed-1 validation UAR in docs/emodb-refinement/runs.csv.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def early_cut(epochs: int) -> int:
    return max(1, math.floor(0.2 * epochs))


def summarise(pilot: list[dict], curves: list[dict]) -> list[dict]:
    by: dict[tuple, list[dict]] = defaultdict(list)
    for r in pilot:
        by[(r["setting"], r["system"])].append(r)
    curve: dict[tuple, list[tuple[int, float]]] = defaultdict(list)
    for c in curves:
        curve[(c["setting"], c["system"], int(c["fold"]), int(c["seed"]))].append(
            (int(c["epoch"]), float(c["val_uar"]))
        )
    out = []
    for (setting, system), rs in by.items():
        uars = np.array([float(r["val_uar"]) for r in rs]) * 100
        per_fold: dict[int, list[float]] = defaultdict(list)
        for r in rs:
            per_fold[int(r["fold"])].append(float(r["val_uar"]) * 100)
        variances = [np.var(v, ddof=1) for v in per_fold.values() if len(v) >= 2]
        early = [int(r["best_epoch"]) <= early_cut(int(r["epochs"])) for r in rs]
        swings, jitters = [], []
        for r in rs:
            pts = sorted(curve[(setting, system, int(r["fold"]), int(r["seed"]))])
            later = [u * 100 for e, u in pts if e > early_cut(int(r["epochs"]))]
            if len(later) >= 2:
                swings.append(np.std(later, ddof=1))
                # the same spread without the trend: successive differences' rms / sqrt 2 (von Neumann)
                jitters.append(float(np.sqrt(np.mean(np.square(np.diff(later))) / 2)))
        out.append(
            {
                "setting": setting,
                "system": system,
                "runs": len(rs),
                "folds": len(per_fold),
                "mean_val_uar": float(uars.mean()),
                "seed_sd": float(np.sqrt(np.mean(variances))) if variances else float("nan"),
                "early_share": float(np.mean(early)),
                "epoch_sd": float(np.mean(swings)) if swings else float("nan"),
                "epoch_jitter": float(np.mean(jitters)) if jitters else float("nan"),
                "core_min_min": float(min(float(r["core_seconds"]) for r in rs) / 60),
                "core_min": float(np.mean([float(r["core_seconds"]) for r in rs]) / 60),
            }
        )
    return out


SYSTEMS = ("baseline-e", "trnet-std-snr")


def choose(rows: list[dict]) -> tuple[str | None, str]:
    """The declared rule: among settings run on both systems (every fold and seed of each),
    the highest mean validation UAR over both systems among those whose mean within-speaker
    seed sd is the smallest within 0.5 points; ties to the cheaper. Returns (setting, table)."""
    by: dict[str, dict[str, dict]] = defaultdict(dict)
    for r in rows:
        if r["system"] in SYSTEMS:
            by[r["setting"]][r["system"]] = r
    full = {k: v for k, v in by.items() if len(v) == len(SYSTEMS) and all(x["runs"] >= 9 for x in v.values())}
    if not full:
        return None, ""
    stats = {
        k: (
            float(np.mean([v[x]["mean_val_uar"] for x in SYSTEMS])),
            float(np.mean([v[x]["seed_sd"] for x in SYSTEMS])),
            float(np.mean([v[x]["core_min_min"] for x in SYSTEMS])),
        )
        for k, v in full.items()
    }
    least = min(sd for _, sd, _ in stats.values())
    eligible = [k for k, (_, sd, _) in stats.items() if sd <= least + 0.5]
    chosen = max(eligible, key=lambda k: (round(stats[k][0], 6), -stats[k][2]))
    table = (
        "| setting (both systems, 3 folds x 3 seeds) | mean val UAR % | mean seed sd | least core-min | eligible |\n"
    )
    table += "|---|---|---|---|---|\n" + "".join(
        f"| {k}{' (chosen)' if k == chosen else ''} | {u:.1f} | {sd:.2f} | {c:.2f} "
        f"| {'yes' if k in eligible else 'no'} |\n"
        for k, (u, sd, c) in stats.items()
    )
    return chosen, table


def emodb_check(pilot: list[dict], reference: list[dict]) -> str:
    """Per setting and system: the check's mean validation UAR against `current` on the same
    store, folds and seed (the mean paired difference with its 95 % t interval; the target: no
    worse than -1 point), and the committed seed-1 runs of the same folds beside (an earlier tree)."""
    from scipy import stats

    committed = {(r["system"], int(r["fold"])): float(r["val_uar"]) * 100 for r in reference if int(r["seed"]) == 1}
    val = {(r["setting"], r["system"], int(r["fold"])): float(r["val_uar"]) * 100 for r in pilot}
    lines = []
    for setting in sorted({k[0] for k in val} - {"current"}):
        for system in SYSTEMS:
            folds = sorted(f for s, x, f in val if s == setting and x == system and ("current", system, f) in val)
            if len(folds) < 2:
                continue
            ours = np.array([val[(setting, system, f)] for f in folds])
            base = np.array([val[("current", system, f)] for f in folds])
            d = ours - base
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            low, high = d.mean() - half, d.mean() + half
            old = [committed[(system, f)] for f in folds if (system, f) in committed]
            lines.append(
                f"| {setting} | {system} | {len(d)} | {ours.mean():.1f} | {base.mean():.1f} "
                f"| {d.mean():+.1f} [{low:+.1f}, {high:+.1f}] | {np.mean(old):.1f} |\n"
            )
    if not lines:
        return ""
    return (
        "| setting | system | folds | val UAR % | current, same store | paired difference [95 % CI] "
        "| committed seed 1 (earlier tree) |\n|---|---|---|---|---|---|---|\n" + "".join(lines)
    )


def _fill(readme: Path, marker: str, table: str) -> None:
    begin, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
    if readme.exists() and begin in (text := readme.read_text()):
        head, rest = text.split(begin, 1)
        readme.write_text(f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}")


def markdown(rows: list[dict]) -> str:
    head = (
        "| setting | system | runs (folds) | mean val UAR % | within-speaker seed sd | runs choosing the first 20 % "
        "| epoch-to-epoch sd after 20 % (without trend) | core-min / run (least) |\n|---|---|---|---|---|---|---|---|\n"
    )
    return head + "".join(
        f"| {r['setting']} | {r['system']} | {r['runs']} ({r['folds']}) | {r['mean_val_uar']:.1f} | {r['seed_sd']:.2f} "
        f"| {r['early_share'] * 100:.0f} % | {r['epoch_sd']:.2f} ({r['epoch_jitter']:.2f}) "
        f"| {r['core_min']:.2f} ({r['core_min_min']:.2f}) |\n"
        for r in rows
    )


def figure(curves: list[dict], chosen: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = sorted({c["system"] for c in curves if c["system"] != "baseline-c"})
    fig, axes = plt.subplots(1, len(systems), figsize=(5.5 * len(systems), 4), squeeze=False)
    for ax, system in zip(axes[0], systems, strict=True):
        for setting, colour in (("current", "0.6"), (chosen, "C0")):
            runs: dict[tuple, list] = defaultdict(list)
            for c in curves:
                if c["setting"] == setting and c["system"] == system:
                    runs[(c["fold"], c["seed"])].append((int(c["epoch"]), float(c["val_uar"]) * 100))
            for k, (_key, pts) in enumerate(sorted(runs.items())):
                pts.sort()
                ax.plot(*zip(*pts, strict=True), color=colour, alpha=0.7, lw=1.2, label=setting if k == 0 else None)
        ax.set_title(f"{system} (nEMO folds 0, 3, 6 x 3 seeds)")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation UAR %")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="holds pilot.csv and curves.csv")
    ap.add_argument("--chosen", default="levers")
    ap.add_argument("--reference", type=Path, default=Path("docs/emodb-refinement/runs.csv"))
    args = ap.parse_args()
    pilot = list(csv.DictReader((args.folder / "pilot.csv").open()))
    curves = list(csv.DictReader((args.folder / "curves.csv").open()))
    nemo = [r for r in pilot if r["corpus"] == "nemo"]
    nemo_curves = [c for c in curves if c.get("corpus", "nemo") == "nemo"]
    rows = summarise(nemo, nemo_curves)
    table = markdown(rows)
    chosen, rule = choose(rows)
    check = emodb_check([r for r in pilot if r["corpus"] == "emodb"], list(csv.DictReader(args.reference.open())))
    print(table, rule, f"the rule chooses: {chosen}\n", check, sep="\n")
    figure(nemo_curves, args.chosen, args.folder / "curves.png")
    readme = args.folder / "README.md"
    _fill(readme, "pilot-table", table)
    _fill(readme, "choice-table", rule)
    _fill(readme, "emodb-check", check)
    return 0


if __name__ == "__main__":
    sys.exit(main())
