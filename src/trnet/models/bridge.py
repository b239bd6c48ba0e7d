"""Bridge module (paper §3.4, eq. (6)): FiLM conditioning of the utterance representation on
the estimated SNR coefficient, h~ = FC1(c) * h + FC2(c)."""

from __future__ import annotations

from torch import Tensor, nn


class FiLMBridge(nn.Module):
    def __init__(self, dim: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(1, dim)  # scale
        self.fc2 = nn.Linear(1, dim)  # shift
        # start as the identity (FC1(c) = 1, FC2(c) = 0 for every c): the classifier and L_high
        # first see the encoder's own h, and the bridge learns only the c-dependent correction
        # it needs. PyTorch's default init (weight and bias ~ U(-1, 1) for fan-in 1) would scale
        # each dimension by a random factor of either sign, many near 0, erasing part of h.
        nn.init.zeros_(self.fc1.weight)
        nn.init.ones_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h [B, D], c [B] -> h~ [B, D] (eq. (6))."""
        c = c[:, None]
        return self.fc1(c) * h + self.fc2(c)
