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
from trnet.pretrained import NO_C, c_words, says_no_c
from trnet.utils import write_text_atomic

BEGIN = "<!-- trnet bundle: measured results begin -->"
END = "<!-- trnet bundle: measured results end -->"


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


def _ci(stat: dict[str, Any] | None, scale: float = 100, signed: bool = False) -> str:
    """'58.3 [55.1, 61.5]' (mean and its 95 % interval over seeds); the mean alone for one seed."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    f = "+.1f" if signed else ".1f"
    ci = stat.get("ci")
    return f"{scale * stat['mean']:{f}}" + (f" [{scale * ci[0]:{f}}, {scale * ci[1]:{f}}]" if ci else "")


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
        f"training corpus. {seeds} seed(s) per system and direction"
        + (
            ": per condition mean ± sd over seeds; the 0–20 dB column, mean [95 % t interval over seeds]."
            if seeds > 1
            else "."
        ),
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
                f"| {r['train']} → {r['test']} | {r['system']} | {cells} | **{_ci(r[f'noisy_{metric}_0_20'])}** |"
            )
        out.append("")
    return [*out, *differences(summary), *c_table(summary, snrs), "", *targets(summary)]


def differences(summary: dict[str, Any]) -> list[str]:
    """System - baseline, paired by seed, UAR and WAR; and where WAR disagrees with UAR."""
    rows = summary.get("loco_differences") or []
    if summary["system"] == summary["baseline"]:
        return [f"The shipped system is {summary['baseline']} itself: validation chose the baseline.", ""]
    if not rows:
        return []
    out = [
        f"**{summary['system']} − {summary['baseline']}** (points, paired by seed: mean [95 % t interval])",
        "",
        "| train → test | seeds | noisy UAR 0–20 dB | noisy WAR 0–20 dB | clean UAR | clean WAR |",
        "|---|---|---|---|---|---|",
    ]
    disagree = []
    for r in rows:
        cells = " | ".join(
            _ci(r[k], signed=True) for k in ("noisy_uar_0_20", "noisy_war_0_20", "clean_uar", "clean_war")
        )
        out.append(f"| {r['train']} → {r['test']} | {len(r['seeds'])} | {cells} |")
        for where, (ku, kw) in (("noisy", ("noisy_uar_0_20", "noisy_war_0_20")), ("clean", ("clean_uar", "clean_war"))):
            u, w = r[ku], r[kw]
            if u["mean"] is not None and w["mean"] is not None and (u["mean"] > 0) != (w["mean"] > 0):
                disagree.append(
                    f"{r['train']} → {r['test']} {where}: UAR {100 * u['mean']:+.1f}, WAR {100 * w['mean']:+.1f}"
                )
    out += [
        "",
        "WAR disagrees with UAR in sign: " + "; ".join(disagree) + "."
        if disagree
        else "WAR and UAR agree in sign in every direction, clean and noisy.",
        "",
    ]
    return out


def c_table(summary: dict[str, Any], snrs: list[int | None]) -> list[str]:
    noise = summary["test_noise"]
    with_c = [r for r in summary["loco"] if any(c["mean_c"]["mean"] is not None for c in r["conditions"])]
    if not with_c:  # `trnet predict` says the same (pretrained.c_note)
        return [f"**c:** {NO_C}."] if says_no_c(summary) else []
    out = [
        "**c on the held-out corpus** (mean c per condition, then on input without speech: digital silence, "
        f"white noise at −26 dBFS, each {noise} clip alone; ρ: Spearman between c and the SNR over utterances × "
        "conditions, clean ranked highest). " + c_words(summary.get("c_training")),
        "",
        f"| train → test | system | {' | '.join(_snr(s) for s in snrs)} | silence | white noise | {noise} alone | "
        "ρ | monotone | c(clean) − c(0 dB) |",
        "|---|---|" + "---|" * (len(snrs) + 6),
    ]
    for r in with_c:
        cells = " | ".join(_num(c["mean_c"]) for c in r["conditions"])
        ns = r.get("nonspeech") or {}
        silent = " | ".join(_num(ns.get(k)) for k in ("silence", "white", "noise"))
        mono = "yes" if all(r["monotone"]) else "no" if not any(r["monotone"]) else "some seeds"
        mono = "flat" if r.get("flat") and all(r["flat"]) else mono
        out.append(
            f"| {r['train']} → {r['test']} | {r['system']} | {cells} | {silent} | {_num(r['rho'])} | {mono} | "
            f"{_num(r['clean_minus_0db'])} |"
        )
    return out


def targets(summary: dict[str, Any]) -> list[str]:
    """The recipe's [loco_targets], each stated as met or not on the mean over seeds."""
    by = {(r["train"], r["test"], r["system"]): r for r in summary["loco"]}
    lines = []
    for t in summary.get("loco_targets") or []:
        r = by.get((t["train"], t["test"], summary["system"]))
        if r is None or r["noisy_uar_0_20"]["mean"] is None:
            lines.append(f"- {t['train']} → {t['test']}: not run")
            continue
        got = r["noisy_uar_0_20"]
        lines.append(
            f"- {t['train']} → {t['test']}: {summary['system']} noisy UAR {_ci(got)} ({got['n']} seed(s)), target "
            f"≥ {100 * t['noisy_uar_0_20']:.1f}: **{'met' if got['mean'] >= t['noisy_uar_0_20'] else 'NOT met'}** "
            "(on the mean over seeds)"
        )
    return ["**Targets** (the recipe's `loco_targets`: noisy UAR, mean over seeds)", "", *lines] if lines else []


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
