"""The system registry (trnet.configs): adding a system is one TOML file, and every list of
systems (CLI help, recipe validation, the report's tables, the selection) sees it; the
recommended name is an alias that the committed selection file resolves."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_reproduce import MINIMAL_RECIPE
from trnet import configs
from trnet.cli import main
from trnet.experiments.recipe import RecipeError, recipe_from_dict
from trnet.models import load_config, load_training_config
from trnet.report.aliases import select
from trnet.report.results import load_results, write_results
from trnet.report.selection import selection
from trnet.report.tables import table1

ROOT = Path(__file__).resolve().parents[1]
NEW = """# A system that exists only in a test: TRNet with another L_low weight.
input = "trnet"
train_conditions = "noisy"
alpha = 0.25
beta = 0.5
bridge = true
teacher = true

[about]
display = "TRNet-quarter"
family = "variant"
order = 85
candidate = true
"""


@pytest.fixture
def extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on TRNET_CONFIG_PATH holding one new system, trnet-quarter."""
    folder = tmp_path / "systems"
    folder.mkdir()
    (folder / "trnet-quarter.toml").write_text(NEW)
    monkeypatch.setenv(configs.ENV, str(folder))
    return folder


def fake_results(root: Path, val: dict[str, float]) -> Path:
    """A results directory with one run per system: clean UAR 0.5, validation UAR as given."""
    conditions = (("clean", None), ("esc50", 0))
    rows = [
        {
            "system": s,
            "fold": 0,
            "seed": 1,
            "test_speaker": "s0",
            "noise": n,
            "snr": snr,
            "uar": 0.5,
            "war": 0.5,
            "mean_c": 0.5,
            "c_std": 0.1,
            "n": 4,
        }
        for s in val
        for n, snr in conditions
    ]
    runs = [{"system": s, "fold": 0, "seed": 1, "test_speaker": "s0", "val_uar": v} for s, v in val.items()]
    write_results(root, rows, {"train_noise": "esc50", "runs": runs})
    return root


