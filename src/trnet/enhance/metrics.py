"""Signal-level SE quality measures shared by the SE tests and benches."""

from __future__ import annotations

import numpy as np


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean. Being
    scale-invariant but not shift-invariant, it also penalises any misalignment."""
    est = np.asarray(estimate, dtype=np.float64) - np.mean(estimate)
    ref = np.asarray(reference, dtype=np.float64) - np.mean(reference)
    target = (est @ ref) / max(ref @ ref, 1e-20) * ref
    err = est - target
    return float(10 * np.log10(max(target @ target, 1e-20) / max(err @ err, 1e-20)))
