"""`trnet demo --quick`: the built-in recipe runs end to end through `trnet reproduce`'s code,
offline, and ends by saying where the report is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trnet.cli import main
from trnet.experiments.demo import demo_table
from trnet.experiments.recipe import recipe_from_dict


@pytest.mark.slow
def test_demo_quick(tmp_path, capsys) -> None:
    assert main(["demo", "--quick", "--out", str(tmp_path), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    report = tmp_path / "results" / "report.md"
    assert out.rstrip().endswith(f"the report is {report}")
    models = next(line for line in out.splitlines() if line.startswith("the trained models"))
    run = Path(models.split("--model ")[1])  # where its models are, and one that predict takes
    assert (run / "done.json").is_file() and run.parent.name == "trnet"
    text = report.read_text()
    assert "demo-quick" in text and "Synthetic speech" in text
    meta = json.loads((tmp_path / "results" / "meta.json").read_text())
    assert meta["systems"] == ["baseline-c", "baseline-e", "trnet"] and meta["corpus"]["kind"] == "synthetic"
    for png in ("uar_vs_snr.png", "fig2_snr_coefficient.png", "fig3_tsne.png", "confusion.png"):
        assert (tmp_path / "results" / png).is_file()


def test_demo_recipes_are_valid(tmp_path) -> None:
    """Every variant is a valid recipe (the same format and checks as a TOML file)."""
    for quick in (False, True):
        for emodb in (None, Path("/data/emodb")):
            r = recipe_from_dict(demo_table(emodb, quick, "spectral"), base=tmp_path, origin="test")
            assert r.work == tmp_path and r.systems == ("baseline-c", "baseline-e", "trnet")
            assert r.corpus.kind == ("synthetic" if emodb is None else "emodb")
            assert r.noise["synth"].kind == ("noise" if emodb is None else "synthetic")
