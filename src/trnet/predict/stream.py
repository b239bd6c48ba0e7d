"""Windows of a long input, in batches, from a stream of audio blocks: what `Predictor` runs
SE, features and the model on, so that memory stays flat whatever the input's length.

Each batch comes with a segment of the signal that covers its windows plus some context on
both sides (`context` samples, cut at the ends of the input); SE runs on that segment, not on
the whole input. For an enhancer whose output at a sample depends only on nearby samples
(`spectral`: a 1.5 s noise-tracking window, recursions that forget within ~0.5 s) the windows
then get what whole-input SE would give them; for one with long memory (DFN3's running
normalisation) they differ a little (measured in docs/design.md). The windows themselves are
those of `spans(n)`: one if n fits in a window, else one every hop, the last ending at n (a
tail under `min_tail` that the previous window nearly covers is left out).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Segment:
    """Samples [start, start + len(samples)) of the input, and the windows (absolute sample
    ranges) of one batch, which it covers."""

    start: int
    samples: np.ndarray
    spans: list[tuple[int, int]]

    def local(self) -> list[tuple[int, int]]:
        """The spans relative to the segment."""
        return [(a - self.start, b - self.start) for a, b in self.spans]


def spans(n: int, window: int, hop: int, min_tail: int) -> list[tuple[int, int]]:
    """Sample ranges of the windows over n samples (see the module docstring)."""
    out = [(0, min(n, window))]
    while out[-1][1] < n:
        start = out[-1][0] + hop
        if n - start < min_tail:
            break
        out.append((start, min(n, start + window)))
    return out


class WindowStream:
    """Iterate over `Segment`s of batches of `batch` windows; afterwards `n` is the number of
    samples the input had (padded with zeros to `min_length` if shorter, `n_true` not) and
    `peak` its largest absolute sample."""

    def __init__(
        self,
        blocks: Iterable[np.ndarray],
        window: int,
        hop: int,
        batch: int,
        context: int,
        min_tail: int,
        min_length: int,
    ) -> None:
        self.blocks = iter(blocks)
        self.window, self.hop, self.batch, self.context = window, hop, batch, context
        self.min_tail, self.min_length = min_tail, min_length
        self.n_true = 0
        self.peak = 0.0
        self._buf = np.zeros(0, np.float32)
        self._buf_start = 0  # absolute index of _buf[0]
        self._eof = False

    @property
    def n(self) -> int:
        return max(self.n_true, self.min_length)

    def _read_until(self, end: int) -> None:
        """Read blocks until `end` samples are buffered or the input ends."""
        parts = [self._buf]
        have = self._buf_start + len(self._buf)
        while have < end and not self._eof:
            block = next(self.blocks, None)
            if block is None:
                self._eof = True
                break
            block = np.asarray(block, np.float32)
            self.n_true += len(block)
            if len(block):
                self.peak = max(self.peak, float(np.abs(block).max()))
            parts.append(block)
            have += len(block)
        if self._eof and have < self.min_length:  # fbank needs one 25 ms frame; zeros add no energy
            parts.append(np.zeros(self.min_length - have, np.float32))
        self._buf = np.concatenate(parts) if len(parts) > 1 else self._buf

    def _span(self, k: int) -> tuple[int, int] | None:
        """Window k, once enough input is read to know it; None if the input has no window k."""
        start = k * self.hop
        self._read_until(start + self.window + self.context)
        if not self._eof:
            return start, start + self.window
        known = spans(self.n, self.window, self.hop, self.min_tail)
        return known[k] if k < len(known) else None

    def __iter__(self) -> Iterator[Segment]:
        k = 0
        while True:
            batch = []
            while len(batch) < self.batch and (span := self._span(k)) is not None:
                batch.append(span)
                k += 1
            if not batch:
                return
            start = max(0, batch[0][0] - self.context)
            stop = batch[-1][1] + self.context
            self._read_until(stop)
            stop = min(stop, self._buf_start + len(self._buf))
            yield Segment(start, self._buf[start - self._buf_start : stop - self._buf_start], batch)
            keep = max(0, k * self.hop - self.context)  # the next batch's segment starts here
            self._buf = self._buf[keep - self._buf_start :].copy()
            self._buf_start = keep
