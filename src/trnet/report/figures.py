"""The report's figures (paper §5, docs/design.md §8), drawn from a results directory:

uar_vs_snr.png            UAR vs SNR per noise corpus, every system
fig2_snr_coefficient.png  Figure 2: estimated c vs SNR (quartiles) and the oracle c, systems with c
fig3_tsne.png             Figure 3: t-SNE of h for Baseline-c, Baseline-e and TRNet
confusion.png             per system, clean and noisy pooled, row-normalised
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trnet.configs import display_name
from trnet.corpora import LABELS
from trnet.evaluation.metrics import confusion
from trnet.report.results import TSNE_SNRS, Results, RunPredictions, tsne_systems
from trnet.store import condition_name
from trnet.utils import atomic_path

TSNE_UTTERANCES = 500  # the paper's 500 utterances


def _plt():
    """matplotlib's pyplot on the file-only Agg back-end (imported here: it is heavy, and only
    the figures need it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)


def _snr_axis(ax, snrs: list[int]) -> list[float]:
    """x positions: SNRs in dB, and 'clean' one step to the right of the highest SNR."""
    step = 5 if len(snrs) < 2 else abs(snrs[0] - snrs[1])
    xs = [max(snrs) + step] + list(snrs)
    ax.set_xticks(xs, ["clean"] + [str(s) for s in snrs])
    ax.set_xlabel("SNR (dB)")
    return xs


