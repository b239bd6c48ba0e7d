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
    args = ap.parse_args()
    pilot = list(csv.DictReader((args.folder / "pilot.csv").open()))
    curves = list(csv.DictReader((args.folder / "curves.csv").open()))
    table = markdown(summarise(pilot, curves))
    print(table)
    figure(curves, args.chosen, args.folder / "curves.png")
    readme = args.folder / "README.md"
    begin, end = "<!-- pilot-table: begin -->", "<!-- pilot-table: end -->"
    if readme.exists() and begin in (text := readme.read_text()):
        head, rest = text.split(begin, 1)
        readme.write_text(f"{head}{begin}\n{table}{end}{rest.split(end, 1)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
