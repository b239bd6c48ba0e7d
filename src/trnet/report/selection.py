"""The report's section on the SNR-aware module (docs/design.md §6.2): does the estimated c track the
SNR, and which system would validation choose? Every number comes from the results directory
(results rows, meta.json's runs, predictions files), like the rest of the report.

    c_table      per system with c: mean c clean and at the lowest SNR per noise corpus, their
                 difference, whether the mean falls monotonically with SNR ("flat" when it moves
                 less than FLAT_SPREAD in all), Spearman rho
    selection    validation UAR per system (the only number a choice may use), test UAR beside it,
                 and the system the rule of `aliases.py` picks
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trnet.configs import display_name
from trnet.report.aliases import choose, pool
from trnet.report.results import Results
from trnet.report.tables import mean_std


def _mean(values: dict[Any, float]) -> float:
    return float(np.mean(list(values.values()))) if values else float("nan")


def c_profile(res: Results, system: str, noise: str) -> list[float]:
    """Mean c (over runs of each run's mean) at clean, then each SNR high to low."""
    return [
        _mean(res.scores(system, "mean_c", "clean")),
        *(_mean(res.scores(system, "mean_c", noise, s)) for s in res.snrs),
    ]


FLAT_SPREAD = 0.02  # a mean c that moves less than this from clean to the lowest SNR does not track it


def monotone(profile: list[float]) -> bool:
    """Whether c never rises as the SNR falls (clean first)."""
    return bool(np.all(np.diff(profile) <= 0))


def trend(profile: list[float]) -> str:
    """The "monotone" cell: "flat" when max - min of the mean c is below FLAT_SPREAD (a c of
    0.365 -> 0.361 is not an SNR estimate), else "yes" if it never rises as the SNR falls, "no"."""
    if np.all(np.isfinite(profile)) and np.ptp(profile) < FLAT_SPREAD:
        return "flat"
    return "yes" if monotone(profile) else "no"


def rho_cell(res: Results, system: str, key: str) -> str:
    """Mean ± std over runs of a per-run Spearman rho (meta.json's runs), two decimals."""
    values = [r[key] for r in res.run_info(system).values() if r.get(key) is not None]
    if not values:
        return "–"
    return f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def c_table(res: Results) -> str:
    """Does c track the SNR? One row per system with an SNR-aware module."""
    low = min(res.snrs) if res.snrs else None
    header = ["System", "rho (all)"]
    for noise in res.noises:
        header += [f"{noise}: c clean", f"c {low} dB", "difference", "monotone", f"rho {noise}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in res.c_systems:
        cells = [display_name(system), rho_cell(res, system, "rho")]
        for noise in res.noises:
            p = c_profile(res, system, noise)
            cells += [
                f"{p[0]:.3f}",
                f"{p[-1]:.3f}",
                f"{p[0] - p[-1]:+.3f}",
                trend(p),
                rho_cell(res, system, f"rho_{noise}"),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def selection(res: Results) -> tuple[str, str | None]:
    """Validation UAR per system (mean ± std over runs; what a choice may use) with the test
    UAR beside it for information, and the candidate that validation picks (`aliases.RULE`)."""
    header = ["System", "Validation UAR", "Test: clean"] + [f"Test: {n} (SNR mean)" for n in res.noises]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for system in res.systems:
        values = [r["val_uar"] for r in res.run_info(system).values() if r.get("val_uar") is not None]
        text = mean_std(values)[1]
        tests = [mean_std(list(res.scores(system, "uar", s).values()))[1] for s in ["clean", *res.noises]]
        lines.append("| " + " | ".join([display_name(system), text, *tests]) + " |")
    runs = [
        {"system": s, "fold": f, "seed": k, "test_speaker": r.get("test_speaker"), "val_uar": r.get("val_uar")}
        for s in res.systems
        for (f, k), r in res.run_info(s).items()
    ]
    return "\n".join(lines), choose(pool([("", runs)]))
