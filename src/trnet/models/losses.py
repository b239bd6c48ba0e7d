"""Training objective (paper §3.2, §3.4, §3.5): L = L_task + alpha L_low + beta L_high, eq. (8)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from trnet.models.masking import zero_padding
from trnet.models.system import SystemConfig, SystemOutput


def low_level_loss(x_tilde: Tensor, x_s: Tensor, lengths: Tensor) -> Tensor:
    """Eq. (5): mean squared error between X~ and X_s [B, T, F] over the valid frames of the
    batch (padding counts neither in the sum nor in the number of elements)."""
    err = zero_padding(x_tilde - x_s, lengths, 1)
    return err.pow(2).sum() / (lengths.sum() * x_tilde.shape[2]).clamp_min(1)


def high_level_loss(h_tilde: Tensor, h_s: Tensor) -> Tensor:
    """Eq. (7): mean squared error between the calibrated h~ and the teacher's h_s [B, D]."""
    return F.mse_loss(h_tilde, h_s)


def compute_losses(
    out: SystemOutput, labels: Tensor, x_s: Tensor | None, lengths: Tensor, h_s: Tensor | None, cfg: SystemConfig
) -> dict[str, Tensor]:
    """Eq. (8) with cfg.alpha and cfg.beta -> {total, ce, low, high}. A term whose weight is 0 is
    not computed (x_s / h_s may then be None) and reads 0. L_high compares h~, or h for a
    system without bridge."""
    ce = F.cross_entropy(out.logits, labels)  # L_task
    zero = ce.new_zeros(())
    low = low_level_loss(out.x_tilde, x_s, lengths) if cfg.alpha else zero
    high = high_level_loss(out.h if out.h_tilde is None else out.h_tilde, h_s) if cfg.beta else zero
    return {"total": ce + cfg.alpha * low + cfg.beta * high, "ce": ce, "low": low, "high": high}
