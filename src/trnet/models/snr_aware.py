"""SNR-aware module (paper §3.2, eq. (1)-(4)): from the noisy and the enhanced LMFB, estimate a
coefficient c in [0, 1] that grows with the SNR, and mix the two spectrograms with it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trnet.models.masking import zero_padding


class SNRAware(nn.Module):
    def __init__(self, n_mels: int = 80, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.fc = nn.Linear(n_mels, 1)  # eq. (2), FC: F -> 1
        # c starts at 0.5 for every input: inside (0, 1), where Hardtanh passes gradient, and
        # X~ starts as an even mix of X and X_e. With PyTorch's default init, FC(d) ~ N(0, 0.58)
        # (80 weights ~ U(+-1/sqrt(80)), and d_i ~ 1 for every utterance since LMFB columns are
        # mostly positive), so about half of the seeds would start with c clamped at 0 for every
        # utterance: the FC would get no gradient and X~ = X_e for good.
        nn.init.zeros_(self.fc.weight)
        nn.init.constant_(self.fc.bias, 0.5)

    def similarity(self, x: Tensor, xe: Tensor) -> Tensor:
        """Eq. (1): d_i = cosine similarity of the i-th frequency columns of X and X_e over the
        valid frames -> d [B, F]. Inputs [B, T, F] must be zero beyond each length."""
        # the cosine is invariant to each column's scale: dividing by the column's max |value|
        # first keeps the squared norms in [1, T] for any finite input (no overflow, no NaN)
        x = x / x.abs().amax(1, keepdim=True).clamp_min(self.eps)
        xe = xe / xe.abs().amax(1, keepdim=True).clamp_min(self.eps)
        norms = torch.linalg.vector_norm(x, dim=1) * torch.linalg.vector_norm(xe, dim=1)
        return (x * xe).sum(1) / norms.clamp_min(self.eps)

    def forward(self, x: Tensor, xe: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """X, X_e [B, T, F] -> (X~ [B, T, F], zero beyond each length; c [B])."""
        x, xe = zero_padding(x, lengths, 1), zero_padding(xe, lengths, 1)
        c = F.hardtanh(self.fc(self.similarity(x, xe)).squeeze(1), 0.0, 1.0)  # eq. (2)-(3)
        w = c[:, None, None]
        return w * x + (1 - w) * xe, c  # eq. (4)
