"""Read access to a finished condition store (see `trnet.store.layout`). Opening one checks
it (`trnet.store.checksum.verify`: sizes, frames, chunk checksums; once per process), so
training and evaluation never read a truncated, damaged or replaced feature file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trnet.corpora import read_manifest
from trnet.enhance import Spec
from trnet.features import T_MAX
from trnet.store import checksum
from trnet.store.layout import (
    CHUNK,
    DTYPE,
    FRAMES,
    SHAPE,
    UTTERANCES,
    Condition,
    StoreError,
    array_path,
    conditions,
    is_complete,
    read_key,
)


class ConditionStore:
    """Read access to a finished store: memory-mapped features, labels, speakers, frames."""

    def __init__(self, root: str | Path, verify: bool = True):
        """`verify`: check sizes, frames and (as each array is first read) chunk checksums."""
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(f"{self.root}: no condition store there; build it with `trnet conditions ... --out DIR`")
        key = read_key(self.root)
        if key is None or not is_complete(self.root, key["hash"]):
            raise StoreError(
                f"{self.root} is not a finished condition store; "
                "build it with `trnet conditions ... --out DIR` (it resumes if interrupted)"
            )
        self.key = key
        self.rows = read_manifest(self.root / UTTERANCES, "utterances")
        self.frames = _read_frames(self.root / FRAMES, len(self.rows))
        self.noises: list[str] = list(self.key["noise"])
        self.snrs: tuple[int, ...] = tuple(self.key["snrs"])
        self._maps: dict[str, np.memmap] = {}
        self._markers = (
            checksum.open_store(self.root, key, len(self.rows), self.frames, -(-len(self.rows) // CHUNK))
            if verify
            else None
        )

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def conditions(self) -> list[Condition]:
        return conditions(self.noises, self.snrs)

    @property
    def se(self) -> Spec:
        """The SE setting the store's x_e were made with, as its key records it."""
        se = Spec.from_fields(self.key)
        if se is None:
            raise StoreError(f"{self.root}: its key names no SE back-end; build the store again")
        return se

    def _array(self, rel: str) -> np.memmap:
        if rel not in self._maps:
            checksum.check_sizes(self.root, [rel], len(self))  # a short file: one line, not an mmap error
            if self._markers is not None:
                checksum.verify_array(self.root, rel, self._markers, len(self), self.key["hash"])
            self._maps[rel] = np.memmap(self.root / rel, dtype=DTYPE, mode="r", shape=(len(self), *SHAPE))
        return self._maps[rel]

    def check(self, conds: Sequence[Condition]) -> None:
        """Open (and so verify) the arrays a user of these conditions reads: before a training
        run writes anything, a damaged array is found."""
        self.clean()
        for cond in conds:
            self.noisy(cond), self.enhanced(cond)

    def clean(self) -> np.memmap:
        """X_s for every utterance."""
        return self._array(array_path("clean", "x"))

    def noisy(self, cond: Condition) -> np.memmap:
        """X under a condition (the clean features for 'clean')."""
        return self._array(array_path(cond, "x"))

    def enhanced(self, cond: Condition) -> np.memmap:
        """X_e under a condition (SE applied to clean speech for 'clean')."""
        return self._array(array_path(cond, "xe"))

    def gather(self, index: np.ndarray, conds: Sequence[Condition]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, X_e, X_s) float32 [len(index), 500, 80] with a per-example condition."""
        x = np.empty((len(index), *SHAPE), np.float32)
        xe = np.empty_like(x)
        for j, (i, c) in enumerate(zip(index, conds, strict=False)):
            x[j] = self.noisy(c)[i]
            xe[j] = self.enhanced(c)[i]
        return x, xe, self.clean()[index].astype(np.float32)


def _read_frames(path: Path, n: int) -> np.ndarray:
    """frames.npy as int64, or StoreError naming it (unreadable, pickled, wrong shape or values)."""
    try:
        frames = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise StoreError(
            f"{path}: not a readable array of frame counts ({' '.join(str(err).split())}); {checksum.REBUILD}"
        ) from None
    if (
        frames.dtype.kind not in "iu"
        or frames.shape != (n,)
        or (len(frames) and not 0 <= frames.min() <= frames.max() <= T_MAX)
    ):
        raise StoreError(
            f"{path}: expected {n} frame counts in 0..{T_MAX}, got a {frames.dtype} array of shape "
            f"{frames.shape}; {checksum.REBUILD}"
        )
    return frames.astype(np.int64)
