"""A study's pre-declared comparison (docs/design.md §10): the recipe's `[analysis]` table names
it before anything runs, and the report computes exactly that, from the results alone.

    [analysis]
    baseline = "baseline-e"                              # what the chosen system is compared with
    candidates = ["trnet", "trnet-std", "trnet-std-snr"] # validation UAR picks one of these
    mde_target = 2.5                                     # the design's goal for the MDE (UAR points)

The chosen candidate is the one with the highest mean validation UAR over its runs (ties: the
earlier in `candidates`); the test speaker never enters the choice. The outcome is noisy UAR:
the mean of a run's test UAR over every noise corpus and SNR. Each (fold, seed) gives a paired
difference, and speakers are the unit of replication (`trnet.report.power`): estimate, 95 %
interval, minimum detectable effect at 80 % power, and what more seeds could buy.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trnet.configs import display_name
from trnet.report.power import ClusteredDifference, clustered_difference
from trnet.report.results import Results, from_csv

ANALYSIS_KEYS = ("baseline", "candidates", "mde_target")
# the paper's comparison (§5), for a report whose recipe declares no [analysis]: TRNet against
# every other system, and each system with an SNR-aware module against Baseline-e
PAPER_COMPARISON = {"baseline": "baseline-e", "candidates": ["trnet"]}


def compared(analysis: Mapping[str, Any] | None) -> tuple[str, str]:
    """(focus, baseline) of the report's significance sections: the first of the declared
    candidates and the declared baseline, or the paper's where nothing is declared."""
    declared = analysis or PAPER_COMPARISON
    return declared["candidates"][0], declared["baseline"]


def check_analysis(table: Any, systems: Sequence[str]) -> dict[str, Any]:
    """The `[analysis]` table of a recipe, validated against its systems (ValueError naming the
    key otherwise)."""
    if not isinstance(table, Mapping):
        raise ValueError(f"[analysis]: expected a table with {', '.join(ANALYSIS_KEYS)}, got {table!r}")
    unknown = sorted(set(table) - set(ANALYSIS_KEYS))
    if unknown:
        raise ValueError(f"[analysis]: unknown key(s) {unknown}; it has {', '.join(ANALYSIS_KEYS)}")
    baseline, candidates = table.get("baseline"), table.get("candidates")
    if not isinstance(baseline, str) or baseline not in systems:
        raise ValueError(
            f"[analysis] baseline {baseline!r}: expected one of the recipe's systems ({', '.join(systems)})"
        )
    if (
        not isinstance(candidates, list)
        or not candidates
        or not all(isinstance(c, str) for c in candidates)
        or len(set(candidates)) != len(candidates)
    ):
        raise ValueError(
            f"[analysis] candidates: expected a non-empty list of distinct system names, got {candidates!r}"
        )
    missing = [c for c in candidates if c not in systems or c == baseline]
    if missing:
        raise ValueError(f"[analysis] candidates {missing}: not among the recipe's systems, or the baseline itself")
    target = table.get("mde_target")
    if target is not None and (isinstance(target, bool) or not isinstance(target, int | float) or not target > 0):
        raise ValueError(f"[analysis] mde_target: expected a positive number of UAR points, got {target!r}")
    return {"baseline": baseline, "candidates": list(candidates), "mde_target": target}


def noisy_uar(res: Results, system: str) -> dict[tuple[int, int], float]:
    """(fold, seed) -> mean test UAR (%) over every noise corpus and SNR of the study."""
    out = {}
    for fs in res.runs(system):
        values = [res.value((system, *fs), "uar", noise, snr) for noise in res.noises for snr in res.snrs]
        if values and not np.isnan(values).any():
            out[fs] = 100 * float(np.mean(values))
    return out


def condition_uar(noise: str, snr: int | None) -> Callable[[Results, str], dict[tuple[int, int], float]]:
    """The outcome UAR (%) under one condition (noise "clean", snr None) instead of the mean."""

    def value(res: Results, system: str) -> dict[tuple[int, int], float]:
        return {fs: 100 * v for fs, v in res.scores(system, "uar", noise, snr).items()}

    return value


