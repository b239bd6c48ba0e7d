"""Batches from the condition store (docs/design.md §7), for training and evaluation alike.

Training: every example draws its condition uniformly from {clean, each SNR of the training
noise corpus} at every step (the authors' recipe), or clean only for Baseline-c. Validation
and test: one speaker under one fixed condition. A fold's rows come from
`trnet.protocol.folds.split(store.rows, fold)`. All randomness comes from (seed, epoch), so a
resumed run sees exactly the batches an uninterrupted one would. Also here: the per-mel-bin
statistics of the training speakers that a standardised SNR-aware input needs
(`snr_input_stats`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trnet.corpora import LABELS
from trnet.protocol.folds import split
from trnet.store import Condition, ConditionStore, StoreError, condition_snr

CROP_MULTIPLE = 16  # the encoders downsample time by 2^4
BUCKET_POOL = 32  # batches per pool sorted by length when bucketing (train_batches)


@dataclass
class Batch:
    x: torch.Tensor  # noisy LMFB [B, T, 80]
    xe: torch.Tensor  # enhanced LMFB
    xs: torch.Tensor  # clean LMFB (the target of eq. 5 and the teacher's input)
    frames: torch.Tensor  # valid frames [B]
    y: torch.Tensor  # class index [B]
    index: np.ndarray  # store rows
    conditions: list[Condition]

    def to(self, device: torch.device | str) -> Batch:
        x, xe, xs, frames, y = (
            t.to(device, non_blocking=True) for t in (self.x, self.xe, self.xs, self.frames, self.y)
        )
        return Batch(x, xe, xs, frames, y, self.index, self.conditions)


def label_indices(store: ConditionStore) -> np.ndarray:
    """Class index per utterance (StoreError for a label outside LABELS, e.g. a store built from
    a hand-edited manifest)."""
    other = next((r for r in store.rows if r["label"] not in LABELS), None)
    if other is not None:
        raise StoreError(
            f"store {store.root}: utterance {other['id']} has label {other['label']!r}, not one of "
            f"{', '.join(LABELS)} (the classes trnet trains)"
        )
    return np.array([LABELS.index(r["label"]) for r in store.rows], dtype=np.int64)


def default_train_noise(store: ConditionStore) -> str | None:
    """The paper trains on ESC-50 noise; otherwise the store's first noise corpus."""
    if not store.noises:
        return None
    return "esc50" if "esc50" in store.noises else store.noises[0]


def condition_set(store: ConditionStore, train_conditions: str, noise: str | Sequence[str] | None) -> list[Condition]:
    """{clean} for clean training; {clean, (noise, snr) for every SNR} otherwise. Several
    training noise corpora (the bundled model: ESC-50 and DEMAND) give {clean} and every
    (noise, snr) of each, drawn uniformly like one (docs/design.md §11)."""
    if train_conditions == "clean":
        return ["clean"]
    noises = [noise] if isinstance(noise, str) or noise is None else list(noise)
    for name in noises:
        if name not in store.noises:
            raise ValueError(f"training noise {name!r} is not in the store (it has {store.noises})")
    return ["clean", *[(n, s) for n in noises for s in store.snrs]]


