"""Training loop: determinism, exact resume after a crash or kill -9, teacher handling,
validation-only model selection, and learning on real EmoDB speech (SPEC §7)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import kill_when
from tests.test_store import make_corpus
from trnet.enhance import Spec
from trnet.models import TrainingConfig
from trnet.protocol.folds import split
from trnet.runs import RunError, check_config, load_run
from trnet.store import BuildSpec, ConditionStore, build
from trnet.training import trainer
from trnet.training.trainer import spec_from_names, train

TINY = {"width": 4}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    corpus, noise = make_corpus(root, n_speakers=4, per_speaker=8)
    spec = BuildSpec(corpus=corpus, noise={"esc50": noise}, se=Spec("identity"), seed=1, snrs=(10, 0))
    return build(spec, root / "store", quiet=True)


def run(store: Path, runs: Path, system: str = "baseline-n", epochs: int = 3, seed: int = 1, **kw) -> Path:
    spec = spec_from_names(
        system,
        0,
        seed,
        store,
        runs,
        system_overrides=TINY,
        training_overrides={"epochs": epochs, "batch_size": 8, **kw},
    )
    return train(spec, quiet=True)


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "best.safetensors"))


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_other_weights(store, tmp_path):
    a = weights(run(store, tmp_path / "a"))
    b = weights(run(store, tmp_path / "b"))
    c = weights(run(store, tmp_path / "c", seed=2))
    assert_same(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_run_directory_and_log(store, tmp_path):
    out = run(store, tmp_path, epochs=2)
    assert out == tmp_path / "baseline-n" / "fold0-seed1"
    assert {p.name for p in out.iterdir()} >= {"best.safetensors", "config.json", "log.csv", "done.json"}
    assert not (out / "last.safetensors").exists()
    config = json.loads((out / "config.json").read_text())
    fold = split(ConditionStore(store).rows, 0).fold
    assert config["test_speaker"] == fold.test_speaker and config["val_speaker"] == fold.val_speaker
    assert config["train_conditions"] == ["clean", "esc50@10", "esc50@0"]
    assert len((out / "log.csv").read_text().strip().splitlines()) == 3
    model, cfg = load_run(out)
    assert cfg["system"]["width"] == 4 and not model.training


def test_config_records_the_se_setting_as_existing_runs_do(store, tmp_path):
    """config.json holds the store's SE setting as the two keys the existing runs' configs hold
    ("se", "se_options", side by side), so those runs still resume; another setting is refused."""
    out = run(store, tmp_path, epochs=1)
    config = json.loads((out / "config.json").read_text())
    keys = list(config)
    assert config["se"] == "identity" and config["se_options"] == {}
    assert keys.index("se_options") == keys.index("se") + 1
    assert Spec.from_fields(config) == ConditionStore(store).se == Spec("identity")
    requested = trainer.prepare(spec_from_names("baseline-n", 0, 1, store, tmp_path, system_overrides=TINY)).config
    older = {k: v for k, v in config.items() if k not in ("se", "se_options")}
    (out / "config.json").write_text(json.dumps({**older, "se_options": {}, "se": "identity"}))  # another key order
    check_config(out, {**requested, "training": config["training"]})
    (out / "config.json").write_text(json.dumps({**config, "se_options": {"gain_floor_db": -20}}))
    with pytest.raises(RunError, match=r"se_options\.gain_floor_db"):
        check_config(out, {**requested, "training": config["training"]})


def test_test_speaker_is_never_evaluated_during_training(store, tmp_path, monkeypatch):
    seen: list[np.ndarray] = []
    original = trainer.predict_condition

    def spy(model, store_, labels, rows, cond, **kw):
        seen.append(np.asarray(rows))
        return original(model, store_, labels, rows, cond, **kw)

    monkeypatch.setattr(trainer, "predict_condition", spy)
    run(store, tmp_path, epochs=2)
    fold = split(ConditionStore(store).rows, 0)
    val_rows, test_rows = fold.val, fold.test
    assert seen and all(set(r) == set(val_rows) for r in seen)
    assert not set(np.concatenate(seen)) & set(test_rows)


@pytest.mark.parametrize("schedule, bucket", [("constant", False), ("cosine", True)])
def test_crash_mid_run_then_resume_equals_uninterrupted(store, tmp_path, monkeypatch, schedule, bucket):
    reference = weights(run(store, tmp_path / "ref", epochs=4, patience=100, lr_schedule=schedule, bucket=bucket))
    calls = {"n": 0}
    original = trainer.validate

    def crash_on_third_epoch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated crash")
        return original(*a, **kw)

    monkeypatch.setattr(trainer, "validate", crash_on_third_epoch)
    with pytest.raises(RuntimeError, match="simulated"):
        run(store, tmp_path / "crash", epochs=4, patience=100, lr_schedule=schedule, bucket=bucket)
    monkeypatch.setattr(trainer, "validate", original)
    out = tmp_path / "crash" / "baseline-n" / "fold0-seed1"
    assert (out / "last.safetensors").exists() and not (out / "done.json").exists()
    again = run(store, tmp_path / "crash", epochs=4, patience=100, lr_schedule=schedule, bucket=bucket)
    assert_same(reference, weights(again))
    assert len((out / "log.csv").read_text().strip().splitlines()) == 5


def test_cosine_schedule_changes_the_run_and_ends_at_zero(store, tmp_path):
    """The schedule is a training setting: it changes the weights, is recorded in config.json
    and refused on a mismatch; it falls from lr to 0 over epochs x batches per epoch."""
    constant = weights(run(store, tmp_path / "r", epochs=2, patience=100))
    with pytest.raises(RunError, match="lr_schedule"):
        run(store, tmp_path / "r", epochs=2, patience=100, lr_schedule="cosine")
    cosine = weights(run(store, tmp_path / "c", epochs=2, patience=100, lr_schedule="cosine"))
    assert any(not torch.equal(constant[k], cosine[k]) for k in constant)
    config = json.loads((tmp_path / "c" / "baseline-n" / "fold0-seed1" / "config.json").read_text())
    assert config["training"]["lr_schedule"] == "cosine"
    t = TrainingConfig(epochs=2, lr=1e-3, lr_schedule="cosine")
    assert t.lr_at(0, 5) == 1e-3 and t.lr_at(5, 5) == pytest.approx(5e-4) and t.lr_at(10, 5) == 0.0
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainingConfig(lr_schedule="step")


@pytest.mark.slow
def test_kill_9_then_rerun_resumes(store, tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "trnet.cli",
        "train",
        "--config",
        "baseline-n",
        "--fold",
        "0",
        "--seed",
        "1",
        "--store",
        str(store),
        "--out",
        str(tmp_path),
        "--epochs",
        "40",
        "--width",
        "4",
        "--quiet",
    ]
    out = tmp_path / "baseline-n" / "fold0-seed1"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when(out / "last.safetensors", proc)
    epochs_before = len((out / "log.csv").read_text().strip().splitlines()) - 1
    assert not (out / "done.json").exists() and epochs_before >= 1
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (out / "done.json").exists() and not (out / "last.safetensors").exists()
    load_run(out)  # a loadable, complete checkpoint


@pytest.mark.slow
def test_trnet_trains_its_teacher_first_and_never_changes_it(store, tmp_path):
    teacher_dir = run(store, tmp_path, system="baseline-c", epochs=2)
    before = weights(teacher_dir)
    stamp = (teacher_dir / "best.safetensors").stat().st_mtime_ns
    out = run(store, tmp_path, system="trnet", epochs=2)
    assert_same(before, weights(teacher_dir))
    assert (teacher_dir / "best.safetensors").stat().st_mtime_ns == stamp
    log = (out / "log.csv").read_text().splitlines()
    header, first = log[0].split(","), log[1].split(",")
    assert float(first[header.index("high")]) > 0 and float(first[header.index("low")]) > 0
    assert not any("teacher" in k for k in weights(out))
    # without a finished teacher, trnet trains Baseline-c itself
    run(store, tmp_path / "fresh", system="trnet-wo-low", epochs=1)
    assert (tmp_path / "fresh" / "baseline-c" / "fold0-seed1" / "done.json").exists()


def test_unknown_fold_is_a_clear_error(store, tmp_path):
    spec = spec_from_names("baseline-c", 99, 1, store, tmp_path, system_overrides=TINY)
    with pytest.raises(ValueError, match="fold 99 out of range"):
        train(spec, quiet=True)


def test_bucketing_keeps_every_example_once_and_crops_less(monkeypatch):
    """Buckets: the same examples per epoch (and the same conditions each drew), the same number
    of batches, a fixed order given (seed, epoch), and batches of similar length."""
    import trnet.batches as batches

    rng = np.random.default_rng(0)
    store = type("Store", (), {"frames": rng.lognormal(np.log(240), 0.3, 1000).clip(87, 500).astype(int)})()
    monkeypatch.setattr(batches, "make_batch", lambda s, labels, idx, conds, crop=True: (idx, conds))
    rows, conds = np.arange(997), ["clean", ("n", 10), ("n", 0)]
    plain = list(batches.train_batches(store, None, rows, conds, 8, 1, 3))
    bucketed = list(batches.train_batches(store, None, rows, conds, 8, 1, 3, bucket=True))
    again = list(batches.train_batches(store, None, rows, conds, 8, 1, 3, bucket=True))
    assert all(np.array_equal(a[0], b[0]) and a[1] == b[1] for a, b in zip(bucketed, again, strict=False))
    assert len(plain) == len(bucketed) == batches.n_train_batches(len(rows), 8)
    pairs = {(int(i), c) for idx, cs in plain for i, c in zip(idx, cs, strict=False)}
    assert pairs == {
        (int(i), c) for idx, cs in bucketed for i, c in zip(idx, cs, strict=False)
    }  # same draws, once each
    longest = [np.mean([store.frames[idx].max() for idx, _ in bs]) for bs in (plain, bucketed)]
    assert longest[1] < 0.85 * longest[0]