def test_speakers(res: Results, system: str) -> dict[tuple[int, int], str]:
    return {fs: str(next(iter(res.by_run[(system, *fs)].values()))["test_speaker"]) for fs in res.runs(system)}


def paired(
    res: Results, a: str, b: str, outcome: Callable[[Results, str], dict[tuple[int, int], float]] = noisy_uar
) -> ClusteredDifference | None:
    """a - b over the (fold, seed) runs both have, grouped by test speaker (None: < 2 speakers)."""
    va, vb, spk = outcome(res, a), outcome(res, b), test_speakers(res, a)
    groups: dict[str, list[float]] = defaultdict(list)
    for fs in sorted(set(va) & set(vb)):
        groups[spk[fs]].append(va[fs] - vb[fs])
    return clustered_difference(groups) if len(groups) >= 2 else None


def validation_choice(res: Results, candidates: Sequence[str]) -> tuple[str | None, dict[str, float]]:
    """The candidate with the highest mean validation UAR (%), and every candidate's mean, over the
    (fold, seed) cells that every candidate present has: a seed rule that adds seeds to the chosen
    candidate alone (design §10) must not change which candidate it was chosen as."""
    info = {
        c: {fs: r["val_uar"] for fs, r in res.run_info(c).items() if r.get("val_uar") is not None} for c in candidates
    }
    present = [c for c in candidates if info[c]]
    shared = set.intersection(*(set(info[c]) for c in present)) if present else set()
    means = {}
    for c in present:
        values = [info[c][fs] for fs in sorted(shared)]
        if values:
            means[c] = 100 * float(np.mean(values))
    chosen = max(means, key=lambda c: (means[c], -list(candidates).index(c))) if means else None
    return chosen, means


def _row(label: str, d: ClusteredDifference | None) -> str:
    if d is None:
        return f"| {label} | – | – | – | – | – | – | – |"
    return (
        f"| {label} | {d.mean:+.2f} | [{d.ci[0]:+.2f}, {d.ci[1]:+.2f}] | "
        f"[{d.bootstrap_ci[0]:+.2f}, {d.bootstrap_ci[1]:+.2f}] | {d.p_value:.3f} | {d.mde:.2f} | "
        f"{d.wins}/{d.n_speakers} | {d.n_runs} |"
    )


HEADER = [
    "| Comparison | Δ UAR (points) | 95 % CI (t, speakers) | 95 % CI (bootstrap) | p | MDE (80 %) | "
    "speakers ahead | runs |",
    "|---|---|---|---|---|---|---|---|",
]


def as_dict(d: ClusteredDifference | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "mean": d.mean,
        "ci": list(d.ci),
        "bootstrap_ci": list(d.bootstrap_ci),
        "p": d.p_value,
        "mde": d.mde,
        "se": d.se,
        "sigma_u": d.sigma_u,
        "sigma_u_clipped": d.sigma_u_clipped,
        "sigma_e": None if np.isnan(d.sigma_e) else d.sigma_e,
        "speakers": d.n_speakers,
        "runs": d.n_runs,
        "speakers_ahead": d.wins,
    }


def _verdict(name: str, base: str, d: ClusteredDifference) -> str:
    lo, hi = d.ci
    if lo > 0:
        return (
            f"**{name} beats {base}** on noisy UAR by {d.mean:+.2f} points (95 % CI {lo:+.2f} to {hi:+.2f}; "
            f"ahead for {d.wins} of {d.n_speakers} test speakers)."
        )
    if hi < 0:
        return f"**{name} is worse than {base}** on noisy UAR by {d.mean:+.2f} points (95 % CI {lo:+.2f} to {hi:+.2f})."
    return (
        f"**No significant difference** between {name} and {base} on noisy UAR: {d.mean:+.2f} points, 95 % CI "
        f"{lo:+.2f} to {hi:+.2f} (p = {d.p_value:.2f}). Not significant is not equal: a true difference anywhere "
        f"in that interval fits the data, and the design detects {d.mde:.2f} points with 80 % power."
    )


