"""Diagnostics of the SNR-aware module (docs/design.md §6.2): the least-squares ("oracle") coefficient
and the rank correlation between estimated c and the SNR. Pure functions: no model, no I/O."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import Tensor

from trnet.models.masking import zero_padding


def oracle_c(x: Tensor, xe: Tensor, xs: Tensor, lengths: Tensor, eps: float = 1e-10) -> Tensor:
    """The c in [0, 1] that minimises ||c X + (1 - c) X_e - X_s||^2 over each utterance's valid
    frames (the best any c can do for eq. (5)); X, X_e, X_s [B, T, F], lengths [B] -> [B].

    With D = X - X_e and R = X_s - X_e, the minimiser is <D, R> / <D, D>, then clipped to
    [0, 1]. Where X == X_e (D = 0: the SE changed nothing) every c gives the same X~; the
    oracle is then defined as 1 (trust the noisy input). No gradient flows through it."""
    with torch.no_grad():
        d = zero_padding(x.float() - xe.float(), lengths, 1)
        r = zero_padding(xs.float() - xe.float(), lengths, 1)
        num = (d * r).flatten(1).sum(1)
        den = (d * d).flatten(1).sum(1)
        ref = zero_padding(xs.float(), lengths, 1).pow(2).flatten(1).sum(1) + 1.0
        degenerate = den <= eps * ref  # X == X_e (up to rounding)
        c = torch.where(degenerate, torch.ones_like(num), num / den.clamp_min(eps))
        return c.clamp(0.0, 1.0)


def c_snr_spearman(c: np.ndarray, snr: np.ndarray) -> float:
    """Spearman rho between estimated c and the SNR (dB) of each utterance's condition; clean is
    +inf, ranked above every SNR (ties averaged, scipy.stats.spearmanr). NaN when either side
    is constant (e.g. c stuck at 0 or 1: no ranking at all)."""
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    snr = np.asarray(snr, dtype=np.float64).reshape(-1)
    if len(c) != len(snr):
        raise ValueError(f"{len(c)} values of c but {len(snr)} SNRs")
    finite = snr[np.isfinite(snr)]
    snr = np.where(np.isinf(snr), (finite.max() if len(finite) else 0.0) + 1.0, snr)  # only the order matters
    if len(c) < 2 or np.ptp(c) == 0 or np.ptp(snr) == 0:
        return float("nan")
    return float(spearmanr(c, snr).statistic)
