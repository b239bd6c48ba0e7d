"""Acoustic encoders of the SER module (paper §3.3): LMFB [B, T, F] + valid lengths [B] ->
utterance representation h [B, D], D = 8 * width (256 at the default width 32).

- `ResNetEncoder` (the default, paper §3.3/§4.2): four residual blocks, 5x5 kernels, stride 2.
- `CNN6Encoder` (the authors' code): PANNs-style CNN6 on LMFB + delta + delta-delta.

Both start with a BatchNorm per mel bin (PANNs' bn0; the raw LMFB has a large offset and
the SNR-aware module hands over un-normalised X~) and are exact under padding: after the
input normalisation and after every layer the time steps beyond the (downsampled) length are
zeroed, and batch statistics use valid frames only. So in eval mode h is the same whether
the padding holds zeros, garbage, or the batch is cropped to any T >= max(lengths)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trnet.features import frame_mask
from trnet.models.masking import MaskedBatchNorm, halve, zero_finite_padding, zero_padding


class InputNorm(nn.Module):
    """BatchNorm per (input channel, mel bin) over valid frames; [B, C, T, F] -> same, zero padded."""

    def __init__(self, channels: int, n_mels: int) -> None:
        super().__init__()
        self.bn = MaskedBatchNorm(channels * n_mels)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        b, c, t, f = x.shape
        y = self.bn(x.transpose(2, 3).reshape(b, c * f, t, 1), lengths)
        return zero_padding(y.reshape(b, c, f, t).transpose(2, 3), lengths, 2)


class AttentionPooling(nn.Module):
    """Attention pooling over time (Mirsamadi et al. 2017, paper ref. [23]): learned scores per
    frame, softmax over the valid frames, weighted sum of the frame values. `per_dim=False`: one
    score per frame (§3.3, ResNet); `per_dim=True`: one score per frame and output dimension, as
    the authors' CNN6 (PANNs' AttBlock without its unused BN). Values are the frames themselves,
    or their projection to out_dim when in_dim != out_dim (CNN6: 512 -> 256)."""

    def __init__(self, in_dim: int, out_dim: int, per_dim: bool = False) -> None:
        super().__init__()
        self.value = nn.Linear(in_dim, out_dim) if in_dim != out_dim else nn.Identity()
        self.score = nn.Linear(in_dim, out_dim if per_dim else 1)

    def forward(self, frames: Tensor, lengths: Tensor) -> Tensor:
        """frames [B, T, in_dim] -> [B, out_dim]; lengths >= 1."""
        valid = frame_mask(lengths, frames.shape[1]).unsqueeze(2)
        weights = self.score(frames).masked_fill(~valid, float("-inf")).softmax(1)  # [B, T, 1 or out_dim]
        return (weights * self.value(frames)).sum(1)


class ResidualBlock(nn.Module):
    """conv5x5/2 -> BN -> ReLU -> conv5x5 -> BN, plus a conv1x1/2 -> BN shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 5, stride=2, padding=2, bias=False)
        # every input of a block is zero padded, so the padding inside it is finite
        self.bn1 = MaskedBatchNorm(c_out, finite_padding=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 5, padding=2, bias=False)
        self.bn2 = MaskedBatchNorm(c_out, finite_padding=True)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
        self.shortcut_bn = MaskedBatchNorm(c_out, finite_padding=True)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C, T, F], zero beyond lengths -> ([B, C', ceil(T/2), ceil(F/2)], halved lengths)."""
        lengths = halve(lengths)
        y = zero_finite_padding(F.relu(self.bn1(self.conv1(x), lengths)), lengths, 2)
        y = self.bn2(self.conv2(y), lengths) + self.shortcut_bn(self.shortcut(x), lengths)
        return zero_finite_padding(F.relu(y), lengths, 2), lengths


class ResNetEncoder(nn.Module):
    """Residual CNN of §3.3: channels (32, 64, 128, 256) * width/32, mean over frequency,
    attention pooling over time; h has the last block's channel count."""

    def __init__(self, width: int = 32, n_mels: int = 80) -> None:
        super().__init__()
        channels = [width * k for k in (1, 2, 4, 8)]
        self.norm = InputNorm(1, n_mels)
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip([1, *channels], channels, strict=False))
        self.pool = AttentionPooling(channels[-1], channels[-1])
        self.out_dim = channels[-1]

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.clamp_min(1)  # an empty utterance reads as one all-zero frame
        x = self.norm(feats.unsqueeze(1), lengths)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.pool(x.mean(3).transpose(1, 2), lengths)

    def classifier(self, n_classes: int) -> nn.Module:
        """§3.3: one FC layer (the softmax is in the loss)."""
        return nn.Linear(self.out_dim, n_classes)


def deltas(x: Tensor, lengths: Tensor) -> Tensor:
    """Kaldi / torchaudio `compute_deltas` (regression over +-2 frames, divided by 10, edge
    frames replicated) where each utterance ends at its own length; [B, T, F], zero padded."""
    b, t, f = x.shape
    steps = torch.arange(t, device=x.device).expand(b, t)
    last = (lengths - 1)[:, None]

    def frame(idx: Tensor) -> Tensor:  # x at frames idx [B, T], clamped into [0, length - 1]
        return x.gather(1, torch.minimum(idx.clamp_min(0), last).unsqueeze(2).expand(-1, -1, f))

    d = sum(k * (frame(steps + k) - frame(steps - k)) for k in (1, 2))
    return zero_padding(d / 10, lengths, 1)


class ConvBlock(nn.Module):
    """CNN6 block: conv5x5 -> BN -> ReLU -> 2x2 max-pool -> dropout 0.2."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 5, padding=2, bias=False)
        self.bn = MaskedBatchNorm(c_out, finite_padding=True)  # its input is zero padded
        self.dropout = nn.Dropout(0.2)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        x = zero_finite_padding(F.relu(self.bn(self.conv(x), lengths)), lengths, 2)
        # ceil mode keeps an odd last frame; its partner is padding (0) or absent, and ReLU
        # outputs are >= 0, so the max is exact either way and padding stays 0
        x = F.max_pool2d(x, 2, ceil_mode=True)
        return self.dropout(x), halve(lengths)


class CNN6Encoder(nn.Module):
    """The authors' backbone: CNN6 (64-128-256-512 channels at width 32) on LMFB, delta and
    delta-delta as 3 input channels, mean over frequency, attention pooling 512 -> 256.
    Their bn0 shares one BatchNorm per mel bin across the 3 channels; here each channel has its
    own (+320 parameters), since delta features have ~0 mean and a far smaller spread than LMFB."""

    def __init__(self, width: int = 32, n_mels: int = 80) -> None:
        super().__init__()
        channels = [2 * width * k for k in (1, 2, 4, 8)]
        self.norm = InputNorm(3, n_mels)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip([3, *channels], channels, strict=False))
        self.pool = AttentionPooling(channels[-1], channels[-1] // 2, per_dim=True)
        self.out_dim = channels[-1] // 2

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        lengths = lengths.clamp_min(1)  # an empty utterance reads as one all-zero frame
        d = deltas(feats, lengths)
        x = self.norm(torch.stack([feats, d, deltas(d, lengths)], 1), lengths)
        for block in self.blocks:
            x, lengths = block(x, lengths)
        return self.pool(x.mean(3).transpose(1, 2), lengths)

    def classifier(self, n_classes: int) -> nn.Module:
        """The authors' head: FC (256 -> 128) -> BN -> ReLU -> dropout 0.3 -> FC."""
        d = self.out_dim
        return nn.Sequential(
            nn.Linear(d, d // 2), nn.BatchNorm1d(d // 2), nn.ReLU(), nn.Dropout(0.3), nn.Linear(d // 2, n_classes)
        )


ENCODERS: dict[str, type[ResNetEncoder] | type[CNN6Encoder]] = {"resnet": ResNetEncoder, "cnn6": CNN6Encoder}
