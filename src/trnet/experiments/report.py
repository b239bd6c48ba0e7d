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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trnet.evaluation.complexity import complexity_table
from trnet.experiments.figures import confusion_figure, figure2, figure3, figure_uar
from trnet.experiments.recipe import PAPER_TRAINING, PAPER_WIDTH
from trnet.experiments.results import TRNET_FAMILY, Results, display_name, load_results
from trnet.experiments.stats import PairedTest, min_pairs, paired_test
from trnet.features import N_MELS, T_MAX
from trnet.models import SYSTEMS
from trnet.utils import write_text_atomic

PAPER_SEEDS, PAPER_FOLDS = 3, 10  # SPEC §3: 10 leave-one-speaker-out folds x 3 seeds
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
        row, mean = [display_name(system)], []
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
        rows.append([display_name(system)] + [t for _, t in stats])
        means.append([m for m, _ in stats])
    return _table(header, rows, means)


def table2(encoder: str, width: int) -> str:
    lines = ["| System | Training params (M) | Training MACs (G) | Inference params (M) | Inference MACs (G) |",
             "|---|---|---|---|---|"]
    for r in complexity_table(encoder, width):
        lines.append(f"| {display_name(r['system'])} | {r['train_params'] / 1e6:.2f} | {r['train_macs'] / 1e9:.2f} "
                     f"| {r['infer_params'] / 1e6:.2f} | {r['infer_macs'] / 1e9:.2f} |")
    return "\n".join(lines)


