"""The declared comparison of a study (report/primary.py): the recipe's [analysis] table is
validated before any work, and the report computes exactly the declared numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from tests.test_report import FOLDS, NOISES, SEEDS, SNRS, fabricate, true_uar
from trnet.experiments.recipe import RecipeError, recipe_from_dict
from trnet.report.markdown import make_report
from trnet.report.primary import check_analysis, compared
from trnet.utils import UserError

pytestmark = pytest.mark.usefixtures("one_openmp_thread")
ANALYSIS = {"baseline": "baseline-e", "candidates": ["trnet-wo-low", "trnet"], "mde_target": 2.5}


def with_analysis(root: Path, analysis: dict = ANALYSIS) -> Path:
    meta = json.loads((root / "meta.json").read_text())
    meta["recipe"]["table"] = {"analysis": analysis}
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def noisy(system: str, fold: int, seed: int) -> float:
    return 100 * float(np.mean([true_uar(system, n, s, fold, seed) for n in NOISES for s in SNRS]))


@pytest.mark.slow
def test_report_computes_the_declared_comparison(tmp_path: Path) -> None:
    results = with_analysis(fabricate(tmp_path))
    make_report(results)
    numbers = json.loads((results / "primary.json").read_text())
    assert numbers["chosen"] == "trnet"  # the higher fabricated validation UAR of the two candidates
    speaker_means = np.array(
        [np.mean([noisy("trnet", f, s) - noisy("baseline-e", f, s) for s in SEEDS]) for f in FOLDS]
    )
    p = numbers["primary"]
    assert p["mean"] == pytest.approx(speaker_means.mean())
    lo, hi = stats.t.interval(0.95, len(FOLDS) - 1, loc=speaker_means.mean(), scale=stats.sem(speaker_means))
    assert p["ci"] == pytest.approx([lo, hi])
    assert p["speakers"] == len(FOLDS) and p["runs"] == len(FOLDS) * len(SEEDS)
    text = (results / "report.md").read_text()
    assert "## The declared comparison" in text and "TRNet (chosen)" in text
    assert "Minimum detectable effect at 80 % power" in text and "target ≤ 2.5" in text
    # the headline is the larger of the two MDEs, the other shown beside it (design §10)
    assert numbers["mde_conservative"] == pytest.approx(max(numbers["mde_observed"], numbers["mde_components"]))
    assert f"**{numbers['mde_conservative']:.2f}** UAR points (the larger of the observed-SE MDE" in text
    assert set(numbers["per_condition"]) == {"clean", *(f"{n}@{s}" for n in NOISES for s in SNRS)}


@pytest.mark.slow
def test_a_report_without_a_declaration_has_no_such_section(tmp_path: Path) -> None:
    results = fabricate(tmp_path)
    make_report(results)
    assert "declared comparison" not in (results / "report.md").read_text()
    assert not (results / "primary.json").exists()


@pytest.mark.parametrize(
    "analysis, message",
    [
        ({"baseline": "baseline-x", "candidates": ["trnet"]}, "baseline 'baseline-x'"),
        ({"baseline": "baseline-e", "candidates": "trnet"}, "candidates: expected a non-empty list"),
        ({"baseline": "baseline-e", "candidates": ["trnet", "trnet"]}, "distinct"),
        ({"baseline": "baseline-e", "candidates": ["baseline-e"]}, "the baseline itself"),
        ({"baseline": "baseline-e", "candidates": ["trnet"], "mde_target": -1}, "mde_target"),
        ({"baseline": "baseline-e", "candidates": ["trnet"], "metric": "war"}, "unknown key"),
        ("trnet", "expected a table"),
    ],
)
def test_bad_declarations_are_refused_before_any_work(tmp_path: Path, analysis, message: str) -> None:
    table = {
        "name": "x",
        "work": "w",
        "train_noise": "n",
        "systems": ["baseline-e", "trnet"],
        "corpus": {"kind": "emodb", "root": "."},
        "noise": {"n": {"kind": "noise", "root": "."}},
        "analysis": analysis,
    }
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict(table, base=tmp_path, origin="test")
    with pytest.raises(ValueError):
        check_analysis(analysis, ["baseline-e", "trnet"])


@pytest.mark.slow
def test_with_one_seed_the_report_does_not_pretend_to_split_the_variance(tmp_path: Path) -> None:
    """One seed per speaker: the MDE is still computed from the speakers' differences, but the
    report says that speaker and seed variation cannot be separated, and makes no claim about
    what more seeds would give."""
    results = with_analysis(fabricate(tmp_path, seeds=(1,)))
    make_report(results)
    numbers = json.loads((results / "primary.json").read_text())
    text = (results / "report.md").read_text()
    assert numbers["primary"]["runs"] == len(FOLDS) and "mde_with_seeds" not in numbers
    assert "cannot be separated" in text and "nan" not in text and "no number of seeds" not in text


def test_the_significance_sections_compare_what_the_recipe_declares(tmp_path: Path) -> None:
    """The report's pairwise tests take their names from [analysis] (the first candidate against
    every other system, each system with c against the baseline); without [analysis], the paper's
    TRNet and Baseline-e."""
    declared = {"baseline": "baseline-n", "candidates": ["trnet-wo-low", "trnet"]}
    systems = ("baseline-n", "baseline-e", "trnet", "trnet-wo-low")
    results = with_analysis(fabricate(tmp_path, systems=systems, folds=(0, 1), seeds=(1,)), declared)
    make_report(results)
    text = (results / "report.md").read_text()
    tests = json.loads((results / "significance.json").read_text())
    assert "## Significance: TRNet w/o L_low against every other system" in text
    assert "## Significance: each system with an SNR-aware module against Baseline-n" in text
    assert "TRNet against every other" not in text and "against Baseline-e" not in text
    assert {t["system"] for t in tests if t["other"] == "baseline-n"} == {"trnet-wo-low", "trnet"}
    assert {t["system"] for t in tests if t["other"] != "baseline-n"} == {"trnet-wo-low"}
    assert compared(None) == ("trnet", "baseline-e")


class _Runs:
    """Just what validation_choice reads: each system's runs with their validation UAR."""

    def __init__(self, val: dict[str, dict[tuple[int, int], float]]) -> None:
        self.val = val

    def run_info(self, system: str) -> dict[tuple[int, int], dict]:
        return {fs: {"val_uar": v} for fs, v in self.val.get(system, {}).items()}


