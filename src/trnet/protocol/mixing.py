"""Mixing speech and noise at a target SNR, exactly as SPEC §2 defines it:
x = s + k·n, k = sqrt(P_s / (P_n · 10^(SNR/10))), P = mean power over the whole segment
(padding included, as the authors mix the padded 5 s segments). Noise shorter than the
speech is looped, longer noise is trimmed. The mixture is not clipped: clipping would
change the SNR it is labelled with."""

from __future__ import annotations

import numpy as np


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def fit_length(noise: np.ndarray, n: int) -> np.ndarray:
    """Loop or trim `noise` to exactly `n` samples."""
    if len(noise) == 0:
        raise ValueError("noise has no samples")
    return np.resize(noise, n) if len(noise) != n else noise


def snr_db(speech: np.ndarray, noise_part: np.ndarray) -> float:
    """SNR in dB between speech and the (scaled, length-matched) noise added to it."""
    p_s, p_n = _power(speech), _power(noise_part)
    if p_s == 0 or p_n == 0:
        raise ValueError("SNR is undefined for silent speech or silent noise")
    return 10.0 * np.log10(p_s / p_n)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Add `noise` (looped/trimmed to the speech length) to `speech` at `snr_db` dB; float32.
    Silent (all-zero) or non-finite speech or noise is a ValueError, never a NaN mixture."""
    speech = np.asarray(speech)
    noise = np.asarray(noise)
    if speech.ndim != 1 or noise.ndim != 1:
        raise ValueError(f"expected 1-D speech and noise, got shapes {speech.shape} and {noise.shape}")
    if len(speech) == 0:
        raise ValueError("speech has no samples")
    noise = fit_length(noise, len(speech))
    if not (np.isfinite(speech).all() and np.isfinite(noise).all()):
        raise ValueError("speech or noise contains NaN/Inf samples")
    p_s, p_n = _power(speech), _power(noise)
    if p_s == 0:
        raise ValueError("speech is silent (zero power): no SNR can be defined")
    if p_n == 0:
        raise ValueError("noise is silent (zero power) over the speech length: cannot reach any SNR")
    k = np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return (speech.astype(np.float64) + k * noise.astype(np.float64)).astype(np.float32)
