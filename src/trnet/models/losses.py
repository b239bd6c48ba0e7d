"""Training objective (paper §3.2, §3.4, §3.5): L = L_task + alpha L_low + beta L_high, eq. (8),
plus gamma L_c (beyond the paper, docs/design.md §6.2; gamma = 0 by default)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from trnet.models.diagnostics import oracle_c
from trnet.models.masking import zero_padding
from trnet.models.snr_aware import snr_target
from trnet.models.system import SystemConfig, SystemOutput


def low_level_loss(x_tilde: Tensor, x_s: Tensor, lengths: Tensor) -> Tensor:
    """Eq. (5): mean squared error between X~ and X_s [B, T, F] over the valid frames of the
    batch (padding counts neither in the sum nor in the number of elements)."""
    err = zero_padding(x_tilde - x_s, lengths, 1)
    return err.pow(2).sum() / (lengths.sum() * x_tilde.shape[2]).clamp_min(1)


def high_level_loss(h_tilde: Tensor, h_s: Tensor) -> Tensor:
    """Eq. (7): mean squared error between the calibrated h~ and the teacher's h_s [B, D]."""
    return F.mse_loss(h_tilde, h_s)


def coefficient_loss(c: Tensor, target: Tensor) -> Tensor:
    """L_c = mean over the batch of (c - c*)^2 with a constant target c* (no gradient flows
    into it). Training-only: at inference c is still computed from X and X_e alone.

    c* = oracle_c(X, X_e, X_s), the least-squares c of eq. (5) per utterance ("oracle"): L_low
    has the same per-utterance minimiser but weighs each utterance by ||X - X_e||^2, so the
    utterances that SE changes least (clean) pull c least; L_c weighs each the same.
    c* = snr_target(SNR) ("snr"): c is taught the known SNR of the training condition."""
    return (c - target.detach()).pow(2).mean()


def compute_losses(
    out: SystemOutput,
    labels: Tensor,
    x_s: Tensor | None,
    lengths: Tensor,
    h_s: Tensor | None,
    cfg: SystemConfig,
    x: Tensor | None = None,
    xe: Tensor | None = None,
    snr_db: Tensor | None = None,
    label_smoothing: float = 0.0,
) -> dict[str, Tensor]:
    """Eq. (8) with cfg.alpha and cfg.beta, plus cfg.gamma L_c -> {total, ce, low, high, coef}.
    A term whose weight is 0 is not computed (x_s / h_s / x / xe / snr_db may then be None) and
    reads 0. L_high compares h~, or h for a system without bridge. L_c needs X and X_e
    (c_target "oracle") or each example's SNR in dB, +inf for clean (c_target "snr")."""
    # L_task; label smoothing (a training lever, docs/design.md §7) only when asked for
    ce = (
        F.cross_entropy(out.logits, labels, label_smoothing=label_smoothing)
        if label_smoothing
        else F.cross_entropy(out.logits, labels)
    )
    zero = ce.new_zeros(())
    low = low_level_loss(out.x_tilde, x_s, lengths) if cfg.alpha else zero
    high = high_level_loss(out.h if out.h_tilde is None else out.h_tilde, h_s) if cfg.beta else zero
    gamma = cfg.gamma
    coef = zero
    if gamma and cfg.c_target == "oracle":
        if x is None or xe is None or x_s is None:
            raise ValueError("gamma > 0 with c_target 'oracle' needs X, X_e and X_s: pass x=, xe= to compute_losses")
        coef = coefficient_loss(out.c, oracle_c(x, xe, x_s, lengths))
    elif gamma:
        if snr_db is None:
            raise ValueError("gamma > 0 with c_target 'snr' needs each example's SNR: pass snr_db= to compute_losses")
        coef = coefficient_loss(out.c, snr_target(snr_db.to(out.c)))
    total = ce + cfg.alpha * low + cfg.beta * high + gamma * coef
    return {"total": total, "ce": ce, "low": low, "high": high, "coef": coef}
