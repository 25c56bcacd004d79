"""Per-seed dose-response slopes, the mean-slope test, and the minimal detectable effect, on constructed data."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.diagnostics.dose_response import (
    minimal_detectable_effect,
    minimal_detectable_effect_normal,
    per_seed_slopes,
    power_t,
    slope_test,
    slopes_from_table,
)

DOSE = np.array([0.0, 0.5, 1.0])


def constructed(slope, n_seeds, sd_slope=0.02, noise=0.01, seed=0):
    """[S, D] endpoint = seed offset + (slope + seed's own slope deviation) * dose + noise."""
    rng = np.random.default_rng(seed)
    b = slope + rng.normal(0, sd_slope, size=(n_seeds, 1))
    return rng.normal(0, 1, size=(n_seeds, 1)) + b * DOSE + rng.normal(0, noise, size=(n_seeds, DOSE.size)), b.ravel()


def test_per_seed_slopes_match_polyfit_and_ignore_offsets():
    y, _ = constructed(-0.1, 12)
    want = [np.polyfit(DOSE, row, 1)[0] for row in y]
    assert np.allclose(per_seed_slopes(DOSE, y), want)
    assert np.allclose(per_seed_slopes(DOSE, y + 5.0), want)  # a seed's offset is not dose-response
    exact = 0.3 + (-0.2) * DOSE
    assert np.allclose(per_seed_slopes(DOSE, np.stack([exact, exact + 1])), -0.2)


def test_missing_doses_and_degenerate_seeds():
    y = np.array([[0.0, np.nan, 1.0], [1.0, np.nan, np.nan], [2.0, 1.5, np.nan]])
    got = per_seed_slopes(DOSE, y)
    assert np.isclose(got[0], 1.0) and np.isnan(got[1]) and np.isclose(got[2], -1.0)


def test_slopes_from_a_tidy_table():
    y, _ = constructed(0.2, 4)
    df = pd.DataFrame([{"seed": s, "dial": d, "gold_gain": y[s, j]} for s in range(4) for j, d in enumerate(DOSE)])
    got = slopes_from_table(df.sample(frac=1, random_state=0), "gold_gain", "dial")
    assert list(got.index) == [0, 1, 2, 3] and np.allclose(got.to_numpy(), per_seed_slopes(DOSE, y))


def test_slope_test_recovers_a_known_slope():
    y, _ = constructed(-0.15, 10)
    r = slope_test(per_seed_slopes(DOSE, y))
    assert r["n"] == 10 and r["p"] < 1e-6 and r["mean"] < 0
    for lo, hi in (r["ci_t"], r["ci_boot"]):
        assert lo < -0.15 < hi and hi < 0
    with pytest.raises(ValueError, match="2 seeds"):
        slope_test([0.1, np.nan])


def test_false_positive_rate_and_coverage_under_the_null():
    """No dose-response: the t test rejects about alpha of the time; a true slope is covered about 1 - alpha."""
    rng = np.random.default_rng(1)
    reps, n, alpha = 2000, 10, 0.05
    b = rng.normal(0, 0.03, size=(reps, n))
    rejects = np.array([slope_test(row, alpha, n_boot=10)["p"] < alpha for row in b])
    se = np.sqrt(alpha * (1 - alpha) / reps)
    assert abs(rejects.mean() - alpha) < 4 * se


def test_minimal_detectable_effect_has_the_asked_power():
    n, sd = 10, 0.04
    mde = minimal_detectable_effect(n, sd)
    assert np.isclose(power_t(mde, n, sd), 0.8, atol=1e-6)
    # Monte Carlo: at the MDE the test rejects about 80% of the time
    rng = np.random.default_rng(2)
    b = mde + rng.normal(0, sd, size=(4000, n))
    t = b.mean(1) / (b.std(1, ddof=1) / np.sqrt(n))
    from scipy import stats

    hit = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert abs(hit - 0.8) < 0.03
    # more seeds or less noise detect smaller effects; power 0.9 needs a larger effect than 0.8
    assert minimal_detectable_effect(20, sd) < mde and minimal_detectable_effect(n, sd / 2) < mde
    assert minimal_detectable_effect(n, sd, power=0.9) > mde


def test_noncentral_t_and_normal_approximation_agree_for_many_units():
    for n in (200, 1000):
        t, z = minimal_detectable_effect(n, 1.0), minimal_detectable_effect_normal(n, 1.0)
        assert z < t and abs(t / z - 1) < 0.01
    assert minimal_detectable_effect(5, 1.0) / minimal_detectable_effect_normal(5, 1.0) > 1.1  # small n: t is wider


def test_slope_and_curvature_of_a_known_quadratic_dose_series_are_recovered():
    """y_sd = a_s + b (x - 0.5) + c (x - 0.5)^2 + 0 noise on doses {0, 0.5, 1}: per seed the OLS slope is b and the
    curvature c (the x^2 coefficient), whatever the seed's level a_s; the slope weighs dose 0.5 by exactly 0."""
    from rlhfsim.diagnostics.dose_response import (
        per_seed_contrast,
        per_seed_curvature,
        quadratic_contrast,
        slope_weights,
        zero_weight_doses,
    )

    x = np.array([0.0, 0.5, 1.0])
    a = np.array([0.3, -0.1, 0.7])[:, None]
    b, c = -0.04, 0.06
    y = a + b * (x - 0.5) + c * (x - 0.5) ** 2  # [S=3, D=3]
    np.testing.assert_allclose(per_seed_slopes(x, y), b, atol=1e-14)
    np.testing.assert_allclose(per_seed_curvature(x, y), c, atol=1e-14)
    np.testing.assert_allclose(slope_weights(x), [-1, 0, 1])  # slope = y(1) - y(0)
    assert zero_weight_doses(x) == [0.5] and zero_weight_doses([0, 0.25, 1]) == []
    assert zero_weight_doses(x, [-1, 0.5, 0.5]) == []
    q = quadratic_contrast(x)
    np.testing.assert_allclose([q.sum(), q @ x, q @ x**2], [0, 0, 1], atol=1e-12)
    # unequal spacing: still exact for any quadratic
    x2 = np.array([0.0, 0.2, 0.3, 1.0])
    y2 = 1.0 + 2.0 * x2 - 3.0 * x2**2
    assert per_seed_curvature(x2, y2[None])[0] == pytest.approx(-3.0)
    # "any collapse": mean of doses > 0 minus dose 0
    assert per_seed_contrast(y, [-1, 0.5, 0.5])[0] == pytest.approx(0.5 * (y[0, 1] + y[0, 2]) - y[0, 0])
    y_nan = y.copy()
    y_nan[1, 1] = np.nan
    assert np.isnan(per_seed_curvature(x, y_nan)[1]) and np.isfinite(per_seed_contrast(y_nan, [-1, 0, 1])[1])
