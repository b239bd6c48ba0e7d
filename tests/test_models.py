"""Models (paper §3): SNR-aware module, encoders, FiLM bridge, losses, systems and teacher."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from trnet import configs
from trnet.features import frame_mask
from trnet.models import SERSystem, Teacher, build_teacher, load_config, load_training_config, teacher_config
from trnet.models.bridge import FiLMBridge
from trnet.models.encoder import ENCODERS, deltas
from trnet.models.losses import compute_losses, low_level_loss
from trnet.models.masking import MaskedBatchNorm
from trnet.models.snr_aware import SNRAware

WIDTH = 4  # tiny models: every property here is independent of width
pytestmark = pytest.mark.usefixtures("one_thread")
LENGTHS = torch.tensor([70, 23, 1, 48])
T = 90  # padded length; max(LENGTHS) = 70, rounded up to 16 -> 80


def pad(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(~frame_mask(lengths, x.shape[1])[..., None], 0.0)


def lmfb(seed: int, lengths: torch.Tensor = LENGTHS, t: int = T) -> torch.Tensor:
    """LMFB-like features (positive offset, unit-ish spread), zero beyond each length."""
    g = torch.Generator().manual_seed(seed)
    return pad(torch.randn(len(lengths), t, 80, generator=g) * 2 + 8, lengths)


def garbage(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """x with large random values in its padding, and NaN / inf in one utterance's padding."""
    junk = torch.randn_like(x) * 1e4
    junk[0, -1] = float("nan")
    junk[1, -2] = float("inf")
    return torch.where(frame_mask(lengths, x.shape[1])[..., None], x, junk)


def randomise_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine maps, so eval mode is not an identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g) * 0.3 + 1)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.3)


def system(name: str, encoder: str = "resnet") -> SERSystem:
    return SERSystem(replace(load_config(name), encoder=encoder, width=WIDTH))


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- SNR-aware module, eq. (1)-(4)


def test_c_starts_at_one_half():
    _, c = SNRAware()(lmfb(0), lmfb(1), LENGTHS)
    assert torch.equal(c, torch.full((4,), 0.5))


def test_c_in_unit_interval_for_extreme_inputs():
    torch.manual_seed(0)
    snr = SNRAware()
    x = lmfb(0)
    for weight, bias in ((1e3, 0.0), (-1e3, 0.0), (1.0, 1e6), (1.0, -1e6), (30.0, 0.5)):
        snr.fc.weight.data = torch.randn(1, 80) * weight
        snr.fc.bias.data.fill_(bias)
        for xa, xb in (
            (x, -x),
            (x * 1e30, x),
            (x * 1e-30, x * 1e30),
            (x, torch.zeros_like(x)),
            (torch.zeros_like(x),) * 2,
            (x, x),
        ):
            _, c = snr(xa, xb, LENGTHS)
            assert torch.isfinite(c).all() and (c >= 0).all() and (c <= 1).all()


def test_x_tilde_is_the_interpolation_of_eq4():
    torch.manual_seed(0)
    snr = SNRAware()
    snr.fc.weight.data.normal_(0, 0.05)
    x, xe = lmfb(0), lmfb(1)
    x_tilde, c = snr(x, xe, LENGTHS)
    assert not torch.allclose(c, torch.full_like(c, 0.5))
    w = c[:, None, None]
    assert close(x_tilde, pad(w * x + (1 - w) * xe, LENGTHS))


def test_cosine_over_valid_frames_only():
    torch.manual_seed(0)
    snr = SNRAware()
    snr.fc.weight.data.normal_(0, 0.5)
    x, xe = lmfb(0), lmfb(1)
    d = snr.similarity(x, xe)
    for i, n in enumerate(LENGTHS.tolist()):
        assert close(d[i], F.cosine_similarity(x[i, :n], xe[i, :n], dim=0))
    x_tilde, c = snr(x, xe, LENGTHS)
    x_tilde_g, c_g = snr(garbage(x, LENGTHS), garbage(xe, LENGTHS), LENGTHS)
    assert torch.equal(c, c_g) and torch.equal(x_tilde, x_tilde_g)


# ---------------------------------------------------------------- encoders


