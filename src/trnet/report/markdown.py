"""`trnet report RESULTS_DIR`: the paper's tables and figures (§5, docs/design.md §8) from a results
directory written by `trnet reproduce`, as report.md plus PNGs beside it.

    Table 1     per system: clean, and each noise corpus as the mean over its SNRs; UAR and
                WAR, mean ± std over the (fold, seed) runs, best in bold
    per SNR     one table per noise corpus and metric
    Table 2     parameters and MACs (trnet.evaluation.complexity) at the run's encoder/width
    Figure 2    estimated c vs SNR per noise corpus (median, quartiles) with the oracle c, for
                every system with an SNR-aware module; a table of c and its Spearman rho
    selection   validation UAR per system, and the system with c that validation picks
    Figure 3    t-SNE of h for Baseline-c, Baseline-e and TRNet under the training noise at
                20/10/0 dB, with class and condition centres
    confusion   per system, clean and noisy pooled, row-normalised
    tests       the recipe's first [analysis] candidate vs every other system, and each system
                with c vs its [analysis] baseline, over paired (fold, seed) runs (without
                [analysis]: the paper's TRNet and Baseline-e, report.primary.PAPER_COMPARISON)

It reads only RESULTS_DIR (results.json, meta.json, predictions/), so a results directory
can be copied elsewhere and reported there. Systems that were not run are left out with a
note, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trnet import configs
from trnet.configs import display_name
from trnet.features import N_MELS, T_MAX
from trnet.models import PAPER_TRAINING, PAPER_WIDTH
from trnet.report.aliases import study_evidence
from trnet.report.figures import confusion_figure, figure2, figure3, figure_uar
from trnet.report.primary import compared, primary_section
from trnet.report.results import Results, load_results, write_tables
from trnet.report.selection import FLAT_SPREAD, c_table, selection
from trnet.report.shares import shares_section
from trnet.report.tables import paper_table1, significance, snr_table, table1, table2
from trnet.utils import UserError, write_json_atomic, write_text_atomic

PAPER_SEEDS, PAPER_FOLDS = 3, 10  # docs/design.md §3: 10 leave-one-speaker-out folds x 3 seeds


def _setup(res: Results) -> list[str]:
    """The run's provenance and every way it differs from the paper's setting."""
    meta = res.meta
    if not meta:
        return ["- (no meta.json: provenance unknown)"]
    corpus = meta.get("corpus", {})
    recipe = meta.get("recipe", {})
    table = recipe.get("table", {})
    commit = meta.get("commit", "?")
    dirty = " (the checkout had uncommitted changes when it ran)" if commit.endswith("+dirty") else ""
    lines = [
        f"- Recipe: `{recipe.get('name', '?')}` ({_origin(recipe.get('origin', '?'))}); paths below are as the "
        "recipe writes them, relative to its folder",
        f"- Commit: `{commit}`{dirty}; written {meta.get('created', '?')}; device {meta.get('device', '?')}"
        + (f"; {meta['seconds']:.0f} s" if "seconds" in meta else ""),
        f"- SE back-end: `{res.se_name or '?'}` ({res.se_version or '?'})",
        f"- Corpus: {corpus.get('kind', '?')} at `{_root(table.get('corpus'), corpus)}`: "
        f"{corpus.get('utterances', '?')} utterances, "
        f"{corpus.get('speakers', '?')} speakers, classes {corpus.get('classes', '?')}"
        + (f"; set aside {corpus['set_aside']}" if corpus.get("set_aside") else ""),
    ]
    for name, n in meta.get("noise", {}).items():
        role = "training and matched test noise" if name == res.train_noise else "unmatched test noise"
        lines.append(
            f"- Noise `{name}` ({role}): {n.get('kind')} at `{_root(table.get('noise', {}).get(name), n)}`, "
            f"{n.get('clips')} clips "
            f"from {n.get('sources')} source recordings"
        )
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
    for extra in meta.get("more", []):  # Results.extend: runs of the same study from another results directory
        lines.append(
            f"- More runs of this study (another results directory, commit `{extra.get('commit', '?')}`): "
            f"{', '.join(display_name(s) for s in extra.get('systems') or [])}, seeds {extra.get('seeds')}, "
            f"folds {extra.get('folds')}"
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
        out.append(
            "**Synthetic speech**: the corpus is trnet's built-in source-filter synthesiser, not recorded "
            "emotional speech; numbers show the pipeline works, not how TRNet does on real speech."
        )
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
    se = res.se_name
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


def partial_note(meta: dict[str, Any]) -> str | None:
    """A line saying which part of its recipe's declared grid a results directory holds, when it
    holds less (command-line subsets: fewer seeds, folds or systems), so that a partial report
    is labelled as such; None when it holds the whole grid (or no recipe was recorded)."""
    table = meta.get("recipe", {}).get("table", {})
    if not table:
        return None

    def listed(value: Any) -> list[Any] | None:
        return None if value is None or value == "all" else (list(value) if isinstance(value, list) else [value])

    short = []
    for key, ran_key in (("seed", "seeds"), ("folds", "folds"), ("systems", "systems")):
        declared, ran = listed(table.get(key, [1] if key == "seed" else None)), meta.get(ran_key)
        if declared is not None and ran is not None and set(ran) < set(declared):
            short.append(f"{ran_key} {', '.join(map(str, ran))} of the declared {', '.join(map(str, declared))}")
    return "**Partial:** this report covers " + "; ".join(short) + "." if short else None


def make_report(
    results_dir: str | Path,
    out: str | Path | None = None,
    also: dict[str, Path] | None = None,
    more: Sequence[Path] = (),
) -> Path:
    """Write report.md and its PNGs (into `out`, default the results directory). `also` (tag
    -> results directory) adds other runs as systems "<system>@<tag>", e.g. the same systems
    with another SE setting, to the tables, figures and selection; `more` adds other results
    directories' runs of the same study under their own names (Results.extend), e.g. the seeds
    a seed rule adds to some systems."""
    results_dir = Path(results_dir)
    out = Path(out) if out else results_dir
    res = load_results(results_dir)
    if more and out.resolve() == results_dir.resolve():
        raise UserError(f"--more: give --out, a folder other than {results_dir}, for the merged tables")
    for other in more:
        res.extend(load_results(Path(other)))
    if out.resolve() != results_dir.resolve():  # the folder alone recomputes primary.json; never rewrite inputs
        write_tables(res, out)
    for tag, other in (also or {}).items():  # each source read once: its tables written, then merged
        tagged = load_results(other)
        write_tables(tagged, out, f"{tag}-")
        res.merge(tagged, tag)
    meta = res.meta
    md = [f"# TRNet reproduction report: {meta.get('recipe', {}).get('name', results_dir.name)}", ""]
    partial = partial_note(meta)
    md += [partial, ""] if partial else []
    md += ["## Setup", ""]
    md += _setup(res)
    missing = [s for s in configs.names(paper_only=True) if s not in res.systems]
    if missing:
        md.append(f"- Not run: {', '.join(display_name(s) for s in missing)} (their rows and figures are left out).")
    n_runs = {s: len(res.runs(s)) for s in res.systems}
    md += ["", "Runs per system (fold × seed): " + ", ".join(f"{display_name(s)} {n}" for s, n in n_runs.items()), ""]

    md += [
        "## Table 1: UAR and WAR (%)",
        "",
        "Test speaker of each fold; mean ± sample std over the (fold, seed) runs; noise columns are the mean over "
        "the SNRs. Best mean per column in bold.",
        "",
        table1(res),
        "",
    ]
    md += ["Paper (IEMOCAP, CMGAN, 10 folds × 3 seeds), for reference:", "", paper_table1(), ""]
    analysis = meta.get("recipe", {}).get("table", {}).get("analysis")
    if analysis:
        lines, numbers = primary_section(res, analysis, list(also or {}))
        md += ["## The declared comparison", "", *lines, ""]
        write_json_atomic(out / "primary.json", numbers)
    md += ["## Per-SNR results", ""]
    if res.noises:
        figure_uar(res, out / "uar_vs_snr.png")
        md += ["![UAR vs SNR](uar_vs_snr.png)", ""]
    for noise in res.noises:
        role = " (training noise: matched)" if noise == res.train_noise else " (unmatched)"
        for metric in ("uar", "war"):
            md += [f"### {noise}{role}: {metric.upper()} (%)", "", snr_table(res, noise, metric), ""]

    encoder, width = meta.get("encoder", "resnet"), int(meta.get("width", PAPER_WIDTH))
    md += [
        "## Table 2: complexity",
        "",
        f"Per 5 s utterance ({T_MAX} × {N_MELS} LMFB), SE excluded, encoder {encoder}, width {width}"
        + (" (no meta.json: defaults)" if not meta else "")
        + ". Training adds the frozen teacher's forward for systems with L_high.",
        "",
        table2(encoder, width),
        "",
    ]

    md += ["## Figure 2: does the estimated c track the SNR?", ""]
    drawn = figure2(res, out / "fig2_snr_coefficient.png")
    if drawn:
        md += [
            "Estimated c per test utterance, pooled over runs: median (line) and interquartile range (shaded), "
            f"for {', '.join(display_name(s) for s in drawn)}; dashed: the oracle c, the per-utterance "
            "least-squares c that minimises ||c X + (1 - c) X_e - X_s||^2 over the valid frames (what L_low "
            "asks for; dotted: the same for the X_e of another SE setting).",
            "",
            "![Figure 2](fig2_snr_coefficient.png)",
            "",
            f"Mean c (over runs of each run's mean over test utterances) clean and at {min(res.snrs)} dB, whether "
            f'it falls monotonically with the SNR ("flat": it moves less than {FLAT_SPREAD} in all), and the '
            "Spearman rho between c and SNR over each run's test "
            "utterances × conditions (clean ranked highest), mean ± std over runs:",
            "",
            c_table(res),
            "",
        ]
        absent = [
            info.display for s, info in configs.systems().items() if info.paper and info.snr_aware and s not in drawn
        ]
        if absent:
            md += [f"Not run: {', '.join(absent)}.", ""]
    else:
        md += ["Skipped: no system with an SNR-aware module was run.", ""]

    table, chosen = selection(res)
    md += [
        "## Model selection: validation UAR",
        "",
        "The validation speaker's UAR under the training conditions (the number early stopping and model "
        "selection use; the test speaker never enters a choice), with the test UAR beside it for information.",
        "",
        table,
        "",
    ]
    if chosen:
        md += [
            f"Among TRNet and its variants (the ablations are not candidates), validation picks "
            f"**{display_name(chosen)}**.",
            "",
        ]

    md += ["## Figure 3: t-SNE of utterance representations", ""]
    note, distances = figure3(res, out / "fig3_tsne.png")
    md += [note, ""]
    if distances:
        md += [
            "![Figure 3](fig3_tsne.png)",
            "",
            "Centre distances in h itself (standardised), relative to the spread of utterances around their "
            "(class, SNR) centre: the paper expects TRNet to have the smallest SNR-centre distance and the "
            "largest class-centre distance.",
            "",
            "| System | SNR-centre distance | Class-centre distance |",
            "|---|---|---|",
        ]
        md += [
            f"| {display_name(d['system'])} | {d['condition_centre_distance']:.3f} | {d['class_centre_distance']:.3f} |"
            for d in distances
        ]
        md.append("")

    md += ["## Confusion matrices", ""]
    drawn = confusion_figure(res, out / "confusion.png")
    md += (
        [
            "Row-normalised (% of each true class), pooled over runs; noisy pools every noise corpus and SNR.",
            "",
            "![confusion](confusion.png)",
            "",
        ]
        if drawn
        else ["Skipped: no predictions files.", ""]
    )

    md += ["## Predicted-class shares: do the boundaries transfer to the test speaker?", ""]
    lines, _ = shares_section(res)
    md += [*lines, ""]

    focus, baseline = compared(analysis)
    md += [f"## Significance: {display_name(focus)} against every other system", ""]
    if focus in res.systems:
        text, tests = significance(res, [(focus, other) for other in res.systems if other != focus])
    else:
        text, tests = f"{display_name(focus)} was not run: no significance tests.", []
    md += [text, ""]
    against = [(s, baseline) for s in res.c_systems if s != focus] if baseline in res.systems else []
    if against:
        md += [f"## Significance: each system with an SNR-aware module against {display_name(baseline)}", ""]
        text, more = significance(res, against)
        md += [text, ""]
        tests += more
    write_text_atomic(out / "report.md", "\n".join(md))
    write_text_atomic(out / "significance.json", json.dumps(tests, indent=2) + "\n")
    write_json_atomic(out / "selection.json", study_evidence(res, results_dir.name))  # for `trnet select`
    return out / "report.md"