def figure_uar(res: Results, path: Path) -> None:
    """UAR vs SNR per noise corpus for every system (the per-SNR tables, drawn)."""
    if not res.noises:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, len(res.noises), figsize=(5 * len(res.noises), 4), squeeze=False)
    for ax, noise in zip(axes[0], res.noises, strict=False):
        xs = _snr_axis(ax, res.snrs)
        for system in res.systems:
            cells = [res.scores(system, "uar", "clean")] + [res.scores(system, "uar", noise, s) for s in res.snrs]
            mean = [100 * np.mean(list(c.values())) if c else np.nan for c in cells]
            ax.plot(xs, mean, marker="o", label=display_name(system))
        ax.set_title(noise)
        ax.set_ylabel("UAR (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    _save(fig, path)


def pooled(res: Results, system: str, kind: str) -> dict[str, np.ndarray]:
    """Per-utterance values of `kind` ("c" or "oracle") of every run of `system`, pooled per
    condition name; empty where the predictions files are missing."""
    out: dict[str, list[np.ndarray]] = {}
    for fold, seed in res.runs(system):
        path = res.predictions(system, fold, seed)
        if path is not None and path.is_file():
            for cond, values in getattr(RunPredictions.load(path), kind).items():
                out.setdefault(cond, []).append(values)
    return {cond: np.concatenate(v).astype(np.float64) for cond, v in out.items()}


def _quartiles(values: dict[str, np.ndarray], conds: list[str]) -> np.ndarray | None:
    """[3, len(conds)]: first quartile, median, third quartile per condition (None if any is missing)."""
    if not all(c in values and len(values[c]) for c in conds):
        return None
    return np.array([np.percentile(values[c], (25, 50, 75)) for c in conds]).T


def figure2(res: Results, path: Path) -> list[str]:
    """Estimated c vs SNR per noise corpus (paper Figure 2) for every system with an SNR-aware
    module: the median over test utterances and runs, with the interquartile range shaded,
    and the oracle (least-squares) c as a dashed reference (dotted: that of each other SE setting,
    "<system>@<tag>", whose X_e differs). Without predictions files, the
    mean over runs of each run's mean c. Returns the systems drawn."""
    systems = res.c_systems
    if not systems or not res.noises:
        return []
    plt = _plt()
    colours = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(1, len(res.noises), figsize=(5.5 * len(res.noises), 4.2), squeeze=False)
    oracles = {}  # SE setting ("" or the tag of a merged results directory) -> its oracle c
    for system in systems:
        tag = system.partition("@")[2]
        if tag not in oracles:
            oracles[tag] = pooled(res, system, "oracle")
    for ax, noise in zip(axes[0], res.noises, strict=False):
        xs = _snr_axis(ax, res.snrs)
        conds = ["clean"] + [condition_name((noise, s)) for s in res.snrs]
        for k, system in enumerate(systems):
            q = _quartiles(pooled(res, system, "c"), conds)
            colour = colours[k % len(colours)]
            if q is None:
                cells = [res.scores(system, "mean_c", "clean")]
                cells += [res.scores(system, "mean_c", noise, s) for s in res.snrs]
                means = [np.mean(list(c.values())) if c else np.nan for c in cells]
                ax.plot(xs, means, marker="o", color=colour, label=f"{display_name(system)} (mean)")
                continue
            ax.plot(xs, q[1], marker="o", color=colour, label=display_name(system))
            ax.fill_between(xs, q[0], q[2], color=colour, alpha=0.15, linewidth=0)
        for k, (tag, oracle) in enumerate(oracles.items()):
            q = _quartiles(oracle, conds) if oracle else None
            if q is not None:
                ax.plot(
                    xs,
                    q[1],
                    linestyle="--" if k == 0 else ":",
                    color="black",
                    label=f"oracle c{' @' + tag if tag else ''} (least squares)",
                )
                ax.fill_between(xs, q[0], q[2], color="black", alpha=0.07, linewidth=0)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{noise}{' (training noise)' if noise == res.train_noise else ''}")
        ax.set_ylabel("estimated c (median, IQR shaded)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    _save(fig, path)
    return systems


def _tsne_run(res: Results, systems: list[str]) -> tuple[int, int] | None:
    """One (fold, seed) run that every drawn system has (the paper shows one model each)."""
    common = set.intersection(*(set(res.runs(s)) for s in systems))
    return min(common) if common else None


def _load_h(res: Results, system: str, fold: int, seed: int) -> dict[str, np.ndarray] | None:
    path = res.predictions(system, fold, seed)
    conds = {s: condition_name((res.train_noise, s)) for s in TSNE_SNRS if s in res.snrs}
    if path is None or not path.is_file() or not conds:
        return None
    p = RunPredictions.load(path)
    if not all(c in p.h for c in conds.values()):
        return None
    return {"y": p.y_true, "ids": p.ids, **{str(s): p.h[c].astype(np.float32) for s, c in conds.items()}}


def figure3(res: Results, path: Path) -> tuple[str, list[dict[str, Any]]]:
    """t-SNE of h (paper Figure 3); returns a note on what was drawn and centre distances."""
    from sklearn.manifold import TSNE  # heavy, and only this figure needs it

    systems = [s for s in tsne_systems() if s in res.systems]
    run = _tsne_run(res, systems) if systems else None
    if run is None:
        return "Figure 3 skipped: none of Baseline-c, Baseline-e, TRNet has a run with kept representations.", []
    data = {s: _load_h(res, s, *run) for s in systems}
    systems = [s for s in systems if data[s] is not None]
    if not systems:
        return "Figure 3 skipped: the predictions files hold no representations h.", []
    plt = _plt()
    colours = plt.get_cmap("tab10").colors
    markers = {20: "o", 10: "^", 0: "s", 15: "v", 5: "D"}
    fig, axes = plt.subplots(1, len(systems), figsize=(5.5 * len(systems), 5), squeeze=False)
    distances = []
    for ax, system in zip(axes[0], systems, strict=False):
        d = data[system]
        snrs = [s for s in TSNE_SNRS if str(s) in d]
        rng = np.random.default_rng(0)
        order = np.argsort(d["ids"])  # the same utterances for every system of the same run
        pick = np.sort(rng.permutation(order)[:TSNE_UTTERANCES]) if len(order) > TSNE_UTTERANCES else order
        h = np.concatenate([d[str(s)][pick] for s in snrs])
        y = np.tile(d["y"][pick], len(snrs))
        cond = np.repeat(snrs, len(pick))
        perplexity = float(min(30.0, max(2.0, (len(h) - 1) / 3)))
        z = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(h)
        size, alpha = (10, 0.35) if len(pick) > 200 else (24, 0.55)  # few points: make them visible
        for s in snrs:
            for k in range(len(LABELS)):
                m = (cond == s) & (y == k)
                ax.scatter(
                    z[m, 0], z[m, 1], s=size, alpha=alpha, color=colours[k], marker=markers.get(s, "o"), linewidths=0
                )
        for k, label in enumerate(LABELS):
            if np.any(y == k):
                c = z[y == k].mean(0)
                ax.scatter(
                    *c, s=260, color=colours[k], edgecolors="black", linewidths=1.5, marker="*", label=f"{label} centre"
                )
        for s in snrs:
            c = z[cond == s].mean(0)
            ax.scatter(*c, s=160, color="black", marker=markers.get(s, "o"), label=f"{s} dB centre")
        ax.set_title(display_name(system))
        ax.set_xticks([])
        ax.set_yticks([])
        distances.append({"system": system, **_centre_distances(h, y, cond)})
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, markerscale=0.6, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)
    fold, seed = run
    n = min(TSNE_UTTERANCES, len(data[systems[0]]["ids"]))
    speaker = res.by_run[(systems[0], fold, seed)][("clean", None)]["test_speaker"]
    note = (
        f"Run fold {fold}, seed {seed} (test speaker {speaker}): "
        f"{n} test utterances × {{{', '.join(str(s) for s in TSNE_SNRS if s in res.snrs)}}} dB of {res.train_noise}; "
        "small points are utterances (colour = class, marker = SNR), stars are class centres, black markers "
        "condition centres. One model per system, as in the paper (representations of different models are "
        "not in one space)."
    )
    missing = [s for s in tsne_systems() if s not in systems]
    if missing:
        note += f" Not drawn (not run or no h kept): {', '.join(display_name(s) for s in missing)}."
    return note, distances


def _centre_distances(h: np.ndarray, y: np.ndarray, cond: np.ndarray) -> dict[str, float]:
    """The paper's two visual claims as numbers, in h itself (standardised), not in t-SNE's
    plane: how far the condition centres drift apart, and how far apart the class centres are,
    both relative to the spread of utterances around their own (class, condition) centre."""
    h = (h - h.mean(0)) / (h.std(0) + 1e-8)
    groups = [(y == k) & (cond == s) for k in np.unique(y) for s in np.unique(cond)]
    spreads = [np.linalg.norm(h[g] - h[g].mean(0), axis=1).mean() for g in groups if g.sum() > 1]
    spread = float(np.mean(spreads)) if spreads and np.mean(spreads) > 0 else float("nan")
    cond_c = np.stack([h[cond == s].mean(0) for s in np.unique(cond)])
    class_c = np.stack([h[y == k].mean(0) for k in np.unique(y)])
    return {
        "condition_centre_distance": _mean_pair_distance(cond_c) / spread,
        "class_centre_distance": _mean_pair_distance(class_c) / spread,
    }


def _mean_pair_distance(centres: np.ndarray) -> float:
    if len(centres) < 2:
        return float("nan")
    return float(np.mean([np.linalg.norm(a - b) for i, a in enumerate(centres) for b in centres[i + 1 :]]))


def confusion_figure(res: Results, path: Path) -> list[str]:
    """Row-normalised confusion matrices per system, clean and noisy (all noise corpora and
    SNRs) pooled over runs; returns the systems drawn."""
    mats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for system in res.systems:
        clean = np.zeros((len(LABELS), len(LABELS)), np.int64)
        noisy = np.zeros_like(clean)
        for fold, seed in res.runs(system):
            npz = res.predictions(system, fold, seed)
            if npz is None or not npz.is_file():
                continue
            p = RunPredictions.load(npz)
            for cond, pred in p.pred.items():
                m = confusion(p.y_true, pred, len(LABELS))
                if cond == "clean":
                    clean += m
                else:
                    noisy += m
        if clean.sum():
            mats[system] = (clean, noisy)
    if not mats:
        return []
    plt = _plt()
    fig, axes = plt.subplots(len(mats), 2, figsize=(7, 3.4 * len(mats)), squeeze=False)
    for row, (system, pair) in zip(axes, mats.items(), strict=False):
        for ax, m, title in zip(row, pair, ("clean", "noisy, pooled"), strict=False):
            norm = m / np.maximum(m.sum(1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            for i in range(len(LABELS)):
                for j in range(len(LABELS)):
                    ax.text(
                        j,
                        i,
                        f"{100 * norm[i, j]:.0f}",
                        ha="center",
                        va="center",
                        color="white" if norm[i, j] > 0.5 else "black",
                        fontsize=8,
                    )
            ax.set_xticks(range(len(LABELS)), LABELS, fontsize=7)
            ax.set_yticks(range(len(LABELS)), LABELS, fontsize=7)
            ax.set_title(f"{display_name(system)}: {title}", fontsize=9)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return list(mats)
