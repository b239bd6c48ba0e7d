"""Every committed study's primary.json recomputes from the tables committed beside it
(report.primary.recompute): the headline of a study can be checked without its run folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_primary import with_analysis
from tests.test_report import FOLDS, SEEDS, fabricate
from trnet.report.markdown import make_report
from trnet.report.primary import recompute

DOCS = Path(__file__).resolve().parents[1] / "docs"
STUDIES = sorted(p.parent for p in DOCS.rglob("primary.json"))  # seed-rule subfolders too
# written by the MDE rule of design §10 (the conservative headline); an older primary.json kept
# the observed-SE projection under these keys, so only they may differ from a recomputation
RULE_KEYS = {"mde_with_seeds", "mde_observed", "mde_components", "mde_conservative", "tags"}
TOLERANCE = 1e-3  # the CSVs carry 6 decimals of UAR (1e-4 UAR points)


def differences(stored: Any, new: Any, where: str = "") -> list[str]:
    """Where two primary.json documents differ (numbers beyond TOLERANCE, keys, values)."""
    if isinstance(stored, dict) and isinstance(new, dict):
        out = [f"{where}: key {k!r} in only one" for k in sorted(set(stored) ^ set(new), key=str)]
        return out + [d for k in stored if k in new for d in differences(stored[k], new[k], f"{where}/{k}")]
    if isinstance(stored, list) and isinstance(new, list) and len(stored) == len(new):
        return [d for i, (a, b) in enumerate(zip(stored, new, strict=True)) for d in differences(a, b, f"{where}[{i}]")]
    numbers = (int, float)
    if isinstance(stored, numbers) and isinstance(new, numbers) and not isinstance(stored, bool):
        return [] if abs(stored - new) <= TOLERANCE else [f"{where}: {stored} != {new}"]
    return [] if stored == new else [f"{where}: {stored!r} != {new!r}"]


def test_there_are_committed_studies_to_check() -> None:
    assert any(s.name == "nemo-study" for s in STUDIES), STUDIES


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: str(p.relative_to(DOCS)))
def test_a_committed_primary_json_recomputes_from_its_csvs(study: Path) -> None:
    stored, new = recompute(study)
    if "mde_conservative" not in stored:  # written before the conservative rule: all else must agree
        stored = {k: v for k, v in stored.items() if k not in RULE_KEYS}
        new = {k: v for k, v in new.items() if k not in RULE_KEYS}
    assert stored["primary"] is not None and stored["chosen"]
    assert differences(stored, new) == []


@pytest.mark.slow
def test_a_report_folder_carries_what_recomputes_it_and_an_edit_is_caught(tmp_path: Path) -> None:
    results = with_analysis(fabricate(tmp_path / "results"))
    docs = tmp_path / "docs"
    make_report(results, docs)
    assert (docs / "results.csv").is_file() and (docs / "runs.csv").is_file()
    stored, new = recompute(docs)
    assert "mde_conservative" in stored and differences(stored, new) == []
    edited = json.loads((docs / "primary.json").read_text())
    edited["primary"]["mean"] += 0.01
    edited["chosen"] = "trnet-wo-low"
    (docs / "primary.json").write_text(json.dumps(edited))
    _, again = recompute(docs)
    found = differences(edited, again)
    assert any(d.startswith("/primary/mean") for d in found) and any(d.startswith("/chosen") for d in found)


@pytest.mark.slow
def test_more_runs_of_the_same_study_merge_into_one_report(tmp_path: Path) -> None:
    """`trnet report A --more B --out R`: the runs of B (here seed 2) join A's (seed 1) under
    their own names, and R's declared comparison and tables equal a report of both seeds at once."""
    full = with_analysis(fabricate(tmp_path / "full"))
    first = with_analysis(fabricate(tmp_path / "a", seeds=(1,)))
    more = with_analysis(fabricate(tmp_path / "b", seeds=(2,)))
    make_report(full, tmp_path / "r-full")
    make_report(first, tmp_path / "r", more=[more])
    merged = json.loads((tmp_path / "r" / "primary.json").read_text())
    assert merged == json.loads((tmp_path / "r-full" / "primary.json").read_text())
    assert merged["primary"]["runs"] == len(FOLDS) * len(SEEDS)
    stored, recomputed = recompute(tmp_path / "r")  # the folder's merged tables alone recompute it
    assert differences(stored, recomputed) == []
    assert "More runs of this study" in (tmp_path / "r" / "report.md").read_text()
