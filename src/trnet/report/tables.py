"""The report's tables (paper §5, docs/design.md §8) and its paired significance tests, as markdown:
Table 1 (UAR/WAR per system and setting), per-SNR tables, Table 2 (complexity), the paper's
Table 1, and paired tests of one system against others."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trnet.configs import display_name
from trnet.evaluation.complexity import complexity_table
from trnet.report.results import Results
from trnet.report.stats import PairedTest, min_pairs, paired_test

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


def mean_std(values: Sequence[float], scale: float = 100.0) -> tuple[float, str]:
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
    for row, m in zip(rows, means, strict=False):
        cells = [row[0]] + [
            f"**{c}**" if not np.isnan(m[j]) and np.isclose(m[j], best[j]) else c for j, c in enumerate(row[1:])
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table1(res: Results) -> str:
    settings = [("clean", "Clean")] + [(n, f"{n} (mean of {len(res.snrs)} SNRs)") for n in res.noises]
    header = ["System"] + [f"{label} {m}" for _, label in settings for m in ("UAR", "WAR")]
    rows, means = [], []
    for system in res.systems:
        row, mean = [display_name(system)], []
        for noise, _ in settings:
            for metric in ("uar", "war"):
                m, text = mean_std(list(res.scores(system, metric, noise).values()))
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
        stats = [mean_std(list(c.values())) for c in cells]
        rows.append([display_name(system)] + [t for _, t in stats])
        means.append([m for m, _ in stats])
    return _table(header, rows, means)


def table2(encoder: str, width: int) -> str:
    lines = [
        "| System | Training params (M) | Training MACs (G) | Inference params (M) | Inference MACs (G) |",
        "|---|---|---|---|---|",
    ]
    for r in complexity_table(encoder, width):
        lines.append(
            f"| {display_name(r['system'])} | {r['train_params'] / 1e6:.2f} | {r['train_macs'] / 1e9:.2f} "
            f"| {r['infer_params'] / 1e6:.2f} | {r['infer_macs'] / 1e9:.2f} |"
        )
    return "\n".join(lines)


def paper_table1() -> str:
    lines = [
        "| System | IEM UAR | IEM WAR | IEM-ESC UAR | IEM-ESC WAR | IEM-MUSAN UAR | IEM-MUSAN WAR |",
        "|---|---|---|---|---|---|---|",
    ]
    for system, values in PAPER_TABLE1.items():
        lines.append(f"| {display_name(system)} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


def significance(res: Results, pairs: Sequence[tuple[str, str]]) -> tuple[str, list[dict[str, Any]]]:
    """Paired tests of system a against system b for each (a, b) in `pairs` on per-run test UAR,
    clean and each noise corpus's SNR mean: markdown and the raw numbers."""
    pairs = [(a, b) for a, b in pairs if a in res.systems and b in res.systems and a != b]
    if not pairs:
        return "No pair of systems to test (not run).", []
    settings = ["clean", *res.noises]
    lines = [
        "| System | vs | Setting | Pairs | Mean diff (UAR points) | Wilcoxon p | Sign-flip p |",
        "|---|---|---|---|---|---|---|",
    ]
    out: list[dict[str, Any]] = []
    small: set[int] = set()
    for focus, other in pairs:
        for setting in settings:
            a, b = res.scores(focus, "uar", setting), res.scores(other, "uar", setting)
            common = sorted(set(a) & set(b))
            t = paired_test(np.array([a[p] for p in common]), np.array([b[p] for p in common]))
            label = setting if setting == "clean" else f"{setting} (SNR mean)"
            if not t.can_reject():
                small.add(t.n)
            kind = "exact" if t.exact else "Monte-Carlo"
            lines.append(
                f"| {display_name(focus)} | {display_name(other)} | {label} | {t.n} | "
                f"{signed(100 * t.mean_diff)} | {_p(t.wilcoxon_p)} | {_p(t.permutation_p)} ({kind}) |"
            )
            out.append({"system": focus, "other": other, "setting": setting, **_test_dict(t)})
    notes = [
        "Two-sided tests on the per-run test UAR of the system minus the other, paired by (fold, seed); runs of "
        "the same fold with different seeds share a test speaker, so the pairs are not fully independent."
    ]
    if small:
        ns = ", ".join(str(n) for n in sorted(small))
        notes.append(
            f"**Too few pairs to conclude** where n = {ns}: with n pairs no two-sided test on signs can give "
            f"p below 2/2^n, so at least {min_pairs()} pairs are needed before p < 0.05 is even possible. "
            "Those rows describe the runs, they cannot establish a difference."
        )
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {n}" for n in notes), out


def _test_dict(t: PairedTest) -> dict[str, Any]:
    """The test's numbers, nan as null (strict JSON)."""
    values = {
        "n": t.n,
        "mean_diff": t.mean_diff,
        "std_diff": t.std_diff,
        "wilcoxon_p": t.wilcoxon_p,
        "permutation_p": t.permutation_p,
        "exact": t.exact,
        "min_p": t.min_p,
    }
    return {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in values.items()}


def signed(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:+.2f}"


def _p(p: float) -> str:
    return "–" if np.isnan(p) else f"{p:.3g}"
