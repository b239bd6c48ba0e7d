"""How precisely a grid measures a paired difference between two systems, with speakers as
the unit of replication (docs/design.md §10).

A grid gives one difference d[s, k] per test speaker s (= fold) and seed k: the same test
utterances and conditions scored by two systems trained on the same fold with the same seed.
Speakers differ in how much a system helps them, so the runs of one speaker are not
independent replicates: the model is the balanced one-way random-effects model

    d[s, k] = mu + u[s] + e[s, k],   u ~ N(0, sigma_u^2),   e ~ N(0, sigma_e^2),

whose estimate of mu is the mean of the speaker means, with standard error
sd(speaker means) / sqrt(S) and S - 1 degrees of freedom. The 95 % interval is the t interval
on the speaker means (with a speaker bootstrap beside it as a check), and the minimum
detectable effect at 80 % power (two-sided, alpha 0.05) is (t_0.975 + t_0.80) x SE on the same
degrees of freedom. The variance components say what more seeds could buy: seeds shrink
sigma_e^2 / (S K), never sigma_u^2 / S.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

BOOTSTRAP_RESAMPLES = 10_000
# A speaker counts as ahead when its mean difference exceeds this many points: below any real
# UAR difference (one utterance of one class moves a test speaker's UAR by ~0.3 points on nEMO),
# above float noise and the 6 decimals a committed CSV keeps, so that a tie (both systems
# scoring exactly alike) is not counted as ahead by the sign of a rounding error.
TIE = 1e-3


@dataclass(frozen=True)
class ClusteredDifference:
    n_speakers: int
    n_runs: int
    mean: float  # mean of the speaker means of d
    se: float  # sd(speaker means) / sqrt(S)
    ci: tuple[float, float]  # 95 % t interval, S - 1 degrees of freedom
    bootstrap_ci: tuple[float, float]  # 95 % percentile interval, speakers resampled
    mde: float  # minimum detectable effect at 80 % power, two-sided alpha 0.05
    sigma_u: float  # between-speaker sd of the effect (method of moments, >= 0)
    sigma_e: float  # within-speaker sd over seeds (nan with one seed per speaker)
    p_value: float  # two-sided t test of mu = 0 on the speaker means
    wins: int  # speakers whose mean difference is > TIE (ahead; a tie is not)
    sigma_u_clipped: bool = False  # the moment estimate of sigma_u^2 was negative, reported as 0

    @property
    def seeds(self) -> float:
        """Runs per speaker (their mean, if unbalanced)."""
        return self.n_runs / self.n_speakers

    def mde_with(self, seeds: int, alpha: float = 0.05, power: float = 0.8) -> float:
        """The MDE the same speakers would give with `seeds` seeds each. The variance components
        give the shape, sigma_u^2 / S + sigma_e^2 / (S K), and the observed SE anchors it, so that
        at today's K it is today's MDE. Without clipping that is the components' own number
        (their variance at K is the speaker means' variance); with sigma_u^2 clipped to 0 (speaker
        means that spread less than their seeds predict, a chance outcome with few speakers) the
        components alone would promise a larger MDE at today's K than the one measured."""
        e2 = 0.0 if np.isnan(self.sigma_e) else self.sigma_e**2
        now = self.sigma_u**2 / self.n_speakers + e2 / (self.n_speakers * self.seeds)
        then = self.sigma_u**2 / self.n_speakers + e2 / (self.n_speakers * seeds)
        scale = float(np.sqrt(then / now)) if now > 0 else 1.0
        return mde_factor(self.n_speakers - 1, alpha, power) * self.se * scale

    def mde_components(self, seeds: float | None = None, alpha: float = 0.05, power: float = 0.8) -> float:
        """The MDE the variance components imply for `seeds` seeds (default today's):
        factor x sqrt(sigma_u^2 / S + sigma_e^2 / (S K)); nan with one seed (no sigma_e). With
        sigma_u^2 clipped to 0 this is larger than the observed-SE MDE: the speaker means spread
        less than their seeds predict, which with few speakers is luck, not a smaller noise."""
        if np.isnan(self.sigma_e):
            return float("nan")
        k = self.seeds if seeds is None else seeds
        var = self.sigma_u**2 / self.n_speakers + self.sigma_e**2 / (self.n_speakers * k)
        return mde_factor(self.n_speakers - 1, alpha, power) * float(np.sqrt(var))

    @property
    def mde_conservative(self) -> float:
        """The headline MDE (docs/design.md §10): the larger of the observed-SE MDE and the
        variance components' one, so that a lucky spread of speaker means never makes the design
        look more sensitive than its seed noise allows."""
        components = self.mde_components()
        return self.mde if np.isnan(components) else max(self.mde, components)

    def mde_conservative_with(self, seeds: int) -> float:
        """Projections to more seeds from the conservative figure: the larger of the two
        projections at `seeds` seeds."""
        components = self.mde_components(seeds)
        return self.mde_with(seeds) if np.isnan(components) else max(self.mde_with(seeds), components)


def mde_factor(df: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """(t_{1 - alpha/2} + t_{power}) on `df` degrees of freedom: the MDE in standard errors."""
    return float(stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df))


def clustered_difference(
    d: Mapping[str, Sequence[float]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> ClusteredDifference:
    """Summarise paired differences grouped by speaker: speaker -> its runs' differences (one per
    seed). Needs 2+ speakers; speakers may have different numbers of runs (the mean of each
    speaker's runs is the speaker's value)."""
    groups = {s: np.asarray(v, dtype=np.float64) for s, v in d.items()}
    if len(groups) < 2 or any(len(v) == 0 for v in groups.values()):
        raise ValueError("a clustered difference needs at least 2 speakers, each with at least one run")
    if not all(np.isfinite(v).all() for v in groups.values()):
        raise ValueError("differences must be finite")
    means = np.array([v.mean() for v in groups.values()])
    n_s = len(means)
    mean = float(means.mean())
    se = float(means.std(ddof=1) / np.sqrt(n_s))
    half = float(stats.t.ppf(0.975, n_s - 1)) * se
    within = [v.var(ddof=1) for v in groups.values() if len(v) > 1]
    k = float(np.mean([len(v) for v in groups.values()]))
    sigma_e2 = float(np.mean(within)) if within else float("nan")
    sigma_u2_moment = float(means.var(ddof=1)) - (0.0 if np.isnan(sigma_e2) else sigma_e2 / k)
    sigma_u2 = max(0.0, sigma_u2_moment)
    rng = np.random.default_rng(seed)
    boot = means[rng.integers(0, n_s, size=(resamples, n_s))].mean(axis=1)
    p = float(2 * stats.t.sf(abs(mean / se), n_s - 1)) if se > 0 else (1.0 if mean == 0 else 0.0)
    return ClusteredDifference(
        n_speakers=n_s,
        n_runs=sum(len(v) for v in groups.values()),
        mean=mean,
        se=se,
        ci=(mean - half, mean + half),
        bootstrap_ci=(float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))),
        mde=mde_factor(n_s - 1) * se,
        sigma_u=float(np.sqrt(sigma_u2)),
        sigma_e=float(np.sqrt(sigma_e2)) if not np.isnan(sigma_e2) else float("nan"),
        p_value=p,
        wins=int(np.sum(means > TIE)),
        sigma_u_clipped=sigma_u2_moment < 0,
    )
