"""Stage 8 of `trnet bundle`: the model card's measured sections, as a markdown fragment
(WORK/card/results.md) written from results/summary.json and results/measure.json, so that
no number in docs/model-card.md is typed by hand. `trnet bundle ... --card docs/model-card.md`
puts the fragment between the card's markers (BEGIN / END below), leaving the rest as is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trnet.bundle.recipe import BundleRecipe, BundleRecipeError
from trnet.bundle.results import read_summary
from trnet.utils import write_text_atomic

BEGIN = "<!-- trnet bundle: measured results begin -->"
END = "<!-- trnet bundle: measured results end -->"
RHO_TARGET = 0.5


def _pct(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{100 * stat['mean']:.1f}" + (f" ± {100 * stat['std']:.1f}" if stat["n"] > 1 else "")


def _num(stat: dict[str, Any] | None, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.{digits}f}" + (f" ± {stat['std']:.{digits}f}" if stat["n"] > 1 else "")


def _snr(s: int | None) -> str:
    return "clean" if s is None else f"{s} dB".replace("-", "−")


def loco_tables(summary: dict[str, Any]) -> list[str]:
    loco = summary["loco"]
    if not loco:
        return ["No leave-one-corpus-out evaluation: the recipe has a single corpus."]
    snrs = [c["snr"] for c in loco[0]["conditions"]]
    noise = summary["test_noise"]
    seeds = len(loco[0]["seeds"])
    out = [
        f"Test: EVERY utterance of the held-out corpus, clean and in {noise} noise (never heard in training; "
        f"these runs trained on {' + '.join(summary['loco_train_noise'])} only). Validation: one speaker of the "
        f"training corpus. {seeds} seed(s){', mean ± std' if seeds > 1 else ''}.",
        "",
    ]
    for metric, title in (("uar", "UAR (%)"), ("war", "WAR (%)")):
        head = " | ".join(_snr(s) for s in snrs)
        out += [
            f"**{title}**",
            "",
            f"| train → test | system | {head} | {noise} 0–20 dB |",
            "|---|---|" + "---|" * (len(snrs) + 1),
        ]
        for r in loco:
            cells = " | ".join(_pct(c[metric]) for c in r["conditions"])
            out.append(
                f"| {r['train']} → {r['test']} | {r['system']} | {cells} | **{_pct(r[f'noisy_{metric}_0_20'])}** |"
            )
        out.append("")
    out += [
        "**c against SNR on the held-out corpus** (mean c per condition; ρ: Spearman between c and the SNR "
        "over utterances × conditions, clean ranked highest)",
        "",
        f"| train → test | system | {' | '.join(_snr(s) for s in snrs)} | ρ | monotone | c(clean) − c(0 dB) |",
        "|---|---|" + "---|" * (len(snrs) + 3),
    ]
    for r in loco:
        if all(c["mean_c"]["mean"] is None for c in r["conditions"]):
            continue
        cells = " | ".join(_num(c["mean_c"]) for c in r["conditions"])
        mono = "yes" if all(r["monotone"]) else "no" if not any(r["monotone"]) else "some seeds"
        mono = "flat" if r.get("flat") and all(r["flat"]) else mono
        out.append(
            f"| {r['train']} → {r['test']} | {r['system']} | {cells} | {_num(r['rho'])} | {mono} | "
            f"{_num(r['clean_minus_0db'])} |"
        )
    return [*out, "", *targets(summary)]


def targets(summary: dict[str, Any]) -> list[str]:
    """The issue's two measured targets, stated as met or not, with the numbers."""
    by = {(r["train"], r["test"], r["system"]): r for r in summary["loco"]}
    lines = ["**Targets**", ""]
    for train, test in dict.fromkeys((r["train"], r["test"]) for r in summary["loco"]):
        sys_, base = by.get((train, test, summary["system"])), by.get((train, test, summary["baseline"]))
        if sys_ and base:
            a, b = sys_["noisy_uar_0_20"]["mean"], base["noisy_uar_0_20"]["mean"]
            lines.append(
                f"- {train} → {test}: {summary['system']} noisy UAR {100 * a:.1f} vs {summary['baseline']} "
                f"{100 * b:.1f}: {'met' if a >= b else 'NOT met'} (≥ required)"
            )
        if sys_ and sys_["rho"]["mean"] is not None:
            ok = all(sys_["monotone"]) and sys_["rho"]["mean"] >= RHO_TARGET
            lines.append(
                f"- {train} → {test}: c monotone in SNR and ρ ≥ {RHO_TARGET}: "
                f"{'met' if ok else 'NOT met'} (ρ {_num(sys_['rho'])}, monotone: {sys_['monotone']})"
            )
    return lines


