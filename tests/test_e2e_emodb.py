"""End to end on real speech: EmoDB manifest -> condition store -> training -> held-out
speaker. A small Baseline-c must beat chance (25 % UAR on 4 classes) on a speaker it never
saw, with the model chosen on the validation speaker only."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import shared_path
from trnet.batches import label_indices
from trnet.corpora import emodb, write_manifest
from trnet.enhance import Spec
from trnet.evaluation.evaluate import predict_condition
from trnet.protocol.folds import split
from trnet.runs import load_run
from trnet.store import BuildSpec, ConditionStore, build
from trnet.training.trainer import spec_from_names, train


@pytest.mark.slow
def test_tiny_baseline_learns_emodb_above_chance_on_held_out_speaker(tmp_path: Path):
    result = emodb.load(shared_path("emodb"))
    assert len(result.rows) == 339
    write_manifest(tmp_path / "emodb.csv", result.rows, "utterances")
    spec = BuildSpec(corpus=tmp_path / "emodb.csv", noise={}, se=Spec("identity"), seed=1)
    store = ConditionStore(build(spec, tmp_path / "store", quiet=True, workers=2))
    run = spec_from_names(
        "baseline-c",
        0,
        1,
        store.root,
        tmp_path / "runs",
        system_overrides={"width": 8},
        training_overrides={"epochs": 6, "patience": 100},
    )
    model, config = load_run(train(run, quiet=True))
    fold = split(store.rows, 0)
    test_rows = fold.test
    assert config["test_speaker"] == fold.fold.test_speaker == "08"
    pred = predict_condition(model, store, label_indices(store), test_rows, "clean")
    assert len(pred.y_true) == len(test_rows) == 42
    assert pred.uar() > 0.40, f"held-out UAR {pred.uar():.3f} is not clearly above chance (0.25)"
