"""Helpers of `trnet.predict.predictor` for what it is given: a waveform in any PCM form, read
in blocks, and where the time goes (load, SE, features, model), for `trnet predict --timings`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from trnet.audio import AudioError


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