def shipped(summary: dict[str, Any], recipe: BundleRecipe) -> list[str]:
    f = summary["final"]
    data = " + ".join(
        f"{recipe.corpora[n].provenance.get('title', n)} ({v['utterances']} utterances, {v['speakers']} speakers)"
        for n, v in summary["corpora"].items()
    )
    teacher = f" + {f['teacher_seconds']:.0f} s for its Baseline-c teacher" if f.get("teacher_seconds") else ""
    return [
        "| | |",
        "|---|---|",
        f"| system | {summary['system']}, {summary['encoder']} encoder, width {summary['width']} |",
        f"| training data | {data}, 4 classes |",
        f"| validation speakers (epoch selection only) | {', '.join(f['val_speakers'] or [])} |",
        f"| training noise | {' + '.join(summary['train_noise'])} at {', '.join(map(str, summary['train_snrs']))} dB, "
        f"and clean, drawn uniformly per example |",
        f"| training | {summary['epochs']} epochs max, batch {summary['batch_size']}, patience {summary['patience']}; "
        f"best epoch {f['best_epoch']} of {f['epochs_run']} |",
        f"| validation UAR (pooled over the training conditions) | {100 * f['val_uar']:.1f} % |",
        f"| training time (sum of epoch wall times) | {f['train_seconds']:.0f} s{teacher} |",
    ]


def cost(summary: dict[str, Any], measured: dict[str, Any] | None) -> list[str]:
    out = []
    if measured:
        out += [
            f"Inference on one CPU thread ({measured['cpu']}), SE ({measured.get('se')}) + features + model; "
            "a fresh process per input, after a 2 s warm-up:",
            "",
            "| input | RTF (wall) | RTF (CPU) | peak memory (MiB) |",
            "|---|---|---|---|",
        ]
        out += [
            f"| {r['seconds']:.0f} s | {r['rtf_wall']:.4f} | {r['rtf_cpu']:.4f} | {r['peak_rss_mib']:.0f} |"
            for r in measured["inputs"]
        ]
        cli = measured["predict_cli"]
        out += [
            "",
            f"`trnet predict` on a 5 s clip, whole process (start-up, model load, SE, output): "
            f"{cli['wall_s']:.1f} s wall, peak memory {cli['peak_rss_mib']:.0f} MiB.",
            "",
        ]
    times = summary.get("times", {})
    if times:
        out += [
            "Wall time of the last `trnet bundle` invocation per stage (a resumed invocation counts only what "
            "it did): " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()) + "."
        ]
    return out


def fragment(recipe: BundleRecipe, measured: dict[str, Any] | None) -> str:
    summary = read_summary(recipe)
    note = (
        ["", "> **PLACEHOLDER**: built by a small test run, not the released model.", ""]
        if summary.get("placeholder")
        else []
    )
    lines = [
        BEGIN,
        f"<!-- written by `trnet bundle {Path(recipe.origin).name}`; do not edit by hand -->",
        *note,
        "### The shipped model",
        "",
        *shipped(summary, recipe),
        "",
        "### Leave-one-corpus-out",
        "",
        *loco_tables(summary),
        "",
        "### Cost",
        "",
        *cost(summary, measured),
        END,
    ]
    return "\n".join(lines) + "\n"


def write_fragment(recipe: BundleRecipe, measured: dict[str, Any] | None) -> Path:
    path = recipe.work / "card" / "results.md"
    write_text_atomic(path, fragment(recipe, measured))
    return path


def insert(card: Path, text: str) -> None:
    """Replace the card's section between BEGIN and END with `text` (which carries both)."""
    try:
        doc = Path(card).read_text()
    except OSError as err:
        raise BundleRecipeError(f"--card {card}: cannot read it ({err.strerror})") from None
    start, stop = doc.find(BEGIN), doc.find(END)
    if start < 0 or stop < start:
        raise BundleRecipeError(f"--card {card}: no section between '{BEGIN}' and '{END}' to fill")
    write_text_atomic(card, doc[:start] + text.rstrip("\n") + doc[stop + len(END) :])
