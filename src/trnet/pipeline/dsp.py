"""The signal processing of `trnet predict` as exportable PyTorch: only matmuls, reshapes,
concatenations and elementwise ops, so that the TorchScript ONNX exporter writes plain ONNX
(MatMul, Reshape, Concat, ...) with a dynamic signal length, and onnxruntime runs it in
bounded memory (docs/design.md §12).

- `Resampler`: soxr HQ at ratio 3 (16 <-> 48 kHz, DFN3's interface) is linear and
  shift-invariant away from nothing: its output is the input convolved with a fixed filter
  per output phase, the signal zero-padded at both ends. The filters are read off soxr itself
  (impulse responses, at export time) and applied blockwise as one matmul per block of 512
  samples against a block-Toeplitz matrix: soxr's output to float32 rounding (tested).
- Frames: hop-aligned reshapes (a signal cut into hop-sized blocks; a frame is consecutive
  blocks side by side), no `unfold`, no Python loop over frames.
- DFTs as matmuls with cosine/sine matrices (in float64 where the spectra feed a log).
"""

from __future__ import annotations

import math

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLOCK = 64  # samples per block of the resampler's matmuls (at 16 kHz): frames hold little more than the filter


def blocks(x: Tensor, size: int, left: int, right: int) -> Tensor:
    """x [N] -> [ceil(N / size), size * (left + 1 + right)]: row b holds blocks b - left ..
    b + right of x (zeros beyond its ends), side by side."""
    n = x.shape[0]
    k = (n + size - 1) // size
    padded = F.pad(x, (left * size, (k + right) * size - n))
    rows = [padded[j * size : (j + k) * size].reshape(k, size) for j in range(left + 1 + right)]
    return torch.cat(rows, dim=1)


def _impulse(up: bool, phase: int, n: int = 16_384) -> tuple[np.ndarray, int]:
    """soxr's response to a unit impulse (at a centre sample of the given phase)."""
    if up:
        e = np.zeros(n, np.float32)
        e[n // 2] = 1
        return soxr.resample(e, 16_000, 48_000, quality="HQ").astype(np.float64), 3 * (n // 2)
    e = np.zeros(3 * n, np.float32)
    e[3 * (n // 2) + phase] = 1
    return soxr.resample(e, 48_000, 16_000, quality="HQ").astype(np.float64), n // 2


class Resampler(nn.Module):
    """soxr HQ between 16 and 48 kHz (`up`: 16 -> 48) as blockwise matmuls: output block b
    (3 BLOCK samples up, BLOCK down) is input blocks b - left .. b + right side by side, times
    a matrix of the filter taps that reach it."""

    def __init__(self, up: bool):
        super().__init__()
        self.up = up
        b = BLOCK
        if up:  # y[q] = sum_n h[q - 3 n] x[n]
            h, centre = _impulse(True, 0)
            taps = {d: float(h[centre + d]) for d in range(-centre, len(h) - centre) if h[centre + d] != 0}
            size, out = b, 3 * b
            # input n = (blk - left) B + i, output q = 3 blk B + r: q - 3 n = r + 3 left B - 3 i
            self.left = -(-max(taps) // (3 * b))
            self.right = -(-max(0, -min(taps)) // (3 * b))
            offset = lambda i, r: r + 3 * self.left * b - 3 * i  # noqa: E731
        else:  # y[m] = sum_k g[k - 3 m] x[k]
            taps = {}
            for phase in range(3):
                y, centre = _impulse(False, phase)
                taps.update({3 * (centre - j) + phase: float(y[j]) for j in range(len(y)) if y[j] != 0})
            size, out = 3 * b, b
            # input k = (blk - left) 3B + i, output m = blk B + r: k - 3 m = i - 3 left B - 3 r
            self.left = -(-max(0, -min(taps)) // (3 * b))
            self.right = -(-max(taps) // (3 * b))
            offset = lambda i, r: i - 3 * self.left * b - 3 * r  # noqa: E731
        if not taps or not all(math.isfinite(v) for v in taps.values()):
            raise RuntimeError("soxr's impulse response is empty or not finite")
        rows = size * (self.left + 1 + self.right)
        m = np.zeros((rows, out))
        for i in range(rows):
            for r in range(out):
                m[i, r] = taps.get(offset(i, r), 0.0)
        self.size = size
        self.register_buffer("matrix", torch.from_numpy(m.astype(np.float32)))

    def forward(self, x: Tensor) -> Tensor:
        """x [N] -> [3 N] (up) or [N / 3] (down; N a multiple of 3)."""
        n = x.shape[0]
        y = (blocks(x, self.size, self.left, self.right) @ self.matrix).reshape(-1)
        return y[: n * 3] if self.up else y[: n // 3]


def dft_matrices(n_fft: int, n_in: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """[n_in, n_fft // 2 + 1] cosine and (negative) sine matrices: x @ C + i x @ S = rfft(x, n_fft)
    of a frame of n_in <= n_fft samples (zero-padded)."""
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    t = torch.arange(n_in, dtype=torch.float64)[:, None]
    angle = 2 * math.pi * ((t * k) % n_fft) / n_fft
    return torch.cos(angle).to(dtype), (-torch.sin(angle)).to(dtype)


def idft_matrices(n_fft: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """[F, n_fft] matrices: re @ A + im @ B = irfft(re + i im, n_fft), unnormalised (no 1/n)."""
    freqs = n_fft // 2 + 1
    k = torch.arange(freqs, dtype=torch.float64)[:, None]
    t = torch.arange(n_fft, dtype=torch.float64)
    angle = 2 * math.pi * ((k * t) % n_fft) / n_fft
    weight = torch.full((freqs, 1), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if n_fft % 2 == 0:
        weight[-1] = 1.0
    a = weight * torch.cos(angle)
    b = -weight * torch.sin(angle)
    b[0] = 0.0
    if n_fft % 2 == 0:
        b[-1] = 0.0
    return a.to(dtype), b.to(dtype)