@pytest.mark.parametrize("encoder", ["resnet", "cnn6"])
def test_encoder_output_size(encoder):
    assert ENCODERS[encoder]().out_dim == 256
    enc = ENCODERS[encoder](width=WIDTH).eval()
    assert enc(lmfb(0), LENGTHS).shape == (4, 8 * WIDTH)


@pytest.mark.parametrize("encoder", ["resnet", "cnn6"])
def test_encoder_ignores_padding_and_cropping(encoder):
    torch.manual_seed(0)
    enc = ENCODERS[encoder](width=WIDTH).eval()
    randomise_bn(enc)
    x = lmfb(0)
    with torch.no_grad():
        ref = enc(x, LENGTHS)
        assert torch.isfinite(ref).all()
        assert close(enc(garbage(x, LENGTHS), LENGTHS), ref)
        for t in (70, 80):  # cropped to max(lengths), and rounded up to a multiple of 16
            assert close(enc(x[:, :t], LENGTHS), ref)
        for i, n in enumerate(LENGTHS.tolist()):  # alone, cropped to its own length
            assert close(enc(x[i : i + 1, :n], LENGTHS[i : i + 1]), ref[i : i + 1])


@pytest.mark.parametrize("encoder", ["resnet", "cnn6"])
def test_training_statistics_come_from_valid_frames_only(encoder):
    """Masked BatchNorm: in train mode, padding changes neither h, nor the gradients, nor the
    running statistics. (CNN6 only under garbage: cropping changes its dropout masks.)"""
    x = lmfb(0)
    runs = []
    for feats in (x, garbage(x, LENGTHS), x[:, :70])[: 3 if encoder == "resnet" else 2]:
        torch.manual_seed(0)
        enc = ENCODERS[encoder](width=WIDTH).train()
        h = enc(feats, LENGTHS)
        h.square().sum().backward()
        runs.append({"h": h.detach(), **enc.state_dict(), **{f"grad {k}": p.grad for k, p in enc.named_parameters()}})
    for run in runs[1:]:
        for k, v in runs[0].items():  # float sums over a different layout: 1e-4
            assert torch.allclose(run[k].float(), v.float(), rtol=1e-4, atol=1e-4), k


def test_masked_batchnorm_is_batchnorm_when_nothing_is_padded():
    torch.manual_seed(0)
    ours, ref = MaskedBatchNorm(5), torch.nn.BatchNorm2d(5)
    x = torch.randn(3, 5, 7, 4) * 3 + 1
    assert close(ours(x, torch.full((3,), 7)), ref(x))
    assert all(
        close(a.float(), b.float()) for a, b in zip(ours.state_dict().values(), ref.state_dict().values(), strict=False)
    )


def test_deltas_match_kaldi_regression_with_edge_replication():
    x = lmfb(0)
    d = deltas(x, LENGTHS)
    for i, n in enumerate(LENGTHS.tolist()):
        u = F.pad(x[i, :n].T[None], (2, 2), mode="replicate")[0].T  # [n + 4, F]
        ref = (u[3:-1] - u[1:-3] + 2 * (u[4:] - u[:-4])) / 10
        assert close(d[i, :n], ref)
    assert (d[0, 70:] == 0).all() and (d[1, 23:] == 0).all()


# ---------------------------------------------------------------- bridge, eq. (6)


def test_film_bridge_formula_and_identity_start():
    torch.manual_seed(0)
    bridge = FiLMBridge(8)
    h, c = torch.randn(3, 8), torch.rand(3)
    assert torch.equal(bridge(h, c), h)
    for p in bridge.parameters():
        p.data.normal_()
    scale = bridge.fc1.weight[:, 0] * c[:, None] + bridge.fc1.bias
    shift = bridge.fc2.weight[:, 0] * c[:, None] + bridge.fc2.bias
    assert close(bridge(h, c), scale * h + shift)


# ---------------------------------------------------------------- losses, eq. (5), (7), (8)


def batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": lmfb(seed), "xe": lmfb(seed + 1), "xs": lmfb(seed + 2), "y": torch.randint(0, 4, (4,), generator=g)}