def test_seeds_added_to_the_chosen_candidate_alone_do_not_change_the_choice() -> None:
    from trnet.report.primary import validation_choice

    common = {(f, s): 0.50 for f in range(3) for s in (1, 2, 3)}
    val = {"a": dict(common), "b": {fs: v + 0.01 for fs, v in common.items()}}
    assert validation_choice(_Runs(val), ["a", "b"])[0] == "b"
    # the seed rule then adds seeds 4 and 5 to b alone, and they happen to validate lower
    val["b"].update({(f, s): 0.30 for f in range(3) for s in (4, 5)})
    chosen, means = validation_choice(_Runs(val), ["a", "b"])
    assert chosen == "b" and means["b"] == pytest.approx(51.0) and means["a"] == pytest.approx(50.0)
    # a candidate with no validated run is absent, not a zero
    assert validation_choice(_Runs({"a": common, "b": {}}), ["a", "b"]) == ("a", {"a": pytest.approx(50.0)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: meta.update(width=8), "width differ"),
        (lambda meta: meta["recipe"].update(name="other"), "recipe name differ"),
        (None, "a run counts once"),  # the same runs twice
    ],
)
def test_more_refuses_what_is_not_more_of_the_same_study(tmp_path: Path, change, message: str) -> None:
    first = fabricate(tmp_path / "a", systems=("baseline-e", "trnet"), folds=(0, 1), seeds=(1,))
    more = fabricate(tmp_path / "b", systems=("baseline-e", "trnet"), folds=(0, 1), seeds=(1 if change is None else 2,))
    if change is not None:
        meta = json.loads((more / "meta.json").read_text())
        change(meta)
        (more / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=message):
        make_report(first, tmp_path / "r", more=[more])
    with pytest.raises(UserError, match="give --out"):
        make_report(first, more=[more])
