"""`trnet report RESULTS_DIR`: the paper's tables and figures (§5, SPEC §8) from a results
directory written by `trnet reproduce`, as report.md plus PNGs beside it.

    Table 1     per system: clean, and each noise corpus as the mean over its SNRs; UAR and
                WAR, mean ± std over the (fold, seed) runs, best in bold
    per SNR     one table per noise corpus and metric
    Table 2     parameters and MACs (trnet.evaluation.complexity) at the run's encoder/width
    Figure 2    mean estimated c vs SNR per noise corpus: TRNet and its two variants
    Figure 3    t-SNE of h for Baseline-c, Baseline-e and TRNet under the training noise at
                20/10/0 dB, with class and condition centres
    confusion   per system, clean and noisy pooled, row-normalised
    tests       TRNet vs every other system over paired (fold, seed) runs

It reads only RESULTS_DIR (results.json, meta.json, predictions/), so a results directory
can be copied elsewhere and reported there. Systems that were not run are left out with a
note, never an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trnet.corpora import LABELS
from trnet.evaluation.stats import PairedTest, min_pairs, paired_test
from trnet.models import SYSTEMS
from trnet.utils import atomic_path, write_text_atomic

NAMES = {"baseline-c": "Baseline-c", "baseline-n": "Baseline-n", "baseline-e": "Baseline-e", "baseline-ne": "Baseline-ne",
         "trnet": "TRNet", "trnet-wo-low": "TRNet w/o L_low", "trnet-wo-high": "TRNet w/o L_high"}
TRNET_FAMILY = ("trnet", "trnet-wo-low", "trnet-wo-high")  # Figure 2
TSNE_SYSTEMS = ("baseline-c", "baseline-e", "trnet")  # Figure 3; reproduce keeps h for these
TSNE_SNRS = (20, 10, 0)
TSNE_UTTERANCES = 500
# Paper Table 1 (IEMOCAP, %): UAR/WAR on IEM, IEM-ESC, IEM-MUSAN
PAPER_TABLE1 = {
    "baseline-c": (56.77, 54.79, 45.61, 43.62, 44.47, 42.75),
    "baseline-n": (55.85, 54.48, 54.22, 52.65, 53.39, 51.84),
    "baseline-e": (55.72, 54.28, 53.40, 52.02, 53.63, 52.08),
    "baseline-ne": (56.37, 54.67, 54.19, 52.63, 54.45, 52.77),
    "trnet": (57.44, 56.00, 55.24, 53.76, 55.35, 53.63),
    "trnet-wo-low": (56.70, 55.02, 54.77, 53.13, 54.90, 53.02),
    "trnet-wo-high": (56.12, 54.32, 53.94, 52.20, 54.18, 52.37),
}

Run = tuple[str, int, int]  # (system, fold, seed)


# --------------------------------------------------------------------------- data


class Results:
    """The tidy rows of results.json, indexed: (system, fold, seed) -> (noise, snr) -> row."""

    def __init__(self, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
        self.meta = meta
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
        self.systems = [s for s in SYSTEMS if s in present] + sorted(present - set(SYSTEMS))
        self.noises = [n for n in meta.get("noise", {}) if n in noises] + [n for n in noises if n not in meta.get("noise", {})]
        self.snrs = sorted(snrs, reverse=True)
        self.train_noise = meta.get("train_noise") or ("esc50" if "esc50" in self.noises else (self.noises or [""])[0])

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


def load_results(results_dir: Path) -> Results:
    path = results_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (write it with `trnet reproduce RECIPE`)")
    meta_path = results_dir / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Results(json.loads(path.read_text()), meta)


# --------------------------------------------------------------------------- tables


def _mean_std(values: Sequence[float], scale: float = 100.0) -> tuple[float, str]:
    """(mean, 'mean ± std') in percent; std is the sample std over runs, left out for one run."""
    v = np.asarray(values, dtype=np.float64) * scale
    if len(v) == 0:
        return float("nan"), "–"
    if len(v) == 1:
        return float(v[0]), f"{v[0]:.2f}"
    return float(v.mean()), f"{v.mean():.2f} ± {v.std(ddof=1):.2f}"


def _table(header: list[str], rows: list[list[str]], means: list[list[float]]) -> str:
    """A markdown table whose numeric cells (means[i][j] for column j + 1) are bold where
    they are the column's best (highest) mean."""
    cols = len(header) - 1
    best = [np.nanmax([m[j] for m in means]) if any(not np.isnan(m[j]) for m in means) else np.nan for j in range(cols)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row, m in zip(rows, means):
        cells = [row[0]] + [f"**{c}**" if not np.isnan(m[j]) and np.isclose(m[j], best[j]) else c
                            for j, c in enumerate(row[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table1(res: Results) -> str:
    settings = [("clean", "Clean")] + [(n, f"{n} (mean of {len(res.snrs)} SNRs)") for n in res.noises]
    header = ["System"] + [f"{label} {m}" for _, label in settings for m in ("UAR", "WAR")]
    rows, means = [], []
    for system in res.systems:
        row, mean = [NAMES.get(system, system)], []
        for noise, _ in settings:
            for metric in ("uar", "war"):
                m, text = _mean_std(list(res.scores(system, metric, noise).values()))
                row.append(text)
                mean.append(m)
        rows.append(row)
        means.append(mean)
    return _table(header, rows, means)


def snr_table(res: Results, noise: str, metric: str) -> str:
    header = ["System", "Clean"] + [f"{s} dB" for s in res.snrs] + ["Mean"]
    rows, means = [], []
    for system in res.systems:
        cells = [res.scores(system, metric, "clean")] + [res.scores(system, metric, noise, s) for s in res.snrs]
        cells.append(res.scores(system, metric, noise))
        stats = [_mean_std(list(c.values())) for c in cells]
        rows.append([NAMES.get(system, system)] + [t for _, t in stats])
        means.append([m for m, _ in stats])
    return _table(header, rows, means)


def table2(encoder: str, width: int) -> str:
    from trnet.evaluation.complexity import complexity_table

    lines = ["| System | Training params (M) | Training MACs (G) | Inference params (M) | Inference MACs (G) |",
             "|---|---|---|---|---|"]
    for r in complexity_table(encoder, width):
        lines.append(f"| {NAMES.get(r['system'], r['system'])} | {r['train_params'] / 1e6:.2f} | {r['train_macs'] / 1e9:.2f} "
                     f"| {r['infer_params'] / 1e6:.2f} | {r['infer_macs'] / 1e9:.2f} |")
    return "\n".join(lines)


def paper_table1() -> str:
    lines = ["| System | IEM UAR | IEM WAR | IEM-ESC UAR | IEM-ESC WAR | IEM-MUSAN UAR | IEM-MUSAN WAR |",
             "|---|---|---|---|---|---|---|"]
    for system, values in PAPER_TABLE1.items():
        lines.append(f"| {NAMES[system]} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- significance


def significance(res: Results) -> tuple[str, list[dict[str, Any]]]:
    """TRNet against every other system on paired per-run UAR: markdown and the raw numbers."""
    if "trnet" not in res.systems:
        return "TRNet was not run: no significance tests.", []
    settings = ["clean", *res.noises]
    lines = ["| TRNet vs | Setting | Pairs | Mean diff (UAR points) | Wilcoxon p | Sign-flip p |", "|---|---|---|---|---|---|"]
    out: list[dict[str, Any]] = []
    small: set[int] = set()
    for other in res.systems:
        if other == "trnet":
            continue
        for setting in settings:
            a, b = res.scores("trnet", "uar", setting), res.scores(other, "uar", setting)
            pairs = sorted(set(a) & set(b))
            t = paired_test(np.array([a[p] for p in pairs]), np.array([b[p] for p in pairs]))
            label = setting if setting == "clean" else f"{setting} (SNR mean)"
            if not t.can_reject():
                small.add(t.n)
            kind = "exact" if t.exact else "Monte-Carlo"
            lines.append(f"| {NAMES.get(other, other)} | {label} | {t.n} | {_signed(100 * t.mean_diff)} "
                         f"| {_p(t.wilcoxon_p)} | {_p(t.permutation_p)} ({kind}) |")
            out.append({"other": other, "setting": setting, **_test_dict(t)})
    notes = ["Two-sided tests on the per-run test UAR of TRNet minus the other system, paired by (fold, seed); "
             "runs of the same fold with different seeds share a test speaker, so the pairs are not fully independent."]
    if small:
        ns = ", ".join(str(n) for n in sorted(small))
        notes.append(f"**Too few pairs to conclude** where n = {ns}: with n pairs no two-sided test on signs can give "
                     f"p below 2/2^n, so at least {min_pairs()} pairs are needed before p < 0.05 is even possible. "
                     "Those rows describe the runs, they cannot establish a difference.")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes), out


def _test_dict(t: PairedTest) -> dict[str, Any]:
    """The test's numbers, nan as null (strict JSON)."""
    values = {"n": t.n, "mean_diff": t.mean_diff, "std_diff": t.std_diff, "wilcoxon_p": t.wilcoxon_p,
              "permutation_p": t.permutation_p, "exact": t.exact, "min_p": t.min_p}
    return {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in values.items()}


def _signed(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:+.2f}"


def _p(p: float) -> str:
    return "–" if np.isnan(p) else f"{p:.3g}"


# --------------------------------------------------------------------------- figures


def _plt():
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
    for ax, noise in zip(axes[0], res.noises):
        xs = _snr_axis(ax, res.snrs)
        for system in res.systems:
            cells = [res.scores(system, "uar", "clean")] + [res.scores(system, "uar", noise, s) for s in res.snrs]
            mean = [100 * np.mean(list(c.values())) if c else np.nan for c in cells]
            ax.plot(xs, mean, marker="o", label=NAMES.get(system, system))
        ax.set_title(noise)
        ax.set_ylabel("UAR (%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    _save(fig, path)


def figure2(res: Results, path: Path) -> list[str]:
    """Mean estimated c vs SNR per noise corpus (paper Figure 2); returns the systems drawn."""
    systems = [s for s in TRNET_FAMILY if s in res.systems and res.scores(s, "mean_c", "clean")]
    if not systems or not res.noises:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, len(res.noises), figsize=(5 * len(res.noises), 4), squeeze=False)
    for ax, noise in zip(axes[0], res.noises):
        xs = _snr_axis(ax, res.snrs)
        for system in systems:
            cells = [res.scores(system, "mean_c", "clean")] + [res.scores(system, "mean_c", noise, s) for s in res.snrs]
            mean = [np.mean(list(c.values())) if c else np.nan for c in cells]
            std = [np.std(list(c.values())) if c else np.nan for c in cells]
            ax.errorbar(xs, mean, yerr=std, marker="o", capsize=3, label=NAMES[system])
        ax.set_title(f"{noise}{' (training noise)' if noise == res.train_noise else ''}")
        ax.set_ylabel("mean estimated c")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    _save(fig, path)
    return systems


def _tsne_run(res: Results, systems: list[str]) -> tuple[int, int] | None:
    """One (fold, seed) run that every drawn system has (the paper shows one model each)."""
    common = set.intersection(*(set(res.runs(s)) for s in systems))
    return min(common) if common else None


def _load_h(results_dir: Path, res: Results, system: str, fold: int, seed: int) -> dict[str, np.ndarray] | None:
    path = results_dir / "predictions" / system / f"fold{fold}-seed{seed}.npz"
    keys = [f"h__{res.train_noise}@{s}" for s in TSNE_SNRS if s in res.snrs]
    if not path.is_file() or not keys:
        return None
    with np.load(path) as z:
        if not all(k in z for k in keys):
            return None
        return {"y": z["y_true"].astype(int), "ids": z["ids"], **{k.rsplit("@", 1)[1]: z[k].astype(np.float32) for k in keys}}


def figure3(results_dir: Path, res: Results, path: Path) -> tuple[str, list[dict[str, Any]]]:
    """t-SNE of h (paper Figure 3); returns a note on what was drawn and centre distances."""
    from sklearn.manifold import TSNE

    systems = [s for s in TSNE_SYSTEMS if s in res.systems]
    run = _tsne_run(res, systems) if systems else None
    if run is None:
        return "Figure 3 skipped: none of Baseline-c, Baseline-e, TRNet has a run with kept representations.", []
    data = {s: _load_h(results_dir, res, s, *run) for s in systems}
    systems = [s for s in systems if data[s] is not None]
    if not systems:
        return "Figure 3 skipped: the predictions files hold no representations h.", []
    plt = _plt()
    colours = plt.get_cmap("tab10").colors
    markers = {20: "o", 10: "^", 0: "s", 15: "v", 5: "D"}
    fig, axes = plt.subplots(1, len(systems), figsize=(5.5 * len(systems), 5), squeeze=False)
    distances = []
    for ax, system in zip(axes[0], systems):
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
                ax.scatter(z[m, 0], z[m, 1], s=size, alpha=alpha, color=colours[k], marker=markers.get(s, "o"), linewidths=0)
        for k, label in enumerate(LABELS):
            if np.any(y == k):
                c = z[y == k].mean(0)
                ax.scatter(*c, s=260, color=colours[k], edgecolors="black", linewidths=1.5, marker="*", label=f"{label} centre")
        for s in snrs:
            c = z[cond == s].mean(0)
            ax.scatter(*c, s=160, color="black", marker=markers.get(s, "o"), label=f"{s} dB centre")
        ax.set_title(NAMES[system])
        ax.set_xticks([])
        ax.set_yticks([])
        distances.append({"system": system, **_centre_distances(h, y, cond)})
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, markerscale=0.6, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)
    fold, seed = run
    n = min(TSNE_UTTERANCES, len(data[systems[0]]["ids"]))
    note = (f"Run fold {fold}, seed {seed} (test speaker {res.by_run[(systems[0], fold, seed)][('clean', None)]['test_speaker']}): "
            f"{n} test utterances × {{{', '.join(str(s) for s in TSNE_SNRS if s in res.snrs)}}} dB of {res.train_noise}; "
            "small points are utterances (colour = class, marker = SNR), stars are class centres, black markers "
            "condition centres. One model per system, as in the paper (representations of different models are "
            "not in one space).")
    missing = [s for s in TSNE_SYSTEMS if s not in systems]
    if missing:
        note += f" Not drawn (not run or no h kept): {', '.join(NAMES[s] for s in missing)}."
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
    pair = lambda c: float(np.mean([np.linalg.norm(a - b) for i, a in enumerate(c) for b in c[i + 1:]])) if len(c) > 1 else float("nan")  # noqa: E731
    return {"condition_centre_distance": pair(cond_c) / spread, "class_centre_distance": pair(class_c) / spread}


def confusion_figure(results_dir: Path, res: Results, path: Path) -> list[str]:
    """Row-normalised confusion matrices per system, clean and noisy (all noise corpora and
    SNRs) pooled over runs; returns the systems drawn."""
    from trnet.evaluation.metrics import confusion

    mats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for system in res.systems:
        clean = np.zeros((len(LABELS), len(LABELS)), np.int64)
        noisy = np.zeros_like(clean)
        for fold, seed in res.runs(system):
            p = results_dir / "predictions" / system / f"fold{fold}-seed{seed}.npz"
            if not p.is_file():
                continue
            with np.load(p) as z:
                y = z["y_true"].astype(int)
                for key in z.files:
                    if key.startswith("pred__"):
                        m = confusion(y, z[key].astype(int), len(LABELS))
                        if key == "pred__clean":
                            clean += m
                        else:
                            noisy += m
        if clean.sum():
            mats[system] = (clean, noisy)
    if not mats:
        return []
    plt = _plt()
    fig, axes = plt.subplots(len(mats), 2, figsize=(7, 3.4 * len(mats)), squeeze=False)
    for row, (system, pair) in zip(axes, mats.items()):
        for ax, m, title in zip(row, pair, ("clean", "noisy, pooled")):
            norm = m / np.maximum(m.sum(1, keepdims=True), 1)
            ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
            for i in range(len(LABELS)):
                for j in range(len(LABELS)):
                    ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center",
                            color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
            ax.set_xticks(range(len(LABELS)), LABELS, fontsize=7)
            ax.set_yticks(range(len(LABELS)), LABELS, fontsize=7)
            ax.set_title(f"{NAMES.get(system, system)}: {title}", fontsize=9)
            ax.set_xlabel("predicted", fontsize=8)
            ax.set_ylabel("true", fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return list(mats)


# --------------------------------------------------------------------------- report


def _setup(res: Results) -> list[str]:
    """The run's provenance and every way it differs from the paper's setting."""
    meta = res.meta
    if not meta:
        return ["- (no meta.json: provenance unknown)"]
    corpus, se = meta.get("corpus", {}), meta.get("se", {})
    recipe = meta.get("recipe", {})
    lines = [
        f"- Recipe: `{recipe.get('name', '?')}` ({recipe.get('origin', '?')})",
        f"- Commit: `{meta.get('commit', '?')}`; written {meta.get('created', '?')}; device {meta.get('device', '?')}"
        + (f"; {meta['seconds']:.0f} s" if "seconds" in meta else ""),
        f"- SE back-end: `{se.get('name', '?')}` ({se.get('version', '?')})",
        f"- Corpus: {corpus.get('kind', '?')} at `{corpus.get('root', '?')}`: {corpus.get('utterances', '?')} utterances, "
        f"{corpus.get('speakers', '?')} speakers, classes {corpus.get('classes', '?')}"
        + (f"; set aside {corpus['set_aside']}" if corpus.get("set_aside") else ""),
    ]
    for name, n in meta.get("noise", {}).items():
        role = "training and matched test noise" if name == res.train_noise else "unmatched test noise"
        lines.append(f"- Noise `{name}` ({role}): {n.get('kind')} at `{n.get('root')}`, {n.get('clips')} clips "
                     f"from {n.get('sources')} source recordings")
    lines.append(f"- Encoder {meta.get('encoder')}, width {meta.get('width')}, at most {meta.get('epochs')} epoch(s), "
                 f"batch {meta.get('batch_size', 32)}; "
                 f"folds {meta.get('folds')}; seeds {meta.get('seeds')}; SNRs {meta.get('snrs')} dB"
                 + (f"; one noise assignment (seed {meta['noise_seed']}) shared by all seeds" if meta.get("noise_seed") is not None else ""))
    lines += [f"- {n}" for n in _stand_ins(meta, res)]
    return lines


def _stand_ins(meta: dict[str, Any], res: Results) -> list[str]:
    out = [f"Note: {n}" for n in meta.get("notes", [])]
    corpus = meta.get("corpus", {}).get("kind")
    if corpus == "synthetic":
        out.append("**Synthetic speech**: the corpus is trnet's built-in source-filter synthesiser, not recorded "
                   "emotional speech; numbers show the pipeline works, not how TRNet does on real speech.")
    elif corpus and corpus != "iemocap":
        out.append(f"Stand-in: the corpus is {corpus}, not the paper's IEMOCAP; numbers are not comparable to the paper's.")
    for name, n in meta.get("noise", {}).items():
        paper = "esc50" if name == res.train_noise else "musan"
        if n.get("kind") != paper:
            what = "synthetic noise" if n.get("kind") == "synthetic" or "synthetic" in str(n.get("root")) else n.get("kind")
            out.append(f"Stand-in: noise `{name}` ({what}) plays the role of the paper's {'ESC-50' if paper == 'esc50' else 'MUSAN'}.")
    se = meta.get("se", {}).get("name")
    if se and se != "cmgan":
        out.append(f"Stand-in: SE front-end `{se}` instead of the paper's CMGAN.")
    smaller = []  # and other departures from the paper's training setting
    if meta.get("epochs", 80) < 80:
        smaller.append(f"{meta['epochs']} epoch(s) (paper 80)")
    if meta.get("batch_size", 32) != 32:
        smaller.append(f"batch {meta['batch_size']} (paper 32)")
    if meta.get("width", 32) != 32:
        smaller.append(f"width {meta['width']} (paper 32)")
    if len(meta.get("seeds", [0, 0, 0])) < 3:
        smaller.append(f"{len(meta['seeds'])} seed(s) (paper 3)")
    if len(meta.get("folds", range(10))) < 10:
        smaller.append(f"{len(meta['folds'])} fold(s) (paper 10)")
    if smaller:
        out.append("Departures from the paper's training setting: " + ", ".join(smaller) + ".")
    return out


def make_report(results_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write report.md and its PNGs (into `out`, default the results directory)."""
    results_dir = Path(results_dir)
    out = Path(out) if out else results_dir
    res = load_results(results_dir)
    meta = res.meta
    md = [f"# TRNet reproduction report: {meta.get('recipe', {}).get('name', results_dir.name)}", "", "## Setup", ""]
    md += _setup(res)
    missing = [s for s in SYSTEMS if s not in res.systems]
    if missing:
        md.append(f"- Not run: {', '.join(NAMES[s] for s in missing)} (their rows and figures are left out).")
    n_runs = {s: len(res.runs(s)) for s in res.systems}
    md += ["", "Runs per system (fold × seed): " + ", ".join(f"{NAMES.get(s, s)} {n}" for s, n in n_runs.items()), ""]

    md += ["## Table 1: UAR and WAR (%)", "",
           "Test speaker of each fold; mean ± sample std over the (fold, seed) runs; noise columns are the mean over "
           "the SNRs. Best mean per column in bold.", "", table1(res), ""]
    md += ["Paper (IEMOCAP, CMGAN, 10 folds × 3 seeds), for reference:", "", paper_table1(), ""]
    md += ["## Per-SNR results", ""]
    if res.noises:
        figure_uar(res, out / "uar_vs_snr.png")
        md += ["![UAR vs SNR](uar_vs_snr.png)", ""]
    for noise in res.noises:
        role = " (training noise: matched)" if noise == res.train_noise else " (unmatched)"
        for metric in ("uar", "war"):
            md += [f"### {noise}{role}: {metric.upper()} (%)", "", snr_table(res, noise, metric), ""]

    encoder, width = meta.get("encoder", "resnet"), int(meta.get("width", 32))
    md += ["## Table 2: complexity", "",
           f"Per 5 s utterance (500 × 80 LMFB), SE excluded, encoder {encoder}, width {width}"
           + (" (no meta.json: defaults)" if not meta else "")
           + ". Training adds the frozen teacher's forward for systems with L_high.", "", table2(encoder, width), ""]

    md += ["## Figure 2: estimated SNR coefficient c", ""]
    drawn = figure2(res, out / "fig2_snr_coefficient.png")
    if drawn:
        md += [f"Mean c over test utterances and runs (error bars: std over runs) for {', '.join(NAMES[s] for s in drawn)}.",
               "", "![Figure 2](fig2_snr_coefficient.png)", ""]
        absent = [NAMES[s] for s in TRNET_FAMILY if s not in drawn]
        if absent:
            md += [f"Not drawn (not run): {', '.join(absent)}.", ""]
    else:
        md += ["Skipped: none of TRNet, TRNet w/o L_low, TRNet w/o L_high was run.", ""]

    md += ["## Figure 3: t-SNE of utterance representations", ""]
    note, distances = figure3(results_dir, res, out / "fig3_tsne.png")
    md += [note, ""]
    if distances:
        md += ["![Figure 3](fig3_tsne.png)", "",
               "Centre distances in h itself (standardised), relative to the spread of utterances around their "
               "(class, SNR) centre: the paper expects TRNet to have the smallest SNR-centre distance and the "
               "largest class-centre distance.", "",
               "| System | SNR-centre distance | Class-centre distance |", "|---|---|---|"]
        md += [f"| {NAMES[d['system']]} | {d['condition_centre_distance']:.3f} | {d['class_centre_distance']:.3f} |"
               for d in distances]
        md.append("")

    md += ["## Confusion matrices", ""]
    drawn = confusion_figure(results_dir, res, out / "confusion.png")
    md += ["Row-normalised (% of each true class), pooled over runs; noisy pools every noise corpus and SNR.", "",
           "![confusion](confusion.png)", ""] if drawn \
        else ["Skipped: no predictions files.", ""]

    md += ["## Significance: TRNet against every other system", ""]
    text, tests = significance(res)
    md += [text, ""]
    write_text_atomic(out / "report.md", "\n".join(md))
    write_text_atomic(out / "significance.json", json.dumps(tests, indent=2) + "\n")
    return out / "report.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", type=Path, help="results directory (WORK/results of `trnet reproduce`)")
    p.add_argument("--out", type=Path, help="where to write report.md and the figures (default: RESULTS)")


def run(args: argparse.Namespace) -> int:
    try:
        path = make_report(args.results, args.out)
    except FileNotFoundError as err:
        print(f"trnet report: error: {err}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0