def make_batch(
    store: ConditionStore, labels: np.ndarray, index: np.ndarray, conds: Sequence[Condition], crop: bool = True
) -> Batch:
    """Gather a batch; with `crop`, cut the time axis to the longest valid length (rounded up
    to a multiple of 16). Padded frames change no output, so this only saves compute."""
    x, xe, xs = store.gather(index, conds)
    frames = store.frames[index]
    if crop:
        t = int(min(x.shape[1], -(-max(int(frames.max()), 1) // CROP_MULTIPLE) * CROP_MULTIPLE))
        x, xe, xs = x[:, :t], xe[:, :t], xs[:, :t]
    return Batch(
        torch.from_numpy(np.ascontiguousarray(x)),
        torch.from_numpy(np.ascontiguousarray(xe)),
        torch.from_numpy(np.ascontiguousarray(xs)),
        torch.from_numpy(frames.copy()),
        torch.from_numpy(labels[index]),
        index,
        list(conds),
    )


def n_train_batches(n_rows: int, batch_size: int) -> int:
    """How many batches `train_batches` yields per epoch (a last batch of one waits)."""
    full, rest = divmod(n_rows, batch_size)
    return full + (1 if rest >= 2 else 0)


def train_batches(
    store: ConditionStore,
    labels: np.ndarray,
    rows: np.ndarray,
    conds: list[Condition],
    batch_size: int,
    seed: int,
    epoch: int,
    bucket: bool = False,
) -> Iterator[Batch]:
    """One epoch: shuffled order and a per-example condition, both fixed by (seed, epoch).

    With `bucket`, examples of similar length share a batch (docs/design.md §7): the shuffled
    order is cut into pools of BUCKET_POOL batches, each pool is sorted by length, the
    sequence is cut into batches as without buckets, and the batch order is shuffled. A batch
    is cropped to its longest utterance, so on a corpus of varied lengths (nEMO: 0.9-5.5 s)
    this computes ~1.4x fewer frames; it changes which examples meet in a batch, so it is a
    training setting of its own (off by default, as in the paper)."""
    for idx, conds_of in train_order(store, rows, conds, batch_size, seed, epoch, bucket):
        yield make_batch(store, labels, idx, conds_of)


def train_order(
    store: ConditionStore,
    rows: np.ndarray,
    conds: list[Condition],
    batch_size: int,
    seed: int,
    epoch: int,
    bucket: bool = False,
) -> Iterator[tuple[np.ndarray, list[Condition]]]:
    """The (store rows, conditions) of each batch of `train_batches`, without reading features:
    what a copy of the store in GPU memory gathers from (trnet.training.fast)."""
    rng = np.random.default_rng([seed, epoch, 0x7E7])
    order = rng.permutation(rows)
    draws = rng.integers(0, len(conds), size=len(order))
    starts = list(range(0, len(order), batch_size))
    if bucket:
        pool = BUCKET_POOL * batch_size
        sorted_ = [p + np.argsort(store.frames[order[p : p + pool]], kind="stable") for p in range(0, len(order), pool)]
        perm = np.concatenate(sorted_) if sorted_ else np.arange(0)
        order, draws = order[perm], draws[perm]
        starts = [starts[i] for i in np.random.default_rng([seed, epoch, 0xB0C]).permutation(len(starts))]
    for start in starts:
        idx = order[start : start + batch_size]
        if len(idx) < 2:  # BatchNorm needs 2+ examples; a single leftover waits for next epoch
            continue
        yield idx, [conds[d] for d in draws[start : start + batch_size]]


def eval_batches(
    store: ConditionStore, labels: np.ndarray, rows: np.ndarray, cond: Condition, batch_size: int
) -> Iterator[Batch]:
    """Every row under one fixed condition; rows sorted by length so that cropping saves most."""
    rows = np.asarray(rows)[np.argsort(store.frames[rows], kind="stable")]
    for start in range(0, len(rows), batch_size):
        idx = rows[start : start + batch_size]
        yield make_batch(store, labels, idx, [cond] * len(idx))


def snr_input_stats(store: ConditionStore, fold: int, conds: Sequence[Condition]) -> tuple[np.ndarray, np.ndarray]:
    """Per-mel-bin mean and std [F] of the LMFB the SNR-aware module sees in training (X and X_e
    under each training condition), over the valid frames of the fold's TRAINING speakers only.
    The fold, not a row list, is the argument: the rows are derived here from the LOSO split, so
    the validation and test speakers cannot reach the statistics (they are never read)."""
    rows = split(store.rows, fold).train
    s1 = np.zeros(store.clean().shape[-1], np.float64)
    s2 = np.zeros_like(s1)
    n = 0
    for cond in conds:
        for arr in (store.noisy(cond), store.enhanced(cond)):
            for i in rows:
                f = int(store.frames[i])
                v = np.asarray(arr[i, :f], dtype=np.float64)
                s1 += v.sum(0)
                s2 += np.square(v).sum(0)
                n += f
    if n == 0:
        raise ValueError(f"fold {fold}: no valid training frames to compute statistics from")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-3).astype(np.float32)


def fit_snr_input_stats(model: torch.nn.Module, store: ConditionStore, fold: int, conds: Sequence[Condition]) -> bool:
    """Set the SNR-aware module's input statistics from the fold's training speakers, if its
    snr_input needs them (before training; they are then saved with the weights). Returns
    whether it did."""
    snr = getattr(model, "snr", None)
    if snr is None or not snr.needs_stats:
        return False
    mean, std = snr_input_stats(store, fold, conds)
    snr.set_input_stats(torch.from_numpy(mean), torch.from_numpy(std))
    return True


def condition_snr_db(conditions: Sequence[Condition]) -> torch.Tensor:
    """Each example's known SNR in dB, +inf for clean (the target of c_target "snr")."""
    return torch.tensor([condition_snr(c) for c in conditions])
