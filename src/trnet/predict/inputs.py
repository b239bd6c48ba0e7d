"""Helpers of `trnet.predict.predictor` for what it is given: a waveform in any PCM form, read
in blocks, and where the time goes (load, SE, features, model), for `trnet predict --timings`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from trnet.audio import AudioError
from trnet.utils import UserError

MIN_SECONDS = 0.5  # shorter inputs carry too little speech for an emotion estimate
MIN_RATE = 4_000  # Hz: a file declared at a lower rate holds no speech band (a wrong header?)
MAX_LOW_RATE_SECONDS = 600.0  # such a file is refused beyond this: 1 Hz x 16,000 samples would be 4 h at 16 kHz
MIN_HOP_SECONDS = 0.05  # a smaller hop multiplies the model calls without telling more
MAX_WINDOW_SECONDS = 60.0  # longer windows would hold a minute of audio per model call


def to_mono_float(wave: Any) -> np.ndarray:
    """Float32 mono samples from a numpy array or torch tensor of any PCM dtype."""
    if hasattr(wave, "detach"):  # torch.Tensor, without importing torch for numpy callers
        wave = wave.detach().cpu().numpy()
    wave = np.asarray(wave)
    if wave.ndim not in (1, 2):
        raise AudioError(f"expected a waveform [N], [N, C] or [C, N], got shape {wave.shape}")
    if wave.size == 0:
        raise AudioError("waveform has no samples")
    if wave.dtype.kind in "iu":  # integer PCM; unsigned is offset binary
        full_scale = 2.0 ** (8 * wave.dtype.itemsize - 1)
        wave = (wave.astype(np.float64) - (full_scale if wave.dtype.kind == "u" else 0.0)) / full_scale
    elif wave.dtype.kind != "f":
        raise AudioError(f"expected float or integer PCM samples, got dtype {wave.dtype}")
    if wave.ndim == 2:
        wave = wave.mean(axis=int(np.argmin(wave.shape)))
    wave = wave.astype(np.float32)
    if not np.isfinite(wave).all():
        raise AudioError("waveform contains NaN/Inf samples")
    return wave


def timed_blocks(blocks: Iterator[np.ndarray], timings: dict[str, float] | None) -> Iterator[np.ndarray]:
    """The blocks, with the time spent reading them counted as "load"."""
    while True:
        with timed(timings, "load"):
            block = next(blocks, None)
        if block is None:
            return
        yield block


@contextmanager
def timed(timings: dict[str, float] | None, stage: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    if timings is not None:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def check_windows(window: float, hop: float) -> None:
    """UserError unless the windowing covers the input: MIN_SECONDS <= window <=
    MAX_WINDOW_SECONDS, 0 < hop <= window (finite numbers)."""
    if not (math.isfinite(window) and MIN_SECONDS <= window <= MAX_WINDOW_SECONDS):
        raise UserError(
            f"window must be a number of seconds from {MIN_SECONDS} to {MAX_WINDOW_SECONDS:g}, got {window}"
        )
    if not (math.isfinite(hop) and 0 < hop <= window):
        raise UserError(f"hop must lie in (0, window = {window}] s, got {hop}")
    if hop < MIN_HOP_SECONDS:
        raise UserError(f"hop {hop} s is below {MIN_HOP_SECONDS} s: the windows would overlap {window / hop:.0f}-fold")


def check_low_rate(rate: int, frames: int, where: str) -> None:
    """AudioError for audio declared below MIN_RATE that would last beyond MAX_LOW_RATE_SECONDS
    once read at 16 kHz: a wrong header (1 Hz) would otherwise be upsampled for minutes."""
    if frames / rate > MAX_LOW_RATE_SECONDS:
        raise AudioError(
            f"{where}: declared at {rate} Hz, its {frames} samples would last {frames / rate:.0f} s at 16 kHz "
            f"(a sample rate below {MIN_RATE} Hz is accepted up to {MAX_LOW_RATE_SECONDS:.0f} s); check its header"
        )
