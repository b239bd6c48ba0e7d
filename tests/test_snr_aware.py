"""Options of the SNR-aware module (issue #12): cosine inputs, training-speaker statistics,
initialisation, the oracle-c loss, and the diagnostics (oracle c, Spearman rho of c vs SNR)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.test_models import LENGTHS, batch, close, garbage, lmfb, pad, system
from trnet import configs
from trnet.batches import condition_snr_db, fit_snr_input_stats, snr_input_stats
from trnet.enhance import Spec
from trnet.models import SERSystem, load_config, load_training_config
from trnet.models.diagnostics import c_snr_spearman, oracle_c
from trnet.models.losses import compute_losses, low_level_loss
from trnet.models.snr_aware import SNR_INPUTS, SNRAware

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning"),
]


# ---------------------------------------------------------------- configuration


def test_paper_behaviour_is_the_default():
    cfg = load_config("trnet")
    assert (cfg.snr_input, cfg.snr_init, cfg.gamma) == ("lmfb", "project", 0.0)
    snr = SERSystem(cfg).snr
    assert set(snr.state_dict()) == {"fc.weight", "fc.bias"}  # no buffers: old checkpoints load
    assert torch.equal(snr.fc.weight, torch.zeros(1, 80)) and snr.fc.bias.item() == 0.5


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("snr_input", "cepstrum", "snr_input 'cepstrum' is not one of"),
        ("snr_init", "xavier", "snr_init 'xavier' is not one of"),
        ("gamma", -0.1, "gamma must be a finite number >= 0"),
        ("gamma", float("nan"), "gamma must be a finite number >= 0"),
        ("gamma", float("inf"), "gamma must be a finite number >= 0"),
    ],
)
def test_invalid_options_are_clear_errors(field, value, message):
    with pytest.raises(ValueError, match=message):
        replace(load_config("trnet"), **{field: value})


@pytest.mark.parametrize(
    "field, value", [("snr_input", "lmfb-std"), ("snr_init", "pytorch"), ("gamma", 1.0), ("c_target", "snr")]
)
def test_options_need_the_snr_aware_module(field, value):
    with pytest.raises(ValueError, match="need input 'trnet'"):
        replace(load_config("baseline-e"), **{field: value})


def test_variant_configs_load_and_table1_is_unchanged():
    SYSTEMS = configs.names(paper_only=True)
    VARIANTS = tuple(s for s, i in configs.systems().items() if i.family == "variant")
    assert SYSTEMS == (
        "baseline-c",
        "baseline-n",
        "baseline-e",
        "baseline-ne",
        "trnet",
        "trnet-wo-low",
        "trnet-wo-high",
    )
    assert not set(VARIANTS) & set(SYSTEMS)
    from importlib import resources

    for name in VARIANTS:
        cfg = load_config(name)
        assert cfg.name == name and cfg.input == "trnet"
        assert cfg != replace(load_config("trnet"), name=name)  # each changes something
        assert load_training_config(name) == load_training_config("trnet")
        text = (resources.files("trnet") / "configs" / f"{name}.toml").read_text()
        assert text.startswith("#"), f"{name}.toml needs a header comment saying what it changes"


# ---------------------------------------------------------------- inputs of eq. (1)


def test_standardised_input_is_the_cosine_of_standardised_columns():
    mean, std = torch.linspace(5, 9, 80), torch.linspace(0.5, 2, 80)
    snr = SNRAware(input="lmfb-std")
    snr.set_input_stats(mean, std)
    x, xe = lmfb(0), lmfb(1)
    d = snr.features(x, xe, LENGTHS)
    for i, n in enumerate(LENGTHS.tolist()):
        want = F.cosine_similarity((x[i, :n] - mean) / std, (xe[i, :n] - mean) / std, dim=0)
        assert close(d[i], want)
    # identity statistics give the paper's d
    assert close(SNRAware(input="lmfb-std").features(x, xe, LENGTHS), SNRAware().features(x, xe, LENGTHS))


def test_mel_power_input_is_the_cosine_of_exp_lmfb():
    x, xe = lmfb(0), lmfb(1)
    d = SNRAware(input="mel-power").features(x, xe, LENGTHS)
    for i, n in enumerate(LENGTHS.tolist()):
        assert close(d[i], F.cosine_similarity(x[i, :n].double().exp(), xe[i, :n].double().exp(), dim=0).float())


@pytest.mark.parametrize("input", SNR_INPUTS)
def test_every_input_ignores_padding_and_keeps_c_in_unit_interval(input):
    torch.manual_seed(0)
    snr = SNRAware(input=input, init="pytorch")
    if snr.needs_stats:
        snr.set_input_stats(torch.full((80,), 8.0), torch.full((80,), 2.0))
    x, xe = lmfb(0), lmfb(1)
    xt, c = snr(x, xe, LENGTHS)
    xt_g, c_g = snr(garbage(x, LENGTHS), garbage(xe, LENGTHS), LENGTHS)
    assert torch.equal(c, c_g) and torch.equal(xt, xt_g)
    w = c[:, None, None]
    assert close(xt, pad(w * x + (1 - w) * xe, LENGTHS))  # X~ mixes the LMFB whatever the input
    for xa, xb in ((x * 1e4, x), (x, -x), (torch.zeros_like(x), x), (x, x), (x - 200, x + 200)):
        _, c = snr(xa, xb, LENGTHS)
        assert torch.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()


def test_input_statistics_are_checked_and_travel_with_the_weights(tmp_path):
    from trnet.runs import load_weights, save_weights

    with pytest.raises(ValueError, match="uses no statistics"):
        SNRAware().set_input_stats(torch.zeros(80), torch.ones(80))
    snr = SNRAware(input="lmfb-std")
    for mean, std in (
        (torch.zeros(79), torch.ones(80)),
        (torch.zeros(80), torch.zeros(80)),
        (torch.full((80,), float("nan")), torch.ones(80)),
    ):
        with pytest.raises(ValueError):
            snr.set_input_stats(mean, std)
    model = system("trnet")
    model = SERSystem(replace(model.cfg, snr_input="lmfb-std"))
    model.snr.set_input_stats(torch.arange(80.0), torch.arange(1.0, 81.0))
    save_weights(tmp_path / "w.safetensors", model)
    fresh = SERSystem(model.cfg)
    assert torch.equal(fresh.snr.input_mean, torch.zeros(80))
    load_weights(tmp_path / "w.safetensors", fresh)
    assert torch.equal(fresh.snr.input_mean, torch.arange(80.0)) and torch.equal(
        fresh.snr.input_std, torch.arange(1.0, 81.0)
    )


def test_pytorch_init_is_nn_linear_default_and_seeded():
    torch.manual_seed(3)
    a = SNRAware(init="pytorch")
    torch.manual_seed(3)
    ref = torch.nn.Linear(80, 1)
    assert torch.equal(a.fc.weight, ref.weight) and torch.equal(a.fc.bias, ref.bias)
    assert not torch.equal(a.fc.weight, torch.zeros(1, 80))


# ---------------------------------------------------------------- diagnostics


def test_oracle_c_is_the_least_squares_coefficient():
    x, xe, xs = lmfb(0), lmfb(1), lmfb(2)
    xs = pad(0.3 * x + 0.7 * xe + 0.1 * (xs - 8), LENGTHS)  # optimum near 0.3
    c = oracle_c(garbage(x, LENGTHS), xe, xs, LENGTHS)
    grid = torch.linspace(0, 1, 2001)
    for i, n in enumerate(LENGTHS.tolist()):
        err = [((g * x[i, :n] + (1 - g) * xe[i, :n] - xs[i, :n]) ** 2).sum() for g in grid]
        assert abs(c[i] - grid[int(np.argmin(err))]) <= 1e-3
    assert close(oracle_c(x, xe, pad(x, LENGTHS), LENGTHS), torch.ones(4))
    assert close(oracle_c(x, xe, pad(xe, LENGTHS), LENGTHS), torch.zeros(4))
    # beyond [0, 1] the clip holds; X == X_e (SE changed nothing) is 1, not NaN
    assert close(oracle_c(x, xe, pad(2 * x - xe, LENGTHS), LENGTHS), torch.ones(4))
    assert close(oracle_c(x, xe, pad(2 * xe - x, LENGTHS), LENGTHS), torch.zeros(4))
    assert torch.equal(oracle_c(x, x.clone(), xs, LENGTHS), torch.ones(4))


def test_spearman_ranks_clean_highest():
    snr = condition_snr_db(["clean", ("esc50", 20), ("demand", 10), ("esc50", 0)]).numpy()
    assert snr.tolist() == [float("inf"), 20.0, 10.0, 0.0]
    assert c_snr_spearman([0.9, 0.7, 0.5, 0.1], snr) == pytest.approx(1.0)
    assert c_snr_spearman([0.1, 0.5, 0.7, 0.9], snr) == pytest.approx(-1.0)
    assert c_snr_spearman([0.5, 0.9, 0.7, 0.1], snr) == pytest.approx(0.4)  # clean ranked below 20 dB
    assert np.isnan(c_snr_spearman([0.4] * 4, snr))  # a constant c ranks nothing
    with pytest.raises(ValueError, match="SNRs"):
        c_snr_spearman([0.1, 0.2], snr)


# ---------------------------------------------------------------- the oracle-c loss (gamma)


def test_coefficient_loss_ties_c_to_the_oracle_only_through_c():
    torch.manual_seed(0)
    b = batch()
    model = SERSystem(replace(load_config("trnet-wo-high"), width=4, gamma=2.0))
    model.snr.fc.weight.data.normal_(0, 0.002)
    out = model(b["x"], b["xe"], LENGTHS)
    assert ((out.c > 0) & (out.c < 1)).all()  # Hardtanh passes gradient
    with pytest.raises(ValueError, match="x=, xe="):
        compute_losses(out, b["y"], b["xs"], LENGTHS, None, model.cfg)
    losses = compute_losses(out, b["y"], b["xs"], LENGTHS, None, model.cfg, x=b["x"], xe=b["xe"])
    assert losses["coef"].requires_grad
    coef = (out.c - oracle_c(b["x"], b["xe"], b["xs"], LENGTHS)).pow(2).mean()
    assert close(losses["coef"], coef)
    assert close(losses["total"], losses["ce"] + 0.5 * low_level_loss(out.x_tilde, b["xs"], LENGTHS) + 2.0 * coef)
    model.zero_grad()
    losses["coef"].backward()
    grads = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads == {"snr.fc.weight", "snr.fc.bias"}


def test_snr_target_is_the_known_snr_over_25_db():
    from trnet.models.snr_aware import snr_target

    snr = condition_snr_db(["clean", ("esc50", 20), ("demand", 10), ("esc50", 0), ("x", -5)])
    assert snr[0] == float("inf")
    assert torch.allclose(snr_target(snr), torch.tensor([1.0, 0.8, 0.4, 0.0, 0.0]))
    torch.manual_seed(0)
    b = batch()
    model = SERSystem(replace(load_config("trnet"), width=4, gamma=3.0, c_target="snr"))
    out = model(b["x"], b["xe"], LENGTHS)
    with pytest.raises(ValueError, match="snr_db="):
        compute_losses(out, b["y"], b["xs"], LENGTHS, torch.zeros_like(out.h), model.cfg)
    losses = compute_losses(out, b["y"], b["xs"], LENGTHS, torch.zeros_like(out.h), model.cfg, snr_db=snr[:4])
    assert close(losses["coef"], (out.c - torch.tensor([1.0, 0.8, 0.4, 0.0])).pow(2).mean())
    with pytest.raises(ValueError, match="c_target 'level'"):
        replace(model.cfg, c_target="level")


# ---------------------------------------------------------------- training-speaker statistics


def fake_store(n_per_speaker: int = 3):
    """A duck-typed store: 10 EmoDB-like speakers in 5 sessions; validation and test speakers'
    features are NaN, so any leak into the statistics shows."""
    pairs = [("03", "08"), ("09", "10"), ("11", "13"), ("12", "14"), ("15", "16")]
    men = {"03", "10", "11", "12", "15"}
    rows = [
        {"speaker": s, "session": str(k + 1), "gender": "M" if s in men else "F"}
        for k, p in enumerate(pairs)
        for s in p
        for _ in range(n_per_speaker)
    ]
    rng = np.random.default_rng(0)
    frames = rng.integers(5, 20, len(rows))
    arrays = {
        c: (
            rng.normal(8, 2, (len(rows), 20, 80)).astype(np.float16),
            rng.normal(7, 2, (len(rows), 20, 80)).astype(np.float16),
        )
        for c in ("clean", "n@0")
    }
    for c in arrays:  # beyond each length: garbage that must not count
        for i, f in enumerate(frames):
            arrays[c][0][i, f:] = 1e4
            arrays[c][1][i, f:] = -1e4
    store = SimpleNamespace(
        rows=rows,
        frames=frames,
        noisy=lambda c: arrays[c][0],
        enhanced=lambda c: arrays[c][1],
        clean=lambda: arrays["clean"][0],
    )
    return store, arrays


def test_input_statistics_come_from_the_training_speakers_only():
    from trnet.protocol.folds import loso_folds

    store, arrays = fake_store()
    fold = loso_folds(store.rows)[4]
    spk = np.array([r["speaker"] for r in store.rows])
    train = np.isin(spk, fold.train_speakers)
    held_out = np.flatnonzero(~train)
    assert len(held_out) == 6
    for c in arrays:
        for a in arrays[c]:
            a[held_out] = np.nan
    mean, std = snr_input_stats(store, 4, ["clean", "n@0"])
    assert np.isfinite(mean).all() and np.isfinite(std).all()
    vals = np.concatenate(
        [a[i, : store.frames[i]].astype(np.float64) for c in arrays for a in arrays[c] for i in np.flatnonzero(train)]
    )
    assert np.allclose(mean, vals.mean(0), atol=1e-4) and np.allclose(std, vals.std(0), atol=1e-4)
    with pytest.raises(ValueError, match="fold 10 out of range"):
        snr_input_stats(store, 10, ["clean"])


def test_fit_snr_input_stats_sets_them_only_where_needed():
    store, _ = fake_store()
    paper = system("trnet")
    assert not fit_snr_input_stats(paper, store, 0, ["clean"])
    assert not fit_snr_input_stats(system("baseline-e"), store, 0, ["clean"])
    std = SERSystem(replace(paper.cfg, snr_input="lmfb-std"))
    assert fit_snr_input_stats(std, store, 0, ["clean", "n@0"])
    mean, sd = snr_input_stats(store, 0, ["clean", "n@0"])
    assert torch.equal(std.snr.input_mean, torch.from_numpy(mean)) and torch.equal(
        std.snr.input_std, torch.from_numpy(sd)
    )


def test_trainer_saves_training_statistics_and_export_uses_them(tmp_path):
    """End to end on a tiny identity-SE store: the run's weights hold the fold's statistics,
    inference reloads them, and the ONNX export reproduces c and logits with them."""
    pytest.importorskip("onnxruntime")
    from safetensors.torch import load_file

    from tests.test_store import make_corpus
    from trnet.batches import condition_set
    from trnet.export import TOLERANCE, InferenceGraph, export, run_onnx
    from trnet.runs import load_run
    from trnet.store import BuildSpec, ConditionStore, build
    from trnet.training.trainer import spec_from_names, train

    corpus, noise = make_corpus(tmp_path, n_speakers=4, per_speaker=4)
    root = build(
        BuildSpec(corpus=corpus, noise={"esc50": noise}, se=Spec("identity"), seed=1, snrs=(10, 0)),
        tmp_path / "store",
        quiet=True,
    )
    path = tmp_path / "trnet-std.toml"
    path.write_text(config_text("trnet", snr_input="lmfb-std"))
    spec = spec_from_names(
        str(path),
        0,
        1,
        root,
        tmp_path / "runs",
        system_overrides={"width": 4},
        training_overrides={"epochs": 1, "batch_size": 4},
    )
    run = train(spec, quiet=True)
    store = ConditionStore(root)
    mean, std = snr_input_stats(store, 0, condition_set(store, "noisy", "esc50"))
    weights = load_file(str(run / "best.safetensors"))
    assert torch.equal(weights["snr.input_mean"], torch.from_numpy(mean)) and torch.equal(
        weights["snr.input_std"], torch.from_numpy(std)
    )
    model, _ = load_run(run)
    assert torch.equal(model.snr.input_mean, torch.from_numpy(mean))
    x, xe = lmfb(5), lmfb(6) - 1.0
    export(model, "onnx", tmp_path / "m.onnx")
    logits, c = run_onnx(tmp_path / "m.onnx", x, xe, LENGTHS)
    want_logits, want_c = InferenceGraph(model).eval()(x, xe, LENGTHS)
    assert (logits - want_logits).abs().max() <= TOLERANCE and (c - want_c).abs().max() <= 1e-5
    export(model, "torchscript", tmp_path / "m.pt")  # checks itself against PyTorch
    with torch.inference_mode():
        got_logits, got_c = torch.jit.load(str(tmp_path / "m.pt"))(x, xe, LENGTHS)
    assert (got_logits - want_logits).abs().max() <= TOLERANCE and (got_c - want_c).abs().max() <= 1e-5


def config_text(name: str, **options: str) -> str:
    """A config's TOML with extra top-level keys (before its first table, [about] or [training])."""
    text = configs.find(name).read_text()
    extra = "".join(f'{k} = "{v}"\n' for k, v in options.items())
    head, sep, tail = text.partition("\n[")
    return head.rstrip() + "\n" + extra + ("\n" + sep + tail if sep else "")