def primary_section(res: Results, analysis: Mapping[str, Any], tags: Sequence[str] = ()) -> tuple[list[str], dict]:
    """The report's section on the declared comparison (markdown lines) and its numbers (for
    primary.json). `tags`: merged results ("<system>@<tag>") compared the same way."""
    base, candidates, target = analysis["baseline"], list(analysis["candidates"]), analysis.get("mde_target")
    chosen, val = validation_choice(res, [c for c in candidates if c in res.systems])
    md = [
        "Declared in the recipe before any run: the candidate with the highest mean validation UAR among "
        f"{', '.join(display_name(c) for c in candidates)} against {display_name(base)}, on noisy UAR (the mean "
        "test UAR over every noise corpus and SNR), paired over (fold, seed); speakers are the unit of "
        "replication (t interval on the speaker means, bootstrap over speakers beside it; docs/design.md §10).",
        "",
        "| Candidate | Mean validation UAR (%) |",
        "|---|---|",
    ]
    md += [f"| {display_name(c)}{' (chosen)' if c == chosen else ''} | {v:.2f} |" for c, v in val.items()]
    out: dict[str, Any] = {
        "baseline": base,
        "candidates": candidates,
        "validation_uar": val,
        "chosen": chosen,
        "mde_target": target,
        "tags": list(tags),
    }
    if chosen is None or base not in res.systems:
        return [*md, "", "Not computed: the baseline or every candidate is missing from the results."], out
    d = paired(res, chosen, base)
    out["primary"] = as_dict(d)
    md += ["", *HEADER, _row(f"**{display_name(chosen)} − {display_name(base)}** (noisy UAR, primary)", d)]
    others = [s for s in res.systems if s not in (base, chosen) and "@" not in s]
    secondary = {
        f"{chosen} - {base} (clean)": paired(res, chosen, base, condition_uar("clean", None)),
        **{f"{s} - {base}": paired(res, s, base) for s in others},
    }
    for label, dd in secondary.items():
        a, b = label.split(" - ")
        md.append(
            _row(f"{display_name(a)} − {display_name(b.split(' (')[0])}{' (clean UAR)' if 'clean' in b else ''}", dd)
        )
    out["secondary"] = {k: as_dict(v) for k, v in secondary.items()}
    if d is not None:
        seeds = max(1, round(d.seeds))
        headline = d.mde_conservative  # design §10: the larger of the two MDEs leads, the other beside it
        other = (
            ""
            if np.isnan(d.sigma_e)
            else f" (the larger of the observed-SE MDE {d.mde:.2f} and the variance components' "
            f"{d.mde_components():.2f})"
        )
        mde = f"Minimum detectable effect at 80 % power: **{headline:.2f}** UAR points{other}" + (
            f"; target ≤ {target}: {'met' if headline <= target else 'not met'}" if target else ""
        )
        if np.isnan(d.sigma_e):  # one seed per speaker: speaker and seed variance are not separable
            design = (
                f"Design: {d.n_speakers} test speakers × 1 seed; SE {d.se:.2f} points; sd of the speakers' "
                f"differences {d.sigma_u:.2f}, which with one seed holds the seed-to-seed variation too (σ_u and "
                f"σ_e cannot be separated). {mde}; more seeds would lower it by an amount one seed cannot tell."
            )
        else:
            more = ", ".join(
                f"{k} seeds would give {d.mde_conservative_with(k):.2f}" for k in (seeds + 1, seeds + 2, 10)
            )
            floor = (
                f"; no number of seeds can bring it below {d.mde_conservative_with(10**9):.2f} (the σ_u term)."
                if not d.sigma_u_clipped
                else (
                    f" if σ_u is truly about 0. σ_u's estimate was negative and is reported as 0: the speakers' "
                    f"mean differences spread less (sd {d.se * np.sqrt(d.n_speakers):.2f}) than seeds of sd "
                    f"σ_e predict (σ_e / √{seeds} = {d.sigma_e / np.sqrt(seeds):.2f}), a chance outcome with "
                    f"{d.n_speakers} speakers, so the floor σ_u sets is unknown."
                )
            )
            design = (
                f"Design: {d.n_speakers} test speakers × {seeds} seed(s); SE {d.se:.2f} points; between-speaker sd "
                f"of the difference σ_u = {d.sigma_u:.2f}, within-speaker (seed) sd σ_e = {d.sigma_e:.2f}. {mde}; "
                f"with the same speakers, {more}{floor}"
            )
            out["mde_with_seeds"] = {k: d.mde_conservative_with(k) for k in (seeds, seeds + 1, seeds + 2, 10)}
            out["mde_observed"], out["mde_components"] = d.mde, d.mde_components()
        out["mde_conservative"] = headline
        md += ["", _verdict(display_name(chosen), display_name(base), d), "", design]
    md += [
        "",
        f"Per condition, {display_name(chosen)} − {display_name(base)} (UAR points, 95 % t interval over speakers):",
        "",
        "| Noise | " + " | ".join(["clean", *(f"{s} dB" for s in res.snrs)]) + " |",
        "|---|" + "---|" * (1 + len(res.snrs)),
    ]
    per: dict[str, Any] = {}
    for noise in res.noises:
        cells = []
        for snr in [None, *res.snrs]:
            cd = paired(res, chosen, base, condition_uar("clean" if snr is None else noise, snr))
            per[f"{noise}@{snr}" if snr is not None else "clean"] = as_dict(cd)
            cells.append("–" if cd is None else f"{cd.mean:+.1f} [{cd.ci[0]:+.1f}, {cd.ci[1]:+.1f}]")
        md.append(f"| {noise} | " + " | ".join(cells) + " |")
    out["per_condition"] = per
    for tag in tags:
        tc, tval = validation_choice(res, [f"{c}@{tag}" for c in candidates if f"{c}@{tag}" in res.systems])
        tb = f"{base}@{tag}"
        if tc is None or tb not in res.systems:
            continue
        dt = paired(res, tc, tb)
        gain = _gain_difference(res, (tc, tb), (chosen, base))
        out[f"at_{tag}"] = {
            "chosen": tc,
            "validation_uar": tval,
            "difference": as_dict(dt),
            "gain_minus_default_gain": as_dict(gain),
        }
        md += [
            "",
            f"At the SE setting `{tag}` (secondary, declared with its hypothesis in that recipe): validation "
            f"picks {display_name(tc)}.",
            "",
            *HEADER,
            _row(f"{display_name(tc)} − {display_name(tb)} (noisy UAR)", dt),
            _row(f"gain at {tag} − gain at the default (difference of differences)", gain),
        ]
    return md, out