def test_a_new_toml_file_is_a_new_system_everywhere(extra: Path, tmp_path: Path, capsys) -> None:
    assert "trnet-quarter" in configs.names() and "trnet-quarter" not in configs.names(paper_only=True)
    assert load_config("trnet-quarter").alpha == 0.25
    # the CLI's help and its "known systems" (a fresh process: what a user sees)
    helptext = subprocess.run(
        [sys.executable, "-m", "trnet.cli", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "trnet-quarter" in " ".join(helptext.split())
    # recipe validation, in table order (order = 85: after trnet-std)
    base = dict(MINIMAL_RECIPE)
    recipe = recipe_from_dict({**base, "systems": ["trnet-quarter", "trnet-std-snr", "trnet-std"]}, tmp_path, "t")
    assert recipe.systems == ("trnet-std", "trnet-quarter", "trnet-std-snr")
    # the report's tables and the selection
    results = fake_results(tmp_path / "results", {"trnet": 0.80, "trnet-quarter": 0.90, "trnet-wo-low": 0.95})
    res = load_results(results)
    assert res.systems == ["trnet", "trnet-wo-low", "trnet-quarter"]
    assert "| TRNet-quarter |" in table1(res)
    assert selection(res)[1] == "trnet-quarter"  # the ablation's higher number is no candidate
    assert select([str(results / "runs.csv")], "best")["system"] == "trnet-quarter"


def test_unknown_and_duplicate_systems_are_user_errors(extra: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(RecipeError, match="known: .*trnet-quarter"):
        recipe_from_dict({**MINIMAL_RECIPE, "systems": ["trnett"]}, tmp_path, "t")
    assert main(["train", "--config", "trnett", "--fold", "0", "--store", str(tmp_path), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    alias = f"trnet-robust (= {configs.resolve('trnet-robust')})"
    assert err.count("\n") == 1 and "known systems: " in err and alias in err
    (extra / "trnet.toml").write_text(NEW)
    with pytest.raises(configs.ConfigError, match="defined twice"):
        configs.names()


def test_the_teacher_is_the_one_system_the_registry_says_teaches(extra: Path) -> None:
    """The frozen teacher is named by its TOML, not by code: a system on the search path that also
    says `teaches = true` is refused, and the teacher is what training order and teacher_config use."""
    from trnet.models import teacher_config, training_order

    assert configs.teacher() == "baseline-c"
    assert training_order(["trnet-quarter"]) == ["baseline-c", "trnet-quarter"]
    assert teacher_config(replace(load_config("trnet-quarter"), width=8)).name == "baseline-c"
    (extra / "baseline-x.toml").write_text(configs.find("baseline-c").read_text())
    with pytest.raises(configs.ConfigError, match=r"exactly one .*teaches.*\['baseline-c', 'baseline-x'\]"):
        configs.teacher()


def test_the_alias_resolves_through_the_committed_selection_file() -> None:
    """trnet-robust is no config of its own: the selection file names the system, and that file
    is what `trnet select` writes from the studies' committed runs (EmoDB at two SE settings,
    nEMO)."""
    assert not (ROOT / "src" / "trnet" / "configs" / "trnet-robust.toml").exists()
    chosen = json.loads(configs.SELECTION.read_text())["aliases"]["trnet-robust"]["system"]
    assert configs.resolve("trnet-robust") == chosen == "trnet-std-snr"
    assert load_config("trnet-robust") == load_config(chosen)
    assert load_training_config("trnet-robust") == load_training_config(chosen)
    study = ROOT / "docs" / "emodb-refinement"
    nemo = ROOT / "docs" / "nemo-study" / "runs.csv"
    entry = select([str(study / "runs.csv"), f"atten20={study / 'runs-atten20.csv'}", str(nemo)], "trnet-robust")
    committed = json.loads(configs.SELECTION.read_text())["aliases"]["trnet-robust"]
    strip = [{k: v for k, v in s.items() if k != "source"} for s in committed["studies"]]
    assert {**entry, "studies": strip} == {**committed, "studies": strip}  # same numbers, same files
    # each study's report names its own validation pick (EmoDB alone: TRNet-std; nEMO: TRNet-std-snr)
    for report, runs in ((study, [str(study / "runs.csv")]), (nemo.parent, [str(nemo)])):
        own = select(runs, "trnet-robust")["system"]
        assert f"validation picks **{configs.display_name(own)}**" in (report / "report.md").read_text()
    # an SE setting tried on EmoDB only is listed, but does not compete with candidates run on both corpora
    assert committed["validation_uar"]["trnet-std@atten20"]["comparable"] is False


def test_the_selection_file_drives_the_recommended_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "selection.json"
    other.write_text(json.dumps({"format": 1, "aliases": {"trnet-robust": {"system": "trnet-std-snr"}}}))
    monkeypatch.setattr(configs, "SELECTION", other)
    assert configs.resolve("trnet-robust") == "trnet-std-snr"
    assert load_config("trnet-robust") == replace(load_config("trnet-std-snr"))
    assert (
        main(
            [
                "select",
                str(ROOT / "docs" / "emodb-refinement" / "runs.csv"),
                "--alias",
                "trnet-robust",
                "--out",
                str(other),
            ]
        )
        == 0
    )
    assert configs.resolve("trnet-robust") == "trnet-std"
    assert main(["select", str(tmp_path / "none.csv"), "--alias", "x"]) == 2
    assert main(["select", str(ROOT / "docs" / "emodb-refinement" / "runs.csv"), "--alias", "trnet"]) == 2


@pytest.mark.parametrize(
    ("among", "chosen", "rule"),
    [("candidates", "trnet", "the candidate"), ("all", "baseline-e", "Baseline-e and the ablations included")],
)
def test_select_among_all_lets_baseline_e_win_but_never_a_clean_trained_system(
    tmp_path: Path, capsys, among: str, chosen: str, rule: str
) -> None:
    """A recommendation for noise must beat Baseline-e: `--among all` lets every system trained
    in noise compete. Baseline-c's higher number is on clean validation speech: it never enters."""
    results = fake_results(tmp_path / "r", {"baseline-c": 0.99, "baseline-e": 0.92, "trnet": 0.80, "trnet-std": 0.70})
    out = tmp_path / "selection.json"
    assert main(["select", str(results / "runs.csv"), "--alias", "pick", "--among", among, "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["aliases"]["pick"]
    assert entry["system"] == chosen and rule in entry["rule"]
    assert "baseline-c" not in entry["validation_uar"]
    assert ("baseline-e" in entry["validation_uar"]) == (among == "all")
    assert entry.get("among", "candidates") == among
    assert f"pick = {chosen}" in capsys.readouterr().out


def test_select_seeds_keeps_systems_comparable_when_a_seed_rule_added_seeds_to_some(tmp_path: Path) -> None:
    """A seed rule adds seeds to the baseline and the chosen candidate only; over every seed the
    other systems miss cells and cannot be chosen, so `--seeds` names the seeds all of them ran."""
    runs = tmp_path / "runs.csv"
    rows = ["system,fold,seed,test_speaker,val_uar"]
    rows += [f"trnet,{f},1,s{f},0.90" for f in (0, 1)]
    rows += [
        f"{s},{f},{k},s{f},{v}"
        for s, v in (("baseline-e", 0.60), ("trnet-std-snr", 0.70))
        for f in (0, 1)
        for k in (1, 2)
    ]
    runs.write_text("\n".join(rows) + "\n")
    out = tmp_path / "selection.json"
    assert main(["select", str(runs), "--alias", "pick", "--among", "all", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["aliases"]["pick"]
    assert entry["system"] == "trnet-std-snr" and not entry["validation_uar"]["trnet"]["comparable"]
    assert main(["select", str(runs), "--alias", "pick", "--among", "all", "--seeds", "1", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())["aliases"]["pick"]
    assert entry["system"] == "trnet" and entry["seeds"] == [1] and "Only the runs of seeds 1 count." in entry["rule"]
    assert entry["validation_uar"]["baseline-e"]["runs"] == 2 and entry["studies"][0]["runs"] == 6
    assert main(["select", str(runs), "--alias", "pick", "--seeds", "7", "--out", str(out)]) == 2
    assert main(["select", str(runs), "--alias", "pick", "--seeds", "one", "--out", str(out)]) == 2
