"""Model complexity (paper Table 2): the relations the paper states between the systems."""

from __future__ import annotations

import argparse
import json

import pytest

from trnet.commands.complexity import add_arguments, run
from trnet.evaluation.complexity import complexity_table


@pytest.fixture(scope="module", params=["resnet", "cnn6"])
def table(request) -> dict[str, dict]:
    return {r["system"]: r for r in complexity_table(request.param, 32)}


def test_trnet_inference_costs_baseline_e_plus_under_one_percent(table):
    e, t = table["baseline-e"], table["trnet"]
    assert e["infer_params"] < t["infer_params"] < 1.01 * e["infer_params"]
    assert e["infer_macs"] <= t["infer_macs"] < 1.01 * e["infer_macs"]


def test_trnet_training_includes_the_teacher(table):
    e, t = table["baseline-e"], table["trnet"]
    assert t["train_params"] == pytest.approx(2 * e["train_params"], rel=0.01)
    assert t["train_macs"] == pytest.approx(2 * e["train_macs"], rel=0.01)
    assert table["trnet-wo-low"]["train_params"] == t["train_params"]
    wo_high = table["trnet-wo-high"]  # no teacher: training costs what inference does
    assert (wo_high["train_params"], wo_high["train_macs"]) == (wo_high["infer_params"], wo_high["infer_macs"])


def test_baseline_ne_doubles_the_macs_of_baseline_e(table):
    e, ne = table["baseline-e"], table["baseline-ne"]
    assert ne["infer_macs"] == pytest.approx(2 * e["infer_macs"], rel=0.01)
    assert ne["train_macs"] == ne["infer_macs"]
    assert 0.02e6 < ne["infer_params"] - e["infer_params"] < 0.04e6  # the fusion layer, ~0.03 M


def test_cnn6_lands_on_the_papers_table2():
    e = {r["system"]: r for r in complexity_table("cnn6", 32)}["baseline-e"]
    assert e["infer_params"] == pytest.approx(4.60e6, rel=0.01)
    assert e["infer_macs"] == pytest.approx(6.32e9, rel=0.01)


def test_cli_prints_table_and_json(capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--width", "8"])) == 0
    text = capsys.readouterr().out
    assert "trnet-wo-high" in text and "infer MACs (G)" in text
    assert run(parser.parse_args(["--json", "--encoder", "cnn6", "--width", "8"])) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["system"] for r in rows][0] == "baseline-c" and len(rows) == 7
