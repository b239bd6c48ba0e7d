"""SNR-aware module (paper §3.2, eq. (1)-(4)): from the noisy and the enhanced LMFB, estimate a
coefficient c in [0, 1] that grows with the SNR, and mix the two spectrograms with it.

Options (SystemConfig keys `snr_input`, `snr_init`; the paper's behaviour is the default):

    snr_input "lmfb"       eq. (1) on the LMFB itself (paper)
              "lmfb-std"   eq. (1) on the LMFB standardised per mel bin, (X - mu) / sigma, with
                           mu, sigma from the training speakers only (buffers `input_mean`,
                           `input_std`, saved with the weights and used unchanged at inference
                           and in export; the trainer sets them, batches.snr_input_stats).
                           The cosine ignores each column's scale, so mu is what matters: it
                           removes the large positive offset every LMFB column shares, which
                           keeps eq. (1) near 1 for every utterance on the raw LMFB.
              "mel-power"  eq. (1) on the linear mel power exp(X)
    snr_init  "project"    FC weights 0, bias 0.5: c = 0.5 for every input at the start
              "pytorch"    PyTorch's default nn.Linear init

X~ (eq. (4)) always mixes the LMFB X and X_e themselves; the options change only what c is
estimated from, and c is computed from X and X_e alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trnet.features import frame_mask
from trnet.models.masking import zero_padding

SNR_INPUTS = ("lmfb", "lmfb-std", "mel-power")
SNR_INITS = ("project", "pytorch")
NEEDS_STATS = ("lmfb-std",)  # inputs whose statistics come from the training speakers
C_TARGETS = ("oracle", "snr")  # the target c* of the auxiliary loss L_c (SystemConfig.c_target)
SNR_FULL_DB = 25.0  # c_target "snr": c* = clip(SNR / 25 dB, 0, 1), clean 1 (20 dB -> 0.8, 0 dB -> 0)


def snr_target(snr_db: Tensor) -> Tensor:
    """c* of c_target "snr" from each example's known SNR in dB (+inf for clean)."""
    return (snr_db / SNR_FULL_DB).clamp(0.0, 1.0)


class SNRAware(nn.Module):
    def __init__(self, n_mels: int = 80, eps: float = 1e-8, input: str = "lmfb", init: str = "project") -> None:
        super().__init__()
        if input not in SNR_INPUTS:
            raise ValueError(f"snr_input {input!r} is not one of {SNR_INPUTS}")
        if init not in SNR_INITS:
            raise ValueError(f"snr_init {init!r} is not one of {SNR_INITS}")
        self.eps = eps
        self.input = input
        self.fc = nn.Linear(n_mels, 1)  # eq. (2), FC: F -> 1
        if init == "project":
            # c starts at 0.5 for every input: inside (0, 1), where Hardtanh passes gradient, and
            # X~ starts as an even mix of X and X_e. With PyTorch's default init, FC(d) ~ N(0, 0.58)
            # (80 weights ~ U(+-1/sqrt(80)), and d_i ~ 1 for every utterance since LMFB columns are
            # mostly positive), so about half of the seeds would start with c clamped at 0 for every
            # utterance: the FC would get no gradient and X~ = X_e for good.
            nn.init.zeros_(self.fc.weight)
            nn.init.constant_(self.fc.bias, 0.5)
        if input in NEEDS_STATS:
            # identity until set_input_stats: a module built for loading gets them from the weights
            self.register_buffer("input_mean", torch.zeros(n_mels))
            self.register_buffer("input_std", torch.ones(n_mels))

    @property
    def needs_stats(self) -> bool:
        """Whether this module's input is standardised with training-speaker statistics."""
        return self.input in NEEDS_STATS

    @torch.no_grad()
    def set_input_stats(self, mean: Tensor, std: Tensor) -> None:
        """Per-mel-bin mean and std of the training speakers' LMFB (see snr_input_stats)."""
        if not self.needs_stats:
            raise ValueError(f"snr_input {self.input!r} uses no statistics")
        mean, std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        if mean.shape != self.input_mean.shape or std.shape != self.input_std.shape:
            raise ValueError(
                f"expected statistics of shape {tuple(self.input_mean.shape)}, "
                f"got {tuple(mean.shape)} and {tuple(std.shape)}"
            )
        if not (torch.isfinite(mean).all() and torch.isfinite(std).all() and (std > 0).all()):
            raise ValueError("input statistics must be finite with std > 0")
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    def transform(self, x: Tensor, lengths: Tensor) -> Tensor:
        """The representation eq. (1) compares (snr_input), zero beyond each length."""
        if self.input == "lmfb":
            return x
        if self.input == "lmfb-std":
            return zero_padding((x - self.input_mean) / self.input_std, lengths, 1)
        # mel-power: exp(X) per column divided by exp(max over valid frames); the cosine ignores
        # each column's scale, and the shift keeps exp from overflowing
        valid = frame_mask(lengths, x.shape[1])[..., None]
        peak = x.masked_fill(~valid, float("-inf")).amax(1, keepdim=True)
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))
        return zero_padding(torch.exp(x - peak), lengths, 1)

    def similarity(self, x: Tensor, xe: Tensor) -> Tensor:
        """Eq. (1): d_i = cosine similarity of the i-th frequency columns of X and X_e over the
        valid frames -> d [B, F]. Inputs [B, T, F] must be zero beyond each length."""
        # the cosine is invariant to each column's scale: dividing by the column's max |value|
        # first keeps the squared norms in [1, T] for any finite input (no overflow, no NaN)
        x = x / x.abs().amax(1, keepdim=True).clamp_min(self.eps)
        xe = xe / xe.abs().amax(1, keepdim=True).clamp_min(self.eps)
        norms = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(xe, dim=1)
        return (x * xe).sum(1) / norms.clamp_min(self.eps)

    def features(self, x: Tensor, xe: Tensor, lengths: Tensor) -> Tensor:
        """d [B, F], the FC's input, from X and X_e [B, T, F] (padding may hold anything)."""
        x, xe = zero_padding(x, lengths, 1), zero_padding(xe, lengths, 1)
        return self.similarity(self.transform(x, lengths), self.transform(xe, lengths))

    def forward(self, x: Tensor, xe: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """X, X_e [B, T, F] -> (X~ [B, T, F], zero beyond each length; c [B])."""
        c = F.hardtanh(self.fc(self.features(x, xe, lengths)).squeeze(1), 0.0, 1.0)  # eq. (2)-(3)
        x, xe = zero_padding(x, lengths, 1), zero_padding(xe, lengths, 1)
        w = c[:, None, None]
        return w * x + (1 - w) * xe, c  # eq. (4)
