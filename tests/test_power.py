"""The study analysis: the speaker-level interval, its minimum detectable effect and the
variance components, checked against closed forms and by simulation of the model they assume."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from trnet.report.power import clustered_difference, mde_factor


def test_interval_is_the_t_interval_on_speaker_means() -> None:
    d = {"a": [1.0, 3.0], "b": [0.0, 0.0], "c": [4.0, 2.0], "d": [-1.0, 1.0]}
    r = clustered_difference(d)
    means = np.array([2.0, 0.0, 3.0, 0.0])
    lo, hi = stats.t.interval(0.95, 3, loc=means.mean(), scale=stats.sem(means))
    assert r.mean == pytest.approx(1.25) and r.ci == pytest.approx((lo, hi))
    assert r.n_speakers == 4 and r.n_runs == 8 and r.wins == 2
    assert r.p_value == pytest.approx(stats.ttest_1samp(means, 0).pvalue)
    assert r.mde == pytest.approx((stats.t.ppf(0.975, 3) + stats.t.ppf(0.8, 3)) * stats.sem(means))
    # within-speaker variance: mean of (2, 0, 2, 2); between = var(means) - that / 2
    assert r.sigma_e == pytest.approx(np.sqrt(1.5))
    assert r.sigma_u == pytest.approx(np.sqrt(means.var(ddof=1) - 1.5 / 2))
    assert r.bootstrap_ci[0] <= r.mean <= r.bootstrap_ci[1]


def test_mde_factor_nine_speakers() -> None:
    assert mde_factor(8) == pytest.approx(2.306 + 0.889, abs=1e-3)
    assert mde_factor(10_000) == pytest.approx(1.960 + 0.842, abs=1e-3)


def test_more_seeds_shrink_only_the_within_speaker_part() -> None:
    r = clustered_difference({s: [s_i, s_i + 2.0] for s_i, s in enumerate("abcdefghi")})
    assert r.mde_with(2) == pytest.approx(r.mde, rel=1e-9)
    assert r.mde_with(100) < r.mde_with(4) < r.mde
    assert r.mde_with(10**9) == pytest.approx(mde_factor(8) * r.sigma_u / 3, rel=1e-3)


def test_projection_is_anchored_to_the_measured_se_when_sigma_u_is_clipped() -> None:
    """Speaker means that spread less than their seeds predict: sigma_u's moment estimate is
    negative and reported as 0; projecting from the components alone would give a larger MDE
    at today's seeds than the one measured. Anchored, today's K gives today's MDE and more
    seeds shrink it as 1 / sqrt(K)."""
    d = {s: [10.0 * (-1) ** i, -10.0 * (-1) ** i] for i, s in enumerate("abcdefghi")}  # every mean 0 ...
    d["a"] = [11.0, -9.0]  # ... but one, so the SE is not 0
    r = clustered_difference(d)
    assert r.sigma_u_clipped and r.sigma_u == 0.0 and r.seeds == 2
    assert r.mde_with(2) == pytest.approx(r.mde, rel=1e-12)
    assert r.mde_with(8) == pytest.approx(r.mde / 2, rel=1e-12)
    r2 = clustered_difference({s: [s_i, s_i + 2.0] for s_i, s in enumerate("abcdefghi")})
    assert not r2.sigma_u_clipped


def test_the_headline_mde_is_the_conservative_one() -> None:
    """design §10: the larger of the observed-SE MDE and the variance components' leads. Clipped
    sigma_u: the components (sigma_e alone) give more than the lucky observed SE; unclipped and
    balanced, the two agree; projections to more seeds start from the larger."""
    d = {s: [10.0 * (-1) ** i, -10.0 * (-1) ** i] for i, s in enumerate("abcdefghi")}
    d["a"] = [11.0, -9.0]
    r = clustered_difference(d)
    components = mde_factor(8) * np.sqrt(r.sigma_e**2 / (9 * 2))  # sigma_u = 0
    assert r.mde_components() == pytest.approx(components) and components > r.mde
    assert r.mde_conservative == pytest.approx(components)
    assert r.mde_conservative_with(8) == pytest.approx(components / 2)
    r2 = clustered_difference({s: [s_i, s_i + 2.0 + 0.5 * s_i] for s_i, s in enumerate("abcdefghi")})
    assert not r2.sigma_u_clipped
    assert r2.mde_components() == pytest.approx(r2.mde, rel=1e-9) == r2.mde_conservative
    one_seed = clustered_difference({s: [float(i)] for i, s in enumerate("abcd")})
    assert np.isnan(one_seed.mde_components()) and one_seed.mde_conservative == one_seed.mde


def test_coverage_and_power_by_simulation() -> None:
    """Under the random-effects model (9 speakers x 2 seeds), the interval covers mu ~95 % of
    the time, and a true effect equal to the expected MDE is detected ~80 % of the time."""
    rng = np.random.default_rng(0)
    sigma_u, sigma_e, s, k = 1.5, 2.0, 9, 2
    se = np.sqrt(sigma_u**2 / s + sigma_e**2 / (s * k))
    mde = mde_factor(s - 1) * se
    cover = detect = 0
    reps = 2000
    for _ in range(reps):
        u = rng.normal(0, sigma_u, s)
        d0 = {str(i): 0.7 + u[i] + rng.normal(0, sigma_e, k) for i in range(s)}
        r = clustered_difference(d0, resamples=10)
        cover += r.ci[0] <= 0.7 <= r.ci[1]
        d1 = {str(i): mde + u[i] + rng.normal(0, sigma_e, k) for i in range(s)}
        detect += clustered_difference(d1, resamples=10).p_value < 0.05
    assert abs(cover / reps - 0.95) < 0.02
    assert abs(detect / reps - 0.80) < 0.05  # noncentral t: ~0.78 at this MDE approximation


@pytest.mark.parametrize("d", [{"a": [1.0]}, {"a": [1.0], "b": []}, {"a": [1.0], "b": [float("nan")]}])
def test_refuses_too_little_or_non_finite(d) -> None:
    with pytest.raises(ValueError):
        clustered_difference(d)


def test_a_tie_is_not_ahead_whatever_the_rounding() -> None:
    # speaker "b" scores exactly alike in both systems; its mean differs from 0 only by float
    # noise, whose sign must not decide "ahead" (a committed CSV's 6 decimals flip it)
    r = clustered_difference({"a": [1.0, 2.0], "b": [0.1 + 0.2 - 0.3, 0.0], "c": [-1.0, -0.5]})
    assert r.wins == 1
    assert clustered_difference({"a": [0.01, 0.02], "b": [-1e-9, 1e-9], "c": [0.5, 0.4]}).wins == 2