def test_low_level_loss_is_mse_over_valid_frames():
    b = batch()
    loss = low_level_loss(b["x"], b["xs"], LENGTHS)
    valid = torch.cat([(b["x"][i, :n] - b["xs"][i, :n]).flatten() for i, n in enumerate(LENGTHS.tolist())])
    assert close(loss, valid.pow(2).mean())
    assert torch.equal(low_level_loss(b["x"], garbage(b["xs"], LENGTHS), LENGTHS), loss)


def test_total_loss_is_eq8():
    torch.manual_seed(0)
    b = batch()
    student, teacher = system("trnet"), system("baseline-c")
    out = student(b["x"], b["xe"], LENGTHS)
    h_s = teacher.embed(b["xs"], LENGTHS)
    losses = compute_losses(out, b["y"], b["xs"], LENGTHS, h_s, student.cfg)
    ce = F.cross_entropy(out.logits, b["y"])
    low = low_level_loss(out.x_tilde, b["xs"], LENGTHS)
    high = F.mse_loss(out.h_tilde, h_s)
    assert close(losses["ce"], ce) and close(losses["low"], low) and close(losses["high"], high)
    assert close(losses["total"], ce + 0.5 * low + 0.5 * high)


@pytest.mark.parametrize("name", ["trnet-wo-low", "trnet-wo-high", "baseline-e"])
def test_zero_weighted_terms_are_not_computed(name):
    model, b = system(name), batch()
    cfg = model.cfg
    out = model(b["x"], b["xe"], LENGTHS)
    # a term with weight 0 needs no target: it is not computed at all
    x_s = b["xs"] if cfg.alpha else None
    h_s = torch.randn_like(out.h) if cfg.beta else None
    losses = compute_losses(out, b["y"], x_s, LENGTHS, h_s, cfg)
    assert set(losses) == {"total", "ce", "low", "high", "coef"} and losses["coef"] == 0  # gamma = 0
    assert (cfg.alpha == 0) == (losses["low"] == 0) and (cfg.beta == 0) == (losses["high"] == 0)
    assert close(losses["total"], losses["ce"] + cfg.alpha * losses["low"] + cfg.beta * losses["high"])


def test_without_l_high_there_is_no_bridge_and_no_teacher():
    model = system("trnet-wo-high")
    assert not model.cfg.teacher and model.bridge is None
    assert not any(k.startswith("bridge.") for k in model.state_dict())
    b = batch()
    out = model(b["x"], b["xe"], LENGTHS)
    assert out.h_tilde is None and out.c is not None
    compute_losses(out, b["y"], b["xs"], LENGTHS, None, model.cfg)["total"].backward()


# ---------------------------------------------------------------- systems

SYSTEMS = configs.names(paper_only=True)  # the paper's Table 1


@pytest.mark.parametrize("encoder", ["resnet", "cnn6"])
@pytest.mark.parametrize("name", SYSTEMS)
def test_system_ignores_padding_and_cropping(name, encoder):
    torch.manual_seed(0)
    model = system(name, encoder).eval()
    randomise_bn(model)
    for p in model.parameters():  # move SNR-aware and bridge off their neutral start
        p.data.add_(torch.randn_like(p) * 0.01)
    b = batch()
    with torch.no_grad():
        ref = model(b["x"], b["xe"], LENGTHS)
        variants = [
            model(garbage(b["x"], LENGTHS), garbage(b["xe"], LENGTHS), LENGTHS),
            model(b["x"][:, :70], b["xe"][:, :70], LENGTHS),
            model(b["x"][:, :80], b["xe"][:, :80], LENGTHS),
        ]
    for out in variants:
        for field in ("logits", "h", "h_tilde", "c"):
            a, r = getattr(out, field), getattr(ref, field)
            assert (a is None) == (r is None) and (r is None or close(a, r)), field
        if ref.x_tilde is not None:
            assert close(out.x_tilde, ref.x_tilde[:, : out.x_tilde.shape[1]])


