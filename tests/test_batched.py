"""Several runs as one stacked model (trnet.training.batched, stacked): the same numbers as each
run trained alone, to float rounding (docs/design.md §7.1),
and the same run directory, resumable here or alone."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from tests.test_levers import ALL_LEVERS
from tests.test_training import TINY
from tests.test_training import store as store  # noqa: F401 - the module fixture
from trnet.models import SERSystem, build_teacher, load_config, teacher_config
from trnet.models.losses import compute_losses
from trnet.training import batched
from trnet.training.batched import split_by_length, train_batched
from trnet.training.stacked import StackedSystem
from trnet.training.trainer import spec_from_names, train

# the attention pooling's score bias shifts every frame's score alike, which the softmax
# ignores: its true gradient is 0, so Adam turns rounding noise into +-lr steps, alone too
GRADIENT_FREE = ("encoder.pool.score.bias",)


def _max_delta(a: dict, b: dict, skip: tuple[str, ...] = GRADIENT_FREE) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if k not in skip)


def _stacked_vs_alone(dtype: torch.dtype, system: str, steps: int = 20, device: str = "cpu") -> tuple[float, float]:
    """R = 3 runs, each on its own batches of its own lengths, some steps skipped by some runs
    (a shorter epoch, a stopped run): max |delta weight| of the stack against each run trained
    alone, and of the run alone on its batches padded by 48 more frames (which changes nothing
    but float rounding) against the same."""
    torch.manual_seed(0)
    cfg = replace(load_config(system), width=4)
    tcfg = teacher_config(cfg)
    models = [SERSystem(cfg).to(dtype) for _ in range(3)]
    teachers = [build_teacher(SERSystem(tcfg).state_dict(), tcfg).to(dtype) for _ in range(3)] if cfg.teacher else None
    alone, padded = [copy.deepcopy(m) for m in models], [copy.deepcopy(m) for m in models]
    opts = {id(m): torch.optim.Adam(m.parameters(), lr=1e-3) for m in alone + padded}
    stack = StackedSystem(cfg, models, teachers, 1e-3, device)
    gen = torch.Generator().manual_seed(1)

    def step_alone(model, r, x, xe, xs, lengths, y, snr):
        out = model(x, xe, lengths)
        h_s = teachers[r].embed(xs, lengths) if teachers else None
        loss = compute_losses(out, y, xs, lengths, h_s, cfg, x=x, xe=xe, snr_db=snr)["total"]
        opts[id(model)].zero_grad()
        loss.backward()
        opts[id(model)].step()

    for step in range(steps):
        rows = [r for r in range(3) if not (r == 1 and step % 4 == 3) and not (r == 2 and step >= 15)]
        t = [int(torch.randint(40, 97, (), generator=gen)) for _ in rows]
        x, xe, xs = (torch.randn(len(rows), 6, max(t), 80, generator=gen, dtype=dtype) * 3 + 8 for _ in range(3))
        lengths = torch.stack([torch.randint(20, ti + 1, (6,), generator=gen) for ti in t])
        lengths[:, 0] = torch.tensor(t)
        y = torch.randint(0, 4, (len(rows), 6), generator=gen)
        snr = torch.full((len(rows), 6), 10.0, dtype=dtype)
        stack.train_step(rows, *(v.to(device) for v in (x, xe, xs, lengths, y, snr)))
        for j, r in enumerate(rows):  # alone: its own batch cropped to its own length (or padded)
            own = [v[j, :, : t[j]] for v in (x, xe, xs)]
            step_alone(alone[r], r, *own, lengths[j], y[j], snr[j])
            step_alone(padded[r], r, *(F.pad(v, (0, 0, 0, 48)) for v in own), lengths[j], y[j], snr[j])
    stacked = [{k: v.cpu() for k, v in stack.stack.state_dict(r).items()} for r in range(3)]
    return (
        max(_max_delta(alone[r].state_dict(), stacked[r]) for r in range(3)),
        max(_max_delta(alone[r].state_dict(), padded[r].state_dict()) for r in range(3)),
    )


@pytest.mark.slow
def test_stacked_steps_equal_alone_steps_float64():
    """The stack computes what each run alone computes: in float64, 20 steps (TRNet-std-snr:
    teacher, L_low, L_c with the SNR, standardised SNR-aware input) agree to <= 1e-5 (measured 4.7e-13)."""
    stacked, padded = _stacked_vs_alone(torch.float64, "trnet-std-snr")
    assert stacked <= 1e-5 and padded <= 1e-5


@pytest.mark.slow
def test_stacked_steps_equal_alone_steps_to_float32_rounding():
    """In float32, Adam's first steps (m / sqrt(v) ~ +-1 where gradients are rounding noise)
    amplify rounding; the stack stays as close to the run alone as the run alone on a
    differently padded batch does (docs/design.md §7.1)."""
    stacked, padded = _stacked_vs_alone(torch.float32, "baseline-n")
    assert stacked <= 5 * max(padded, 1e-5)


def test_split_by_length():
    assert split_by_length([0, 1, 2, 3], [208, 208, 208, 208]) == [[0, 1, 2, 3]]
    assert split_by_length([0, 1, 2, 3], [48, 496, 64, 480], overhead=64) == [[0, 2], [1, 3]]
    groups = split_by_length(list(range(6)), [100, 120, 110, 300, 310, 105])
    assert sorted(r for g in groups for r in g) == list(range(6))


def _specs(store: Path, runs: Path, system: str, epochs: int = 3, patience: int = 100) -> list:
    return [
        spec_from_names(
            system,
            fold,
            seed,
            store,
            runs,
            system_overrides=TINY,
            training_overrides={"epochs": epochs, "batch_size": 8, "patience": patience},
        )
        for fold in (0, 1)
        for seed in (1, 2)
    ]


@pytest.mark.slow
def test_a_stacked_grid_writes_the_runs_alone_would(store, tmp_path):  # noqa: F811
    """Short grid (TRNet with its teachers, 2 folds x 2 seeds, early stopping after 1 stale
    epoch): the same files, config.json, log columns, best epoch, validation metrics."""
    for spec in _specs(store, tmp_path / "alone", "trnet", epochs=4, patience=1):
        train(spec, quiet=True)
    seconds = train_batched(_specs(store, tmp_path / "stacked", "trnet", epochs=4, patience=1))
    assert all(s is not None for s in seconds.values())
    for system in ("baseline-c", "trnet"):
        for spec in _specs(store, tmp_path / "alone", system, epochs=4, patience=1):
            a, b = spec.dir, tmp_path / "stacked" / system / spec.dir.name
            assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
            assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
            done_a, done_b = (json.loads((d / "done.json").read_text()) for d in (a, b))
            assert done_a.keys() == done_b.keys()
            assert (done_a["epoch"], done_a["epochs_run"]) == (done_b["epoch"], done_b["epochs_run"])
            log_a, log_b = ((d / "log.csv").read_text().splitlines() for d in (a, b))
            assert log_a[0] == log_b[0] and len(log_a) == len(log_b)
            for ra, rb in zip(log_a[1:], log_b[1:], strict=False):
                va, vb = ([float(v) for v in r.split(",")] for r in (ra, rb))
                assert va[6:8] == vb[6:8]  # val_uar, val_war
                assert va[:4] + va[5:6] == pytest.approx(vb[:4] + vb[5:6], rel=1e-3)  # epoch, losses
                assert va[4] == pytest.approx(vb[4], rel=1e-2)  # L_high: a mean square of small differences
                assert va[8] == pytest.approx(vb[8], rel=1e-3)  # val_ce
            wa, wb = load_file(str(a / "best.safetensors")), load_file(str(b / "best.safetensors"))
            # float32 rounding, amplified by Adam (measured 5.6e-3 here; the run alone on other padding: 7.7e-3)
            assert list(wa) == list(wb) and _max_delta(wa, wb) <= 3e-2
            with safe_open(str(a / "best.safetensors"), "pt") as fa, safe_open(str(b / "best.safetensors"), "pt") as fb:
                assert fa.metadata() == fb.metadata()


def _crash_in_second_epoch(monkeypatch, specs: list) -> None:
    """Train `specs` as a stack that crashes at its second validation (after epoch 1's
    checkpoint), then put validation back: what a kill leaves behind."""
    calls = {"n": 0}
    original = batched._validate

    def crash_on_second_epoch(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return original(*a, **kw)

    monkeypatch.setattr(batched, "_validate", crash_on_second_epoch)
    with pytest.raises(RuntimeError, match="simulated"):
        train_batched(specs)
    monkeypatch.setattr(batched, "_validate", original)


@pytest.mark.slow
def test_a_killed_stack_resumes_to_the_same_weights_here_or_alone(store, tmp_path, monkeypatch):  # noqa: F811
    reference = tmp_path / "ref"
    train_batched(_specs(store, reference, "baseline-n"))
    _crash_in_second_epoch(monkeypatch, _specs(store, tmp_path / "crash", "baseline-n"))
    specs = _specs(store, tmp_path / "crash", "baseline-n")
    assert all((s.dir / "last.safetensors").exists() and not (s.dir / "done.json").exists() for s in specs)
    train(specs[0], quiet=True)  # one of them resumed alone: the checkpoint is the single trainer's
    train_batched(specs[1:])  # the others as a stack of 3
    for spec in specs:
        a = load_file(str(reference / "baseline-n" / spec.dir.name / "best.safetensors"))
        b = load_file(str(spec.dir / "best.safetensors"))
        assert _max_delta(a, b) <= 3e-2  # float32 rounding, as above
        assert len((spec.dir / "log.csv").read_text().splitlines()) == 4
        assert not (spec.dir / "last.safetensors").exists()


# the levers of docs/design.md §7 as the study's recipe sets them (crops of 0.5 s: the test
# corpus's utterances are ~1 s), trained per run inside a stack
LEVERS = {**ALL_LEVERS, "lr_schedule": "cosine"}


def _lever_specs(store: Path, runs: Path, system: str = "trnet", epochs: int = 3, **levers) -> list:
    return [
        spec_from_names(
            system,
            fold,
            seed,
            store,
            runs,
            system_overrides={**TINY, "input_norm": "utterance"},
            training_overrides={"epochs": epochs, "batch_size": 8, "patience": 100, **(levers or LEVERS)},
        )
        for fold in (0, 1)
        for seed in (1, 2)
    ]


@pytest.mark.slow
def test_stacked_levers_step_equals_alone_float64():
    """Label smoothing, AdamW and the weight average inside a stack: 8 float64 steps of 3 runs
    (one skipping steps) give each run's weights and average what torch.optim.AdamW and
    WeightAverage give the run alone, to <= 1e-5 (the tolerance of the stacked tests above)."""
    from trnet.training.averaging import WeightAverage

    torch.manual_seed(0)
    cfg = replace(load_config("baseline-n"), width=4, input_norm="utterance")
    models = [SERSystem(cfg).double() for _ in range(3)]
    alone = [copy.deepcopy(m) for m in models]
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05) for m in alone]
    avgs = [WeightAverage(m, 0.9) for m in alone]
    stack = StackedSystem(cfg, models, None, 1e-3, weight_decay=0.05, label_smoothing=0.1, ema_decay=0.9)
    gen = torch.Generator().manual_seed(1)
    for step in range(8):
        rows = [r for r in range(3) if not (r == 1 and step % 3 == 2)]
        x = torch.randn(len(rows), 6, 64, 80, generator=gen, dtype=torch.float64) * 3 + 8
        lengths = torch.randint(20, 65, (len(rows), 6), generator=gen)
        y = torch.randint(0, 4, (len(rows), 6), generator=gen)
        snr = torch.full((len(rows), 6), 10.0, dtype=torch.float64)
        lrs = [1e-3 * (step + 1) / 8] * len(rows)  # a warm-up
        stack.train_step(rows, x, x, x, lengths, y, snr, lrs=lrs)
        for j, r in enumerate(rows):
            out = alone[r](x[j], x[j], lengths[j])
            loss = compute_losses(out, y[j], x[j], lengths[j], None, cfg, label_smoothing=0.1)["total"]
            for g in opts[r].param_groups:
                g["lr"] = lrs[j]
            opts[r].zero_grad()
            loss.backward()
            opts[r].step()
            avgs[r].update(alone[r])
    for r in range(3):
        assert _max_delta(alone[r].state_dict(), stack.stack.state_dict(r)) <= 1e-5
        assert _max_delta(avgs[r].state_dict(), stack.average.state_dict(r)) <= 1e-5
    plain = StackedSystem(cfg, [copy.deepcopy(m) for m in models], None, 1e-3)  # the levers do change a step
    assert plain.adam.weight_decay == 0 and plain.average is None and plain.label_smoothing == 0


def test_stacked_teachers_apply_the_input_norm():
    """The teachers are stacked as bare encoders: their h_s must still see SERSystem.embed's
    per-utterance normalisation."""
    torch.manual_seed(0)
    cfg = replace(load_config("trnet"), width=4, input_norm="utterance")
    tcfg = teacher_config(cfg)
    teachers = [build_teacher(SERSystem(tcfg).state_dict(), tcfg) for _ in range(2)]
    stack = StackedSystem(cfg, [SERSystem(cfg) for _ in range(2)], teachers, 1e-3)
    xs = torch.randn(2, 3, 48, 80) * 3 + 8
    frames = torch.tensor([[48, 30, 20], [40, 48, 33]])
    h = stack.teacher_h([0, 1], xs, frames)
    for r in range(2):
        assert torch.allclose(h[r], teachers[r].embed(xs[r], frames[r]), atol=1e-5)


def _record_augment(monkeypatch) -> list:
    """Every augmented batch the trainers draw: (rows, sum of X, frames), order-free."""
    from trnet.training import augment as augment_module
    from trnet.training import trainer as trainer_module

    seen = []

    def recording(batch, training, rng):
        out = augment_module.augment(batch, training, rng)
        seen.append((tuple(batch.index.tolist()), round(float(out.x.double().sum()), 3), tuple(out.frames.tolist())))
        return out

    monkeypatch.setattr(trainer_module, "augment", recording)
    monkeypatch.setattr(batched, "augment", recording)
    return seen


@pytest.mark.slow
def test_a_stack_with_the_levers_trains_each_run_as_alone(store, tmp_path, monkeypatch):  # noqa: F811
    """TRNet with every lever on and the utterance normalisation (its teachers too), 2 folds x 2
    seeds: each run draws the very augmentations it draws alone, and its kept weights (the
    average) agree with the run trained alone by trainer.train within the float32 tolerance of
    the stacked grid test above."""
    seen = _record_augment(monkeypatch)
    for spec in _lever_specs(store, tmp_path / "alone"):
        train(spec, quiet=True)
    alone, seen[:] = sorted(seen), []
    train_batched(_lever_specs(store, tmp_path / "stacked"))
    assert alone and sorted(seen) == alone
    for system in ("baseline-c", "trnet"):
        for spec in _lever_specs(store, tmp_path / "alone", system):
            a, b = spec.dir, tmp_path / "stacked" / system / spec.dir.name
            assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
            wa, wb = load_file(str(a / "best.safetensors")), load_file(str(b / "best.safetensors"))
            assert list(wa) == list(wb) and _max_delta(wa, wb) <= 3e-2
            log_a, log_b = ((d / "log.csv").read_text().splitlines() for d in (a, b))
            assert len(log_a) == len(log_b) == 4


@pytest.mark.slow
def test_a_killed_stack_with_the_levers_resumes_to_the_same_weights(store, tmp_path, monkeypatch):  # noqa: F811
    """The weight average and AdamW's moments are in last.safetensors: a stack killed after its
    first epoch resumes, here or alone, to the weights of an uninterrupted stack."""
    levers = {k: v for k, v in LEVERS.items() if k != "teacher_cache"}
    train_batched(_lever_specs(store, tmp_path / "ref", "baseline-n", **levers))
    _crash_in_second_epoch(monkeypatch, _lever_specs(store, tmp_path / "crash", "baseline-n", **levers))
    specs = _lever_specs(store, tmp_path / "crash", "baseline-n", **levers)
    with safe_open(str(specs[0].dir / "last.safetensors"), "pt") as f:
        assert any(k.startswith("average.") for k in f.keys())
    train(specs[0], quiet=True)
    train_batched(specs[1:])
    for spec in specs:
        a = load_file(str(tmp_path / "ref" / "baseline-n" / spec.dir.name / "best.safetensors"))
        b = load_file(str(spec.dir / "best.safetensors"))
        assert _max_delta(a, b) <= 3e-2
        assert not (spec.dir / "last.safetensors").exists()
