"""The stacked trainer's fast path (trnet.training.fast; docs/design.md §7.1), run on the CPU:
bf16 autocast keeps the logits within the stated tolerance of the float32 reference after some
training steps, the resident store gathers the very batches the disk store gives, losses are
checked once per epoch and a non-finite one still stops training before anything is saved, and
a fast run is recorded as such (never resumed as a float32 run)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.test_training import TINY
from tests.test_training import store as store  # noqa: F401 - the module fixture
from trnet.batches import condition_set, label_indices, make_batch
from trnet.models import SERSystem, build_teacher, load_config, teacher_config
from trnet.runs import RunError
from trnet.store import ConditionStore
from trnet.training import stacked
from trnet.training.batched import train_batched
from trnet.training.fast import LOGIT_TOLERANCE, DeviceStore, FastPath, logit_drift
from trnet.training.trainer import spec_from_names

STEPS = 6


def _drift(system: str) -> float:
    torch.manual_seed(0)
    cfg = replace(load_config(system), width=4, input_norm="utterance")
    models = [SERSystem(cfg) for _ in range(2)]
    tcfg = teacher_config(cfg)
    teachers = [build_teacher(SERSystem(tcfg).state_dict(), tcfg) for _ in range(2)] if cfg.teacher else None
    gen = torch.Generator().manual_seed(1)

    def feats(b: int, t: int) -> torch.Tensor:  # LMFB-like: log energies around 8 +- 3
        return torch.randn(2, b, t, 80, generator=gen) * 3 + 8

    steps = []
    for _ in range(STEPS):
        frames = torch.randint(24, 49, (2, 4), generator=gen)
        y = torch.randint(0, 4, (2, 4), generator=gen)
        steps.append((feats(4, 48), feats(4, 48), feats(4, 48), frames, y, torch.full((2, 4), 10.0)))
    probe = (feats(6, 48), feats(6, 48), torch.randint(24, 49, (2, 6), generator=gen))
    return logit_drift(
        cfg, models, steps, probe, "cpu", teachers, label_smoothing=0.1, weight_decay=0.05, ema_decay=0.9
    )


@pytest.mark.slow
def test_bf16_logits_stay_within_the_tolerance_of_float32():
    """6 steps of 2 runs (label smoothing, AdamW, the weight average, utterance normalisation) in
    CPU bf16 autocast and in float32 from the same weights: the averaged model's logits differ by
    at most LOGIT_TOLERANCE, and by something (bf16 is on: the test can fail)."""
    drift = _drift("trnet")
    assert 0 < drift <= LOGIT_TOLERANCE


def test_the_resident_store_gathers_the_disk_batches(store):  # noqa: F811
    s = ConditionStore(store)
    conds = condition_set(s, "noisy", "esc50")
    resident = DeviceStore(s, conds, torch.device("cpu"))
    labels = label_indices(s)
    index = np.array([3, 0, 7, 5])
    picked = [conds[k % len(conds)] for k in range(4)]
    a, b = make_batch(s, labels, index, picked), resident.batch(labels, index, picked)
    for k in ("x", "xe", "xs", "frames", "y"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k


def _specs(store, runs, **kw) -> list:  # noqa: F811
    return [
        spec_from_names(
            "baseline-n",
            0,
            seed,
            store,
            runs,
            system_overrides=TINY,
            training_overrides={"epochs": 2, "batch_size": 8, "patience": 100, "ema_decay": 0.9, **kw},
        )
        for seed in (1, 2)
    ]


@pytest.mark.slow
def test_a_fast_stack_trains_and_is_recorded_as_fast(store, tmp_path):  # noqa: F811
    fast = FastPath(bf16=True)
    train_batched(_specs(store, tmp_path), fast=fast)
    for spec in _specs(store, tmp_path):
        config = json.loads((spec.dir / "config.json").read_text())
        assert config["fast_path"] == {"bf16": True, "compile": None}
        log = (spec.dir / "log.csv").read_text().splitlines()
        assert len(log) == 3 and all(np.isfinite(float(v)) for v in log[1].split(",")[1:6])
        assert (spec.dir / "done.json").exists()
    with pytest.raises(RunError, match="other settings \\(fast_path"):  # a fast run is not a float32 run
        train_batched(_specs(store, tmp_path))


@pytest.mark.slow
def test_a_non_finite_loss_on_the_fast_path_stops_at_the_epochs_end(store, tmp_path, monkeypatch):  # noqa: F811
    """No host synchronisation inside the epoch, so the error comes at its end: before any
    checkpoint, log row or best weights of that epoch is written."""
    original = stacked.compute_losses

    def poisoned(*a, **kw):
        losses = original(*a, **kw)
        return {**losses, "total": losses["total"] * float("nan")}

    monkeypatch.setattr(stacked, "compute_losses", poisoned)
    with pytest.raises(RunError, match="not finite at epoch 1"):
        train_batched(_specs(store, tmp_path), fast=FastPath(bf16=False))
    for spec in _specs(store, tmp_path):
        assert sorted(p.name for p in spec.dir.iterdir() if not p.name.startswith(".")) == ["config.json"]


def test_fast_path_settings_are_checked():
    with pytest.raises(ValueError, match="compile"):
        FastPath(compile="fastest")
    assert FastPath(compile="reduce-overhead").record() == {"bf16": True, "compile": "reduce-overhead"}


def test_the_compile_mode_reaches_torch_compile(monkeypatch):
    """The stacked step goes through torch.compile with the mode asked for (compiled once per
    signature); here the compiler is replaced by a recorder, so the step itself runs eagerly."""
    calls = []

    def recorder(fn, **kw):
        calls.append(kw)
        return fn

    monkeypatch.setattr(stacked.torch, "compile", recorder)
    cfg = replace(load_config("baseline-n"), width=4)
    model = stacked.StackedSystem(cfg, [SERSystem(cfg) for _ in range(2)], None, 1e-3, compile_mode="reduce-overhead")
    x = torch.randn(2, 3, 32, 80) + 8
    frames, y, snr = torch.full((2, 3), 32), torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 10.0)
    for _ in range(2):
        model.train_step([0, 1], x, x, x, frames, y, snr)
    assert calls == [{"mode": "reduce-overhead", "dynamic": True}]
