"""Exact masking of padded frames. Every model input is [B, T, ...] with a valid length per
utterance; frames at index >= length are padding. The helpers here keep padding from reaching
any output, so a batch gives the same result whether its padding holds zeros, garbage, or is
cropped away (training crops each batch to its longest utterance)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from trnet.features import frame_mask


def valid_mask(x: Tensor, lengths: Tensor, dim: int) -> Tensor:
    """Boolean mask broadcastable to x: True at time steps (along `dim`) below each length."""
    shape = [1] * x.dim()
    shape[0], shape[dim] = x.shape[0], x.shape[dim]
    return frame_mask(lengths, x.shape[dim]).view(shape)


def zero_padding(x: Tensor, lengths: Tensor, dim: int) -> Tensor:
    """x with every time step at index >= length (along `dim`) set to 0, NaN and inf included."""
    return x.masked_fill(~valid_mask(x, lengths, dim), 0.0)


def zero_finite_padding(x: Tensor, lengths: Tensor, dim: int) -> Tensor:
    """`zero_padding` for a tensor whose padding is finite (inside the network: computed from an
    input that was zero padded), as a product with a 0/1 mask: the same values (x * 1 = x, and a
    finite x * 0 = +-0, which equals 0 in every later sum, ReLU and comparison) and gradients
    (grad * 1, grad * 0), at a fifth of `masked_fill`'s cost on the CPU, where masking was a
    sixth of a training step (docs/benchmarks.md). Not for NaN or inf: NaN * 0 is NaN."""
    return x * valid_mask(x, lengths, dim).to(x.dtype)


def halve(lengths: Tensor) -> Tensor:
    """Valid length after a stride-2 conv (kernel 5, padding 2; or 1x1, no padding) or a
    ceil-mode 2x pool: floor((L - 1) / 2) + 1 = ceil(L / 2)."""
    return (lengths - 1) // 2 + 1


class MaskedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d over [B, C, T, F] whose training statistics (and so its running statistics)
    come from the valid time steps only: padding is neither counted nor able to shift them.
    In eval mode it is the plain per-element affine map of nn.BatchNorm2d; with `functional`
    (set on the stacked models of `trnet.training.stacked`) that map is written out in tensor
    operations, because under torch.func.vmap on CUDA `F.batch_norm` asks for a memory format
    that vmap cannot answer (torch 2.11: "NYI: querying is_contiguous inside of vmap")."""

    functional = False

    def __init__(self, num_features: int, finite_padding: bool = False) -> None:
        super().__init__(num_features)
        self.finite_padding = finite_padding  # padding holds finite numbers: mask by a product

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # type: ignore[override]
        if not self.training:
            if self.functional:
                scale = self.weight * torch.rsqrt(self.running_var + self.eps)
                return (x - self.running_mean[:, None, None]) * scale[:, None, None] + self.bias[:, None, None]
            return super().forward(x)
        n = valid_mask(x, lengths, 2).sum() * x.shape[3]  # valid elements per channel
        zeroed = zero_finite_padding if self.finite_padding else zero_padding  # the same numbers
        x0 = zeroed(x, lengths, 2)
        mean = x0.sum((0, 2, 3)) / n
        var = (zeroed(x0 - mean[:, None, None], lengths, 2) ** 2).sum((0, 2, 3)) / n
        with torch.no_grad():  # lerp + copy_: the numbers of lerp_, and torch.func.vmap has a rule for it
            unbiased = var * n / (n - 1).clamp_min(1)  # as nn.BatchNorm
            self.running_mean.copy_(torch.lerp(self.running_mean, mean, self.momentum))
            self.running_var.copy_(torch.lerp(self.running_var, unbiased, self.momentum))
            self.num_batches_tracked.add_(1)
        y = (x0 - mean[:, None, None]) * torch.rsqrt(var[:, None, None] + self.eps)
        return y * self.weight[:, None, None] + self.bias[:, None, None]
