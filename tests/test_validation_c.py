"""The validation-only c check (`trnet.experiments.validation_c`, bench/c_check.py): it reads
exactly the validation speaker's rows, under every condition of the store, and computes rho
and the mean c per condition as declared. Tiny on purpose: a 4-speaker tone store (test_store's
corpus), identity SE, TRNet-std-snr (and its teacher, Baseline-c) at width 4 for 2 epochs."""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.test_training import run
from tests.test_training import store as store  # noqa: F401 - the module fixture
from trnet.experiments import validation_c
from trnet.experiments.validation_c import COLUMNS, RunCheck, Skipped, check_run, markdown, write_check
from trnet.models.diagnostics import c_snr_spearman
from trnet.protocol.folds import split
from trnet.report.selection import FLAT_SPREAD
from trnet.store import ConditionStore, condition_snr
from trnet.utils import UserError

BENCH = Path(__file__).resolve().parents[1] / "bench" / "c_check.py"


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:  # noqa: F811 - the imported fixture
    """A runs folder with TRNet-std-snr and its teacher Baseline-c (a system without c), fold 0,
    2 epochs."""
    runs = tmp_path_factory.mktemp("runs")
    run(store, runs, system="trnet-std-snr", epochs=2)
    return runs


@pytest.fixture
def spy(monkeypatch) -> list[tuple]:
    """Every (rows, condition, predictions) the check asks predict_condition for."""
    calls: list[tuple] = []
    real = validation_c.predict_condition

    def wrapped(model, store, labels, rows, cond, **kw):  # noqa: F811 - the store argument
        p = real(model, store, labels, rows, cond, **kw)
        calls.append((np.array(rows), cond, p))
        return p

    monkeypatch.setattr(validation_c, "predict_condition", wrapped)
    return calls


def test_only_the_validation_speaker_is_read(store, trained, spy) -> None:  # noqa: F811
    opened = ConditionStore(store)
    result = check_run(trained / "trnet-std-snr" / "fold0-seed1")
    assert isinstance(result, RunCheck)
    sp = split(opened.rows, 0)
    assert [cond for _, cond, _ in spy] == opened.conditions  # every condition, once
    for rows, _, _ in spy:
        np.testing.assert_array_equal(np.sort(rows), sp.val)  # exactly the validation speaker's rows
        assert {opened.rows[i]["speaker"] for i in rows} == {sp.fold.val_speaker}
        assert not np.isin(rows, sp.test).any()
    assert result.val_speaker == sp.fold.val_speaker != sp.fold.test_speaker


def test_rho_mean_c_and_monotone_as_declared(store, trained, spy) -> None:  # noqa: F811
    result = check_run(trained / "trnet-std-snr" / "fold0-seed1")
    opened = ConditionStore(store)
    assert [(c["noise"], c["snr"]) for c in result.conditions] == [("clean", None), ("esc50", 10), ("esc50", 0)]
    n_val = len(split(opened.rows, 0).val)
    for c, (_, _, p) in zip(result.conditions, spy, strict=True):
        assert c["n"] == n_val and c["mean_c"] == pytest.approx(float(np.mean(p.c)))
    # rho: c vs SNR over the validation utterances x conditions, clean ranked highest
    c = np.concatenate([p.c for _, _, p in spy])
    snr = np.concatenate([np.full(len(p.c), condition_snr(cond)) for _, cond, p in spy])
    expected = c_snr_spearman(c, snr)
    rho = result.diagnostics["rho"]
    assert (rho is None and np.isnan(expected)) or (-1 <= rho <= 1 and rho == pytest.approx(expected))
    assert result.diagnostics.keys() == {"rho", "rho_esc50"}
    means = [m["mean_c"] for m in result.conditions]
    flat = max(means) - min(means) < FLAT_SPREAD
    assert result.monotone == {"esc50": "flat" if flat else "yes" if means[0] >= means[1] >= means[2] else "no"}


def test_baselines_are_skipped_and_nan_is_an_error(trained, monkeypatch) -> None:
    skipped = check_run(trained / "baseline-c" / "fold0-seed1")
    assert isinstance(skipped, Skipped) and "no c" in skipped.reason
    real = validation_c.predict_condition

    def poisoned(*a, **k):
        p = real(*a, **k)
        return replace(p, c=np.where(np.arange(len(p.c)) == 0, np.nan, p.c))

    monkeypatch.setattr(validation_c, "predict_condition", poisoned)
    with pytest.raises(UserError, match="not finite"):
        check_run(trained / "trnet-std-snr" / "fold0-seed1")


def test_tables_and_files(trained, tmp_path) -> None:
    result = check_run(trained / "trnet-std-snr" / "fold0-seed1")
    second = replace(result, fold=1, diagnostics={"rho": 0.5, "rho_esc50": 0.25})  # a second run of the system
    skipped = [Skipped(trained / "baseline-c" / "fold0-seed1", "baseline-c", "no SNR-aware module: no c")]
    text = write_check(tmp_path / "out", [result, second], skipped)
    assert text == (tmp_path / "out" / "c_check.md").read_text() == markdown([result, second], skipped)
    tables = [[line for line in block.splitlines() if line.startswith("|")] for block in text.split("\n\n")]
    per_system, per_condition = (t for t in tables if t)
    assert len(per_system) == 2 + 1 and per_system[2].startswith("| TRNet-std-snr | 2 |")
    assert len(per_condition) == 2 + len(result.conditions)  # header, rule, one row per condition
    assert [line.split("|")[1].strip() for line in per_condition[2:]] == ["clean", "esc50", "esc50"]
    assert "skipped baseline-c" in text
    with (tmp_path / "out" / "c_conditions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 2 * len(result.conditions)
    with (tmp_path / "out" / "c_runs.csv").open(newline="") as f:
        runs = list(csv.DictReader(f))
    assert [r["rho"] for r in runs][1] == "0.5" and runs[0]["monotone_esc50"] in ("yes", "no", "flat")
    for r in runs:
        assert r["rho"] == "" or -1 <= float(r["rho"]) <= 1


def test_bench_script(trained, tmp_path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("c_check", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([str(trained / "*" / "fold0-seed1"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| TRNet-std-snr | 1 |" in out and "skipped baseline-c" in out
    assert (tmp_path / "out" / "c_conditions.csv").is_file()
    assert bench.main([str(tmp_path / "none*"), "--out", str(tmp_path / "x")]) == 2
    assert "no run directory matches" in capsys.readouterr().err
    assert bench.main([str(trained / "baseline-c" / "fold0-seed1"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_validation_rows_of_a_holdout_and_a_changed_store(store, tmp_path) -> None:  # noqa: F811
    """A named split validates on its listed speakers; a store whose fold names another
    validation speaker than the run recorded is refused."""
    from trnet.experiments.validation_c import validation_rows

    opened = ConditionStore(store)
    holdout = {"fold": "Holdout", "val_speakers": ["spk1", "spk3"], "train_speakers": ["spk0", "spk2"]}
    rows, name = validation_rows({**holdout, "test_speaker": None}, opened, tmp_path)
    assert name == "spk1+spk3" and {opened.rows[i]["speaker"] for i in rows} == {"spk1", "spk3"}
    assert len(rows) == 16  # 8 utterances per speaker
    fold0 = split(opened.rows, 0).fold
    assert validation_rows({"fold": 0, "val_speaker": fold0.val_speaker}, opened, tmp_path)[1] == fold0.val_speaker
    with pytest.raises(UserError, match="validates on"):
        validation_rows({"fold": 0, "val_speaker": fold0.test_speaker}, opened, tmp_path)