def paper_table1() -> str:
    lines = ["| System | IEM UAR | IEM WAR | IEM-ESC UAR | IEM-ESC WAR | IEM-MUSAN UAR | IEM-MUSAN WAR |",
             "|---|---|---|---|---|---|---|"]
    for system, values in PAPER_TABLE1.items():
        lines.append(f"| {display_name(system)} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- significance


def significance(res: Results) -> tuple[str, list[dict[str, Any]]]:
    """TRNet against every other system on paired per-run UAR: markdown and the raw numbers."""
    if "trnet" not in res.systems:
        return "TRNet was not run: no significance tests.", []
    settings = ["clean", *res.noises]
    lines = [
        "| TRNet vs | Setting | Pairs | Mean diff (UAR points) | Wilcoxon p | Sign-flip p |",
        "|---|---|---|---|---|---|",
    ]
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
            lines.append(f"| {display_name(other)} | {label} | {t.n} | {_signed(100 * t.mean_diff)} "
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


# --------------------------------------------------------------------------- report


def _setup(res: Results) -> list[str]:
    """The run's provenance and every way it differs from the paper's setting."""
    meta = res.meta
    if not meta:
        return ["- (no meta.json: provenance unknown)"]
    corpus, se = meta.get("corpus", {}), meta.get("se", {})
    recipe = meta.get("recipe", {})
    table = recipe.get("table", {})
    commit = meta.get("commit", "?")
    dirty = " (the checkout had uncommitted changes when it ran)" if commit.endswith("+dirty") else ""
    lines = [
        f"- Recipe: `{recipe.get('name', '?')}` ({_origin(recipe.get('origin', '?'))}); paths below are as the "
        "recipe writes them, relative to its folder",
        f"- Commit: `{commit}`{dirty}; written {meta.get('created', '?')}; device {meta.get('device', '?')}"
        + (f"; {meta['seconds']:.0f} s" if "seconds" in meta else ""),
        f"- SE back-end: `{se.get('name', '?')}` ({se.get('version', '?')})",
        f"- Corpus: {corpus.get('kind', '?')} at `{_root(table.get('corpus'), corpus)}`: "
        f"{corpus.get('utterances', '?')} utterances, "
        f"{corpus.get('speakers', '?')} speakers, classes {corpus.get('classes', '?')}"
        + (f"; set aside {corpus['set_aside']}" if corpus.get("set_aside") else ""),
    ]
    for name, n in meta.get("noise", {}).items():
        role = "training and matched test noise" if name == res.train_noise else "unmatched test noise"
        lines.append(f"- Noise `{name}` ({role}): {n.get('kind')} at `{_root(table.get('noise', {}).get(name), n)}`, "
                     f"{n.get('clips')} clips "
                     f"from {n.get('sources')} source recordings")
    lines.append(
        f"- Encoder {meta.get('encoder')}, width {meta.get('width')}, at most {meta.get('epochs')} epoch(s), "
        f"batch {meta.get('batch_size', PAPER_TRAINING.batch_size)}; "
        f"folds {meta.get('folds')}; seeds {meta.get('seeds')}; SNRs {meta.get('snrs')} dB"
        + (
            f"; one noise assignment (seed {meta['noise_seed']}) shared by all seeds"
            if meta.get("noise_seed") is not None
            else ""
        )
    )
    lines += [f"- {n}" for n in _stand_ins(meta, res)]
    return lines


def _origin(origin: str) -> str:
    """A recipe file by its name only (no machine's absolute path in a report); else as given."""
    path = Path(origin)
    return f"file `{path.name}`" if path.is_absolute() else origin


def _root(table: Any, info: dict[str, Any]) -> str:
    """A corpus root as the recipe wrote it (relative to the recipe), else its folder's name."""
    if isinstance(table, dict) and "root" in table:
        return str(table["root"])
    return Path(str(info.get("root", "?"))).name


def _stand_ins(meta: dict[str, Any], res: Results) -> list[str]:
    out = [f"Note: {n}" for n in meta.get("notes", [])]
    corpus = meta.get("corpus", {}).get("kind")
    if corpus == "synthetic":
        out.append("**Synthetic speech**: the corpus is trnet's built-in source-filter synthesiser, not recorded "
                   "emotional speech; numbers show the pipeline works, not how TRNet does on real speech.")
    elif corpus and corpus != "iemocap":
        out.append(
            f"Stand-in: the corpus is {corpus}, not the paper's IEMOCAP; numbers are not comparable to the paper's."
        )
    for name, n in meta.get("noise", {}).items():
        paper = "esc50" if name == res.train_noise else "musan"
        if n.get("kind") != paper:
            what = (
                "synthetic noise"
                if n.get("kind") == "synthetic" or "synthetic" in str(n.get("root"))
                else n.get("kind")
            )
            out.append(
                f"Stand-in: noise `{name}` ({what}) plays the role of the paper's "
                f"{'ESC-50' if paper == 'esc50' else 'MUSAN'}."
            )
    se = meta.get("se", {}).get("name")
    if se and se != "cmgan":
        out.append(f"Stand-in: SE front-end `{se}` instead of the paper's CMGAN.")
    smaller = []  # and other departures from the paper's training setting
    epochs, batch = PAPER_TRAINING.epochs, PAPER_TRAINING.batch_size
    if meta.get("epochs", epochs) < epochs:
        smaller.append(f"{meta['epochs']} epoch(s) (paper {epochs})")
    if meta.get("batch_size", batch) != batch:
        smaller.append(f"batch {meta['batch_size']} (paper {batch})")
    if meta.get("width", PAPER_WIDTH) != PAPER_WIDTH:
        smaller.append(f"width {meta['width']} (paper {PAPER_WIDTH})")
    if len(meta.get("seeds", range(PAPER_SEEDS))) < PAPER_SEEDS:
        smaller.append(f"{len(meta['seeds'])} seed(s) (paper {PAPER_SEEDS})")
    if len(meta.get("folds", range(PAPER_FOLDS))) < PAPER_FOLDS:
        smaller.append(f"{len(meta['folds'])} fold(s) (paper {PAPER_FOLDS})")
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
        md.append(f"- Not run: {', '.join(display_name(s) for s in missing)} (their rows and figures are left out).")
    n_runs = {s: len(res.runs(s)) for s in res.systems}
    md += ["", "Runs per system (fold × seed): " + ", ".join(f"{display_name(s)} {n}" for s, n in n_runs.items()), ""]

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

    encoder, width = meta.get("encoder", "resnet"), int(meta.get("width", PAPER_WIDTH))
    md += ["## Table 2: complexity", "",
           f"Per 5 s utterance ({T_MAX} × {N_MELS} LMFB), SE excluded, encoder {encoder}, width {width}"
           + (" (no meta.json: defaults)" if not meta else "")
           + ". Training adds the frozen teacher's forward for systems with L_high.", "", table2(encoder, width), ""]

    md += ["## Figure 2: estimated SNR coefficient c", ""]
    drawn = figure2(res, out / "fig2_snr_coefficient.png")
    if drawn:
        md += [
            "Mean c over test utterances and runs (error bars: std over runs) for "
            f"{', '.join(display_name(s) for s in drawn)}.",
            "",
            "![Figure 2](fig2_snr_coefficient.png)",
            "",
        ]
        absent = [display_name(s) for s in TRNET_FAMILY if s not in drawn]
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
        md += [
            f"| {display_name(d['system'])} | {d['condition_centre_distance']:.3f} | {d['class_centre_distance']:.3f} |"
            for d in distances
        ]
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
