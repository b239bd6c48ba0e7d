"""Training-time changes to a batch: random crops and SpecAugment masks (docs/design.md §7,
"Training levers"). Each is a training setting, off by default; the randomness of a batch comes
from (seed, epoch, step) alone, so a resumed run draws exactly what an uninterrupted one would.

Both act on the three LMFB streams of a batch (noisy X, enhanced X_e, clean X_s) together: a
crop takes the same frames of the three, and a mask hides the same bins and frames of X and X_e,
so that TRNet's SNR-aware module (eq. 1) still compares the same time-frequency points of both.
X_s, the target of eq. (5) and the teacher's input, is cropped but never masked.
"""

from __future__ import annotations

import numpy as np
import torch

from trnet.audio import SAMPLE_RATE
from trnet.batches import CROP_MULTIPLE, Batch
from trnet.features import FRAME_SHIFT
from trnet.models import TrainingConfig

FRAMES_PER_SECOND = SAMPLE_RATE // FRAME_SHIFT  # LMFB frames per second (10 ms shift)


def batch_rng(seed: int, epoch: int, step: int) -> np.random.Generator:
    """The generator of one training batch's augmentation."""
    return np.random.default_rng([seed, epoch, step, 0xA06])


def augment(batch: Batch, training: TrainingConfig, rng: np.random.Generator) -> Batch:
    """The batch with the levers of `training` applied (the batch itself when none is on)."""
    if training.crop_s:
        batch = random_crop(batch, round(training.crop_s * FRAMES_PER_SECOND), rng)
    if training.freq_masks or training.time_masks:
        batch = spec_augment(batch, training, rng)
    return batch


def random_crop(batch: Batch, max_frames: int, rng: np.random.Generator) -> Batch:
    """Each example longer than `max_frames` cut to a window of that many frames at a random
    start; the batch's time axis then cropped to its longest example (a multiple of 16, as
    trnet.batches.make_batch does). Cheaper steps, and a new view of an utterance every epoch."""
    frames = batch.frames.numpy()
    new_frames = np.minimum(frames, max_frames)
    starts = [int(rng.integers(0, f - m + 1)) if f > m else 0 for f, m in zip(frames, new_frames, strict=True)]
    t = int(-(-max(int(new_frames.max()), 1) // CROP_MULTIPLE) * CROP_MULTIPLE)

    def cut(a: torch.Tensor) -> torch.Tensor:
        out = a.new_zeros((a.shape[0], t, a.shape[2]))
        for i, (s, m) in enumerate(zip(starts, new_frames, strict=True)):
            out[i, :m] = a[i, s : s + m]
        return out

    return Batch(
        cut(batch.x),
        cut(batch.xe),
        cut(batch.xs),
        torch.from_numpy(new_frames.astype(frames.dtype)),
        batch.y,
        batch.index,
        batch.conditions,
    )


def spec_augment(batch: Batch, training: TrainingConfig, rng: np.random.Generator) -> Batch:
    """SpecAugment (Park et al. 2019) without time warping: `freq_masks` bands of up to
    `freq_mask_bins` mel bins and `time_masks` spans of up to `time_mask_frames` frames (at most
    a fifth of the valid frames) per example, filled with the example's per-bin mean over its
    valid frames, the same mask on X and X_e. The fill keeps the masked region at the level of
    the utterance, so the encoder's first normalisation sees no outliers."""
    x, xe = batch.x.clone(), batch.xe.clone()
    n_bins = x.shape[2]
    for i, f in enumerate(batch.frames.tolist()):
        f = max(int(f), 1)
        regions = []
        for _ in range(training.freq_masks):
            w = int(rng.integers(0, min(training.freq_mask_bins, n_bins) + 1))
            lo = int(rng.integers(0, n_bins - w + 1))
            regions.append((slice(0, f), slice(lo, lo + w)))
        for _ in range(training.time_masks):
            w = int(rng.integers(0, min(training.time_mask_frames, max(f // 5, 0)) + 1))
            lo = int(rng.integers(0, f - w + 1))
            regions.append((slice(lo, lo + w), slice(0, n_bins)))
        for a in (x, xe):
            mean = a[i, :f].mean(0)
            for t_slice, f_slice in regions:
                a[i, t_slice, f_slice] = mean[f_slice]
    return Batch(x, xe, batch.xs, batch.frames, batch.y, batch.index, batch.conditions)