@pytest.mark.parametrize("encoder", ["resnet", "cnn6"])
@pytest.mark.parametrize("name", SYSTEMS)
def test_every_system_trains_one_step(name, encoder):
    torch.manual_seed(0)
    model = system(name, encoder).train()
    teacher = (
        build_teacher(system("baseline-c", encoder).state_dict(), teacher_config(model.cfg))
        if model.cfg.teacher
        else None
    )
    b = batch()
    out = model(b["x"][:, :80], b["xe"][:, :80], LENGTHS)
    h_s = teacher.embed(b["xs"][:, :80], LENGTHS) if teacher is not None else None
    loss = compute_losses(out, b["y"], b["xs"][:, :80], LENGTHS, h_s, model.cfg)["total"]
    assert math.isfinite(loss.item())
    loss.backward()
    for name_, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name_


def test_teacher_is_frozen_and_outside_the_student():
    torch.manual_seed(0)
    student = system("trnet")
    teacher = build_teacher(system("baseline-c").state_dict(), teacher_config(student.cfg))
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    teacher.train()
    torch.nn.ModuleList([teacher]).train()  # a parent's .train() does not wake it either
    assert not teacher.training and not any(m.training for m in teacher.modules())

    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-2)
    b = batch()
    student.train()
    for _ in range(2):
        out = student(b["x"], b["xe"], LENGTHS)
        h_s = teacher.embed(b["xs"], LENGTHS)
        assert not h_s.requires_grad
        losses = compute_losses(out, b["y"], b["xs"], LENGTHS, h_s, student.cfg)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_inference_model_has_no_teacher():
    student = system("trnet")
    assert {k.split(".")[0] for k in student.state_dict()} == {"snr", "encoder", "bridge", "classifier"}
    assert not any(isinstance(m, Teacher) for m in student.modules())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(student) == n(system("baseline-e")) + (80 + 1) + 2 * 2 * 8 * WIDTH  # + SNR-aware FC + bridge


def test_same_seed_same_init():
    states = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        states.append(system("trnet", "cnn6").state_dict())
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())
    assert not all(torch.equal(v, states[2][k]) for k, v in states[0].items())


# ---------------------------------------------------------------- configs

EXPECTED = {  # SPEC §6: input, trained on, alpha, beta, bridge, teacher
    "baseline-c": ("x", "clean", 0.0, 0.0, False, False),
    "baseline-n": ("x", "noisy", 0.0, 0.0, False, False),
    "baseline-e": ("xe", "noisy", 0.0, 0.0, False, False),
    "baseline-ne": ("ne", "noisy", 0.0, 0.0, False, False),
    "trnet": ("trnet", "noisy", 0.5, 0.5, True, True),
    "trnet-wo-low": ("trnet", "noisy", 0.0, 0.5, True, True),
    "trnet-wo-high": ("trnet", "noisy", 0.5, 0.0, False, False),
}


def test_configs_are_the_seven_systems():
    assert SYSTEMS == tuple(EXPECTED)
    for name, expected in EXPECTED.items():
        cfg = load_config(name)
        assert cfg.name == name and cfg.encoder == "resnet" and cfg.width == 32
        assert (cfg.input, cfg.train_conditions, cfg.alpha, cfg.beta, cfg.bridge, cfg.teacher) == expected
        tc = load_training_config(name)
        assert (tc.epochs, tc.batch_size, tc.lr, tc.patience) == (80, 32, 1e-3, 10)
    assert teacher_config(replace(load_config("trnet"), encoder="cnn6", width=8)) == replace(
        load_config("baseline-c"), encoder="cnn6", width=8
    )


def test_config_from_path_and_invalid_configs(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(
        'input = "xe"\ntrain_conditions = "noisy"\nalpha = 0.0\nbeta = 0.0\n'
        'bridge = false\nteacher = false\nencoder = "cnn6"\n'
    )
    cfg = load_config(path)
    assert cfg.name == "mine" and cfg.encoder == "cnn6" and load_training_config(path).epochs == 80
    with pytest.raises(ValueError, match="teacher"):
        replace(cfg, beta=0.5)
    with pytest.raises(ValueError, match="alpha"):
        replace(cfg, alpha=0.5)
    path.write_text(path.read_text() + "dropout = 0.1\n")
    with pytest.raises(ValueError, match="dropout"):
        load_config(path)
    with pytest.raises(ValueError, match="known systems: baseline-c"):
        load_config("no-such-system")