def _gain_difference(res: Results, at: tuple[str, str], default: tuple[str, str]) -> ClusteredDifference | None:
    """(a1 - b1) - (a0 - b0) over the (fold, seed) runs all four share, grouped by speaker."""
    vals = [noisy_uar(res, s) for s in (*at, *default)]
    spk = test_speakers(res, default[0])
    groups: dict[str, list[float]] = defaultdict(list)
    for fs in sorted(set.intersection(*(set(v) for v in vals))):
        groups[spk[fs]].append((vals[0][fs] - vals[1][fs]) - (vals[2][fs] - vals[3][fs]))
    return clustered_difference(groups) if len(groups) >= 2 else None


def recompute(folder: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(stored, recomputed): a report folder's primary.json and the same numbers computed again
    from its committed tables (results.csv, runs.csv, and <tag>-results.csv, <tag>-runs.csv for
    each merged SE setting) with the analysis primary.json records, so that anyone can check
    the headline without the run folders (a test does, for every committed study)."""
    folder = Path(folder)
    stored = json.loads((folder / "primary.json").read_text())
    analysis = {k: stored.get(k) for k in ANALYSIS_KEYS}
    tags = stored.get("tags", [k.removeprefix("at_") for k in stored if k.startswith("at_")])
    res = from_csv(folder)
    for tag in tags:
        res.merge(from_csv(folder, f"{tag}-"), tag)
    return stored, json.loads(json.dumps(primary_section(res, analysis, tags)[1]))  # JSON's keys and types
