"""Read access to a finished condition store (see `trnet.store.layout`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trnet.corpora import read_manifest
from trnet.store.layout import DTYPE, SHAPE, Condition, StoreError, array_path, conditions, is_complete, read_key


class ConditionStore:
    """Read access to a finished store: memory-mapped features, labels, speakers, frames."""

    def __init__(self, root: str | Path):
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
        self.rows = read_manifest(self.root / "utterances.csv")
        self.frames = np.load(self.root / "frames.npy").astype(np.int64)
        self.noises: list[str] = list(self.key["noise"])
        self.snrs: tuple[int, ...] = tuple(self.key["snrs"])
        self._maps: dict[str, np.memmap] = {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def conditions(self) -> list[Condition]:
        return conditions(self.noises, self.snrs)

    def _array(self, rel: str) -> np.memmap:
        if rel not in self._maps:
            self._maps[rel] = np.memmap(self.root / rel, dtype=DTYPE, mode="r", shape=(len(self), *SHAPE))
        return self._maps[rel]

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
        for j, (i, c) in enumerate(zip(index, conds)):
            x[j] = self.noisy(c)[i]
            xe[j] = self.enhanced(c)[i]
        return x, xe, self.clean()[index].astype(np.float32)
