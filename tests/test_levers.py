"""The training levers (docs/design.md §7): off by default and then never reached; each one
recorded in config.json and refused on a mismatch at resume; a resumed run with all of them on
ends with the weights of an uninterrupted one; the cached teacher equals the live one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_store import make_corpus
from tests.test_training import assert_same, weights
from trnet.batches import eval_batches, label_indices, make_batch
from trnet.enhance import Spec
from trnet.experiments.recipe import RecipeError, recipe_from_dict
from trnet.models import SERSystem, TrainingConfig, load_config
from trnet.models.system import utterance_mean_norm
from trnet.protocol.folds import split
from trnet.runs import RunError, read_best
from trnet.store import BuildSpec, ConditionStore, build
from trnet.training import trainer
from trnet.training.augment import batch_rng, random_crop, spec_augment
from trnet.training.trainer import spec_from_names, teacher_outputs, train

ALL_LEVERS = {
    "warmup_epochs": 1.0,
    "weight_decay": 0.05,
    "label_smoothing": 0.1,
    "freq_masks": 2,
    "time_masks": 2,
    "crop_s": 0.5,
    "ema_decay": 0.9,
    "teacher_cache": True,
}
RESUMED = {**ALL_LEVERS, "ema_warmup": True}  # every lever at once, the average's ramp too


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("levers")
    corpus, noise = make_corpus(root, n_speakers=4, per_speaker=8)
    spec = BuildSpec(corpus=corpus, noise={"esc50": noise}, se=Spec("identity"), seed=1, snrs=(10, 0))
    return build(spec, root / "store", quiet=True)


def run(store: Path, runs: Path, system: str = "baseline-e", epochs: int = 3, norm: str = "none", **levers) -> Path:
    spec = spec_from_names(
        system,
        0,
        1,
        store,
        runs,
        system_overrides={"width": 4, **({"input_norm": norm} if norm != "none" else {})},
        training_overrides={"epochs": epochs, "batch_size": 8, "patience": 100, **levers},
    )
    return train(spec, quiet=True)


def test_with_the_levers_off_no_lever_code_runs(store, tmp_path, monkeypatch):
    """The default path never reaches a lever, so runs made before the levers existed train bit
    for bit as they did (the lead checked the digests of six such runs before and after)."""

    def boom(*a, **kw):
        raise AssertionError("a lever ran with every lever off")

    for name in ("augment", "WeightAverage", "teacher_outputs"):
        monkeypatch.setattr(trainer, name, boom)
    out = run(store, tmp_path, system="trnet-std-snr", epochs=2)
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["ema_decay"] == 0.0 and config["system"]["input_norm"] == "none"
    assert TrainingConfig().tag() == "" and TrainingConfig().levers() == {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "key, value, other", [(k, v, 0 if not isinstance(v, bool) else False) for k, v in ALL_LEVERS.items()]
)
def test_each_lever_is_recorded_and_refused_on_a_mismatch(store, tmp_path, key, value, other):
    extra = {"teacher_cache": {"system": "trnet"}}.get(key, {})
    system = extra.get("system", "baseline-e")
    out = run(store, tmp_path, system=system, epochs=1, **{key: value})
    assert json.loads((out / "config.json").read_text())["training"][key] == value
    with pytest.raises(RunError, match=key):
        run(store, tmp_path, system=system, epochs=1, **{key: other})


def test_input_norm_is_recorded_refused_on_a_mismatch_and_reaches_the_teacher(store, tmp_path):
    out = run(store, tmp_path, system="trnet", epochs=1, norm="utterance")
    assert json.loads((out / "config.json").read_text())["system"]["input_norm"] == "utterance"
    teacher = tmp_path / "baseline-c" / "fold0-seed1"
    assert json.loads((teacher / "config.json").read_text())["system"]["input_norm"] == "utterance"
    with pytest.raises(RunError, match="input_norm"):
        run(store, tmp_path, system="trnet", epochs=1)


@pytest.mark.slow
def test_a_crashed_run_with_every_lever_resumes_to_the_uninterrupted_weights(store, tmp_path, monkeypatch):
    kw = {"system": "trnet-std-snr", "epochs": 4, "norm": "utterance", **RESUMED}
    reference = weights(run(store, tmp_path / "ref", **kw))
    calls = {"n": 0}
    original = trainer.validate

    def crash_on_third_epoch(*a, **k):  # of the student: its teacher's 4 epochs validate first
        calls["n"] += 1
        if calls["n"] == 4 + 3:
            raise RuntimeError("simulated crash")
        return original(*a, **k)

    monkeypatch.setattr(trainer, "validate", crash_on_third_epoch)
    with pytest.raises(RuntimeError, match="simulated"):
        run(store, tmp_path / "crash", **kw)
    monkeypatch.setattr(trainer, "validate", original)
    out = tmp_path / "crash" / "trnet-std-snr" / "fold0-seed1"
    assert (out / "last.safetensors").exists() and not (out / "done.json").exists()
    assert_same(reference, weights(run(store, tmp_path / "crash", **kw)))
    # the levers changed the run: without them the weights differ
    plain = weights(run(store, tmp_path / "plain", system="trnet-std-snr", epochs=4))
    assert any(not torch.equal(reference[k], plain[k]) for k in reference)


def test_the_cached_teacher_equals_the_live_teacher(store, tmp_path):
    teacher_dir = run(store, tmp_path, system="baseline-c", epochs=1)
    cfg = load_config("baseline-c").__class__(**{**load_config("baseline-c").__dict__, "width": 4})
    teacher = SERSystem(cfg)
    teacher.load_state_dict(read_best(teacher_dir))
    teacher.eval()
    s = ConditionStore(store)
    labels = label_indices(s)
    rows = split(s.rows, 0).train
    cache = teacher_outputs(teacher, s, labels, rows, "cpu")
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for _ in range(3):  # batches of 8 of mixed lengths and conditions, as training draws them
            idx = rng.choice(rows, 8, replace=False)
            b = make_batch(s, labels, idx, ["clean"] * 8)
            live = teacher.embed(b.xs, b.frames)
            torch.testing.assert_close(cache[torch.from_numpy(idx)], live, rtol=0, atol=1e-6)
    untouched = sorted(set(range(len(s.rows))) - set(rows.tolist()))
    assert torch.count_nonzero(cache[untouched]) == 0  # validation and test speakers are never embedded


def test_warmup_then_cosine():
    t = TrainingConfig(epochs=4, lr=1e-3, lr_schedule="cosine", warmup_epochs=1)
    assert t.lr_at(0, 10) == pytest.approx(1e-4) and t.lr_at(9, 10) == pytest.approx(1e-3)
    assert t.lr_at(10, 10) == pytest.approx(1e-3) and t.lr_at(25, 10) == pytest.approx(5e-4)
    assert t.lr_at(40, 10) == 0.0
    assert TrainingConfig(epochs=4, warmup_epochs=0.5).lr_at(2, 10) == pytest.approx(6e-4)
    assert TrainingConfig(epochs=4, warmup_epochs=0.5).lr_at(7, 10) == pytest.approx(1e-3)


@pytest.mark.parametrize(
    "bad",
    [
        {"ema_decay": float("nan")},
        {"ema_decay": 1.0},
        {"weight_decay": float("inf")},
        {"label_smoothing": -0.1},
        {"crop_s": 0.1},
        {"freq_masks": 1.5},
        {"time_mask_frames": 0},
        {"warmup_epochs": 9},
        {"teacher_cache": 1},
    ],
)
def test_impossible_levers_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainingConfig(epochs=8, **bad)


def test_crop_and_masks(store):
    s = ConditionStore(store)
    labels = label_indices(s)
    rows = np.arange(8)
    b = make_batch(s, labels, rows, [("esc50", 10)] * 8)
    cropped = random_crop(b, 50, batch_rng(1, 0, 0))
    assert int(cropped.frames.max()) <= 50 and cropped.x.shape[1] == 64
    for i in range(8):  # a window of the original frames, the same for the three streams
        f = int(cropped.frames[i])
        start = next(s0 for s0 in range(int(b.frames[i]) - f + 1) if torch.equal(b.x[i, s0 : s0 + f], cropped.x[i, :f]))
        assert torch.equal(b.xs[i, start : start + f], cropped.xs[i, :f])
        assert torch.count_nonzero(cropped.x[i, f:]) == 0
    again = random_crop(b, 50, batch_rng(1, 0, 0))
    assert torch.equal(again.x, cropped.x)  # (seed, epoch, step) fixes the draw: a resume sees it again
    t = TrainingConfig(freq_masks=2, freq_mask_bins=10, time_masks=2, time_mask_frames=20)
    masked = spec_augment(b, t, batch_rng(1, 0, 0))
    changed_x, changed_xe = masked.x != b.x, masked.xe != b.xe
    assert changed_x.any() and torch.equal(masked.xs, b.xs)  # X_s is never masked
    assert torch.equal(changed_x, changed_xe)  # one mask for X and X_e
    for i in range(8):  # filled with the example's per-bin mean
        f = int(b.frames[i])
        fill = b.x[i, :f].mean(0).expand(f, -1)
        assert torch.equal(masked.x[i, :f][changed_x[i, :f]], fill[changed_x[i, :f]])
    assert all(
        torch.equal(masked.x[i, int(b.frames[i]) :], b.x[i, int(b.frames[i]) :]) for i in range(8)
    )  # padding untouched


def test_utterance_norm_removes_the_mean_and_ignores_padding():
    torch.manual_seed(0)
    x = torch.randn(2, 30, 80) + 5
    lengths = torch.tensor([30, 17])
    y = utterance_mean_norm(x, lengths)
    assert y[0].mean(0).abs().max() < 1e-5 and y[1, :17].mean(0).abs().max() < 1e-5
    assert torch.count_nonzero(y[1, 17:]) == 0
    garbage = x.clone()
    garbage[1, 17:] = 1e6
    assert torch.equal(utterance_mean_norm(garbage, lengths), y)


def test_recipe_training_table(tmp_path):
    base = {
        "name": "r",
        "work": str(tmp_path / "w"),
        "train_noise": "n",
        "corpus": {"kind": "synthetic", "root": str(tmp_path / "c")},
        "noise": {"n": {"kind": "synthetic", "root": str(tmp_path / "c")}},
        "epochs": 8,
    }
    r = recipe_from_dict({**base, "training": {"ema_decay": 0.99, "input_norm": "utterance"}}, tmp_path, "t")
    assert r.levers == {"ema_decay": 0.99} and r.input_norm == "utterance"
    for bad, match in (
        ({"emma": 0.9}, "unknown"),
        ({"ema_decay": math.nan}, "ema_decay"),
        ({"input_norm": "speaker"}, "input_norm"),
        ({"warmup_epochs": 9}, "warmup_epochs"),
    ):
        with pytest.raises(RecipeError, match=match):
            recipe_from_dict({**base, "training": bad}, tmp_path, "t")


def test_eval_batches_cover_every_row_once(store):
    s = ConditionStore(store)
    rows = split(s.rows, 0).train
    seen = np.concatenate([b.index for b in eval_batches(s, label_indices(s), rows, "clean", 64)])
    assert sorted(seen.tolist()) == sorted(rows.tolist())


def test_the_average_ramps_up_with_warmup_and_not_without(store, tmp_path):
    from trnet.training.averaging import WeightAverage

    model = torch.nn.Linear(2, 2)
    ramp, flat = WeightAverage(model, 0.998, warmup=True), WeightAverage(model, 0.998)
    assert ramp.decay_at(0) == pytest.approx(0.1) and ramp.decay_at(8) == pytest.approx(0.5)
    assert ramp.decay_at(10**6) == 0.998 and flat.decay_at(0) == 0.998
    with pytest.raises(ValueError, match="ema_warmup"):
        TrainingConfig(ema_warmup=True)  # a ramp of no average
    out = run(store, tmp_path, epochs=1, ema_decay=0.99, ema_warmup=True)
    assert json.loads((out / "config.json").read_text())["training"]["ema_warmup"] is True
    with pytest.raises(RunError, match="ema_warmup"):
        run(store, tmp_path, epochs=1, ema_decay=0.99)
