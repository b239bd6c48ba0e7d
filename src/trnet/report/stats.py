"""Paired significance tests of two systems over the same (fold, seed) runs.

The paper reports means only; with 10 folds x 3 seeds a difference of one UAR point may or
may not be noise, so the report tests TRNet against every other system on the paired
per-run scores: the Wilcoxon signed-rank test (scipy) and an exact (or, for many pairs,
Monte-Carlo) sign-flip permutation test of the mean difference. Both are two-sided; with n
pairs neither can give p below 2 / 2^n, which the report states when n is too small.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.stats import wilcoxon

EXACT_MAX_PAIRS = 16  # 2^16 sign patterns enumerated; beyond, Monte-Carlo resampling
RESAMPLES = 100_000


@dataclass(frozen=True)
class PairedTest:
    n: int  # pairs
    mean_diff: float  # mean of a - b
    std_diff: float  # sample std of a - b (nan for n < 2)
    wilcoxon_p: float  # nan when undefined (n = 0)
    permutation_p: float
    exact: bool  # permutation p from all 2^n sign patterns (else Monte-Carlo)

    @property
    def min_p(self) -> float:
        """Smallest two-sided p-value any test on n pairs' signs can give."""
        return min(1.0, 2.0 / 2**self.n) if self.n else float("nan")

    def can_reject(self, alpha: float = 0.05) -> bool:
        """Whether n pairs are enough for p < alpha to be possible at all."""
        return self.n > 0 and self.min_p <= alpha


def sign_flip_p(d: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> tuple[float, bool]:
    """Two-sided p-value of the paired sign-flip permutation test of mean(d) = 0, and whether
    it is exact. Under the null each difference is as likely positive as negative, so the
    reference distribution is |sum(s_i d_i)| over sign patterns s."""
    d = np.asarray(d, dtype=np.float64)
    n = len(d)
    if n == 0:
        return float("nan"), True
    observed = abs(d.sum())
    tol = 1e-12 * max(1.0, float(np.abs(d).sum()))  # equal sums must count as "as extreme"
    if n <= EXACT_MAX_PAIRS:
        patterns = (np.arange(2**n)[:, None] >> np.arange(n)) & 1
        sums = np.abs((1 - 2 * patterns) @ d)
        return float(np.mean(sums >= observed - tol)), True
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, resamples, 10_000):
        signs = rng.choice((-1.0, 1.0), size=(min(10_000, resamples - start), n))
        hits += int(np.sum(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (resamples + 1), False


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (scipy; zero differences dropped); 1.0 when
    every difference is zero (no evidence of any difference), nan for no pairs."""
    d = np.asarray(d, dtype=np.float64)
    if len(d) == 0:
        return float("nan")
    if not np.any(d):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns that small samples are small
        return float(wilcoxon(d).pvalue)


def paired_test(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, seed: int = 0) -> PairedTest:
    """Test a against b, where a[i] and b[i] come from the same (fold, seed)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D arrays of equal length, got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    perm_p, exact = sign_flip_p(d, resamples, seed)
    return PairedTest(
        n=n,
        mean_diff=float(d.mean()) if n else float("nan"),
        std_diff=float(d.std(ddof=1)) if n > 1 else float("nan"),
        wilcoxon_p=wilcoxon_p(d),
        permutation_p=perm_p,
        exact=exact,
    )


def min_pairs(alpha: float = 0.05) -> int:
    """Fewest pairs for which a two-sided sign-based p-value can be below alpha."""
    return max(1, math.ceil(math.log2(2 / alpha)))
