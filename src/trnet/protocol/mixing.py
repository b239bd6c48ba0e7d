"""Mixing speech and noise at a target SNR, exactly as docs/design.md §2 defines it:
x = s + k·n, k = sqrt(P_s / (P_n · 10^(SNR/10))), where P_s and P_n are mean powers over
the utterance's true length (its `valid` samples), not over the zero-padded 5 s segment:
a 2 s utterance labelled 0 dB is at 0 dB where the speech is. (Powers over the padded
segment would make a 2 s utterance ~4 dB cleaner than its label.) The scaled noise is
added over the whole segment; the padded tail is masked downstream. Noise shorter than
the speech is looped, longer noise is trimmed. A clip that is digitally silent over the
utterance's valid samples (ESC-50 clips padded with silence meet short utterances) starts at
its first non-zero sample instead (docs/design.md §10); every other mixture is unchanged.
The mixture is not clipped: clipping would change the SNR it is labelled with."""

from __future__ import annotations

import numpy as np


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


def _valid_length(valid: int | None, n: int) -> int:
    if valid is None:
        return n
    valid = int(valid)
    if not 0 < valid <= n:
        raise ValueError(f"valid length must be in 1..{n} (the segment length), got {valid}")
    return valid


def fit_length(noise: np.ndarray, n: int) -> np.ndarray:
    """Loop or trim `noise` to exactly `n` samples."""
    if len(noise) == 0:
        raise ValueError("noise has no samples")
    return np.resize(noise, n) if len(noise) != n else noise


def snr_db(speech: np.ndarray, noise_part: np.ndarray, valid: int | None = None) -> float:
    """SNR in dB between speech and the (scaled, length-matched) noise added to it, with
    powers over the first `valid` samples (the utterance's true length; None: all)."""
    v = _valid_length(valid, len(speech))
    p_s, p_n = _power(speech[:v]), _power(noise_part[:v])
    if p_s == 0 or p_n == 0:
        raise ValueError("SNR is undefined for silent speech or silent noise")
    return 10.0 * np.log10(p_s / p_n)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, valid: int | None = None) -> np.ndarray:
    """Add `noise` (looped/trimmed to the speech length) to `speech` at `snr_db` dB; float32.
    `valid` is the utterance's true length in samples (the rest of `speech` is zero padding):
    both powers are measured over those samples (docs/design.md §2); None means the whole array.
    Silent (all-zero) or non-finite speech or noise is a ValueError, never a NaN mixture."""
    speech = np.asarray(speech)
    noise = np.asarray(noise)
    if speech.ndim != 1 or noise.ndim != 1:
        raise ValueError(f"expected 1-D speech and noise, got shapes {speech.shape} and {noise.shape}")
    if len(speech) == 0:
        raise ValueError("speech has no samples")
    v = _valid_length(valid, len(speech))
    if not (np.isfinite(speech).all() and np.isfinite(noise).all()):
        raise ValueError("speech or noise contains NaN/Inf samples")
    clip, noise = noise, fit_length(noise, len(speech))
    p_s, p_n = _power(speech[:v]), _power(noise[:v])
    if p_n == 0 and np.any(clip):  # silent where the speech is: start at the clip's first sound
        noise = fit_length(np.roll(clip, -int(np.flatnonzero(clip)[0])), len(speech))
        p_n = _power(noise[:v])
    if p_s == 0:
        raise ValueError("speech is silent (zero power) over its valid samples: no SNR can be defined")
    if p_n == 0:
        raise ValueError("noise is silent (zero power) over the speech's valid samples: cannot reach any SNR")
    k = np.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    return (speech.astype(np.float64) + k * noise.astype(np.float64)).astype(np.float32)
