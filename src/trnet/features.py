"""Kaldi-compatible 80-dim log Mel filter bank (LMFB), batched in PyTorch (docs/design.md §1).

Matches `kaldi.fbank` / kaldi-native-fbank with: 25 ms Hamming window, 10 ms shift,
snip_edges, DC removal, pre-emphasis 0.97, no dither, 512-point power spectrum, 80 mel
bins over 0-8000 Hz, natural log floored at FLT_EPSILON, waveform scaled to int16 range.
Works on CPU or CUDA; frame counts come back so that padded frames can be masked.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from trnet.audio import SAMPLE_RATE

FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
N_FFT = 512
N_MELS = 80
PREEMPH = 0.97
T_MAX = 500  # frames per 5 s utterance after padding (5 s gives 498)
_EPS = torch.finfo(torch.float32).eps


def num_frames(n_samples: Tensor | int) -> Tensor | int:
    """Frames Kaldi's snip_edges gives for n samples (0 when shorter than one window)."""
    if isinstance(n_samples, Tensor):
        return torch.where(n_samples >= FRAME_LENGTH, 1 + (n_samples - FRAME_LENGTH) // FRAME_SHIFT, 0)
    return 1 + (n_samples - FRAME_LENGTH) // FRAME_SHIFT if n_samples >= FRAME_LENGTH else 0


def _mel(f: Tensor) -> Tensor:
    return 1127.0 * torch.log1p(f / 700.0)


@lru_cache(maxsize=8)
def mel_banks(device: str = "cpu", low_freq: float = 0.0, high_freq: float = SAMPLE_RATE / 2) -> Tensor:
    """Kaldi's triangular mel filters as a [N_FFT/2 + 1, N_MELS] matrix (Nyquist row zero)."""
    n_bins = N_FFT // 2
    mel_low, mel_high = (
        _mel(torch.tensor(low_freq, dtype=torch.float64)),
        _mel(torch.tensor(high_freq, dtype=torch.float64)),
    )
    delta = (mel_high - mel_low) / (N_MELS + 1)
    b = torch.arange(N_MELS, dtype=torch.float64)[:, None]
    left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
    mel = _mel(torch.arange(n_bins, dtype=torch.float64) * (SAMPLE_RATE / N_FFT))[None, :]
    up, down = (mel - left) / (center - left), (right - mel) / (right - center)
    w = torch.where((mel > left) & (mel < right), torch.minimum(up, down), torch.zeros(()))
    w = torch.cat([w, torch.zeros(N_MELS, 1, dtype=torch.float64)], dim=1)  # Nyquist bin unused
    return w.T.contiguous().to(device=device, dtype=torch.float32)


@lru_cache(maxsize=8)
def _hamming(device: str) -> Tensor:
    n = torch.arange(FRAME_LENGTH, dtype=torch.float64)
    return (0.54 - 0.46 * torch.cos(2 * math.pi * n / (FRAME_LENGTH - 1))).to(device=device, dtype=torch.float32)


def fbank(wave: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """LMFB of 16 kHz float waveforms in [-1, 1].

    wave: [B, N]; lengths: [B] true sample counts (default N).
    Returns (feats [B, T, 80] float32, frames [B] int64) with T = 1 + (N - 400) // 160.
    Frames at index >= frames[b] overlap padding; callers mask them.
    """
    if wave.dim() != 2:
        raise ValueError(f"fbank expects a [B, N] waveform batch, got shape {tuple(wave.shape)}")
    if wave.shape[1] < FRAME_LENGTH:
        raise ValueError(f"fbank needs at least {FRAME_LENGTH} samples (25 ms), got {wave.shape[1]}")
    B, N = wave.shape
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.int64, device=wave.device)
    dev = str(wave.device)
    frames = (wave.float() * 32768.0).unfold(1, FRAME_LENGTH, FRAME_SHIFT)  # [B, T, 400]
    frames = frames - frames.mean(dim=-1, keepdim=True)  # DC removal
    prev = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    frames = (frames - PREEMPH * prev) * _hamming(dev)
    spec = torch.fft.rfft(frames, n=N_FFT)
    power = spec.real.square() + spec.imag.square()  # [B, T, 257]
    feats = torch.matmul(power, mel_banks(dev)).clamp_min(_EPS).log()
    return feats, num_frames(lengths.to(wave.device)).long()


def pad_frames(feats: Tensor, t_max: int = T_MAX) -> Tensor:
    """Pad (with zeros) or cut the time axis of [B, T, F] features to t_max frames."""
    T = feats.shape[1]
    if T >= t_max:
        return feats[:, :t_max]
    return torch.nn.functional.pad(feats, (0, 0, 0, t_max - T))


def frame_mask(frames: Tensor, t: int) -> Tensor:
    """Boolean [B, t] mask, True on valid frames."""
    return torch.arange(t, device=frames.device)[None, :] < frames[:, None]
