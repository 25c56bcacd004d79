"""Dose-response across paired seeds: per-seed OLS slope of an endpoint on a dose, then a test of the mean slope.

Each seed is one experimental unit (same SFT, same prompts in every arm), so the arms of a seed are paired and
the seed's slope of the endpoint (e.g. gold gain) on the dose (e.g. surgery.dial) is one number per seed:

    b_s = sum_d (x_d - xbar_s)(y_sd - ybar_s) / sum_d (x_d - xbar_s)^2        (over the doses seed s has)

The mean slope is tested with a one-sample t test across seeds (H0: mean slope 0), with a t interval and a
percentile bootstrap interval over seeds beside it. The minimal detectable effect (MDE) is the mean slope the
test finds with the asked power, from the per-seed slope SD of a pilot: the noncentral-t solution, with the
normal approximation (z_{1-a/2} + z_power) * sd / sqrt(n) as its large-n check.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats


def per_seed_slopes(dose: np.ndarray, y: np.ndarray) -> np.ndarray:
    """OLS slope of y on dose per seed. dose: [D]; y: [S, D] (NaN = that seed lacks that dose). Returns [S];
    NaN for a seed with fewer than two distinct doses."""
    x = np.broadcast_to(np.asarray(dose, dtype=np.float64), np.shape(y))
    y = np.asarray(y, dtype=np.float64)
    ok = ~np.isnan(y)
    n = ok.sum(1)
    xm = np.where(ok, x, 0).sum(1) / np.maximum(n, 1)
    ym = np.where(ok, y, 0).sum(1) / np.maximum(n, 1)
    dx = np.where(ok, x - xm[:, None], 0.0)
    sxx = (dx**2).sum(1)
    sxy = (dx * np.where(ok, y - ym[:, None], 0.0)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 0, sxy / sxx, np.nan)


def slopes_from_table(df: pd.DataFrame, endpoint: str, dose: str, seed: str = "seed") -> pd.Series:
    """Per-seed slopes from a tidy table (one row per run: seed, dose, endpoint); index = seed."""
    wide = df.pivot_table(index=seed, columns=dose, values=endpoint, aggfunc="mean")
    return pd.Series(per_seed_slopes(wide.columns.to_numpy(dtype=float), wide.to_numpy()), index=wide.index, name=f"slope/{endpoint}")


def slope_test(slopes: np.ndarray, alpha: float = 0.05, n_boot: int = 10_000, seed: int = 0) -> dict:
    """Test of the mean per-seed slope: {n, mean, sd, t, p (two-sided), ci_t, ci_boot} (NaN slopes dropped)."""
    b = np.asarray(slopes, dtype=np.float64)
    b = b[~np.isnan(b)]
    n = b.size
    if n < 2:
        raise ValueError(f"a slope test needs at least 2 seeds with a slope, got {n}")
    mean, sd = float(b.mean()), float(b.std(ddof=1))
    se = sd / np.sqrt(n)
    res = stats.ttest_1samp(b, 0.0)
    half = float(stats.t.ppf(1 - alpha / 2, n - 1)) * se
    boot = np.random.default_rng(seed).choice(b, size=(n_boot, n), replace=True).mean(1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return {"n": n, "mean": mean, "sd": sd, "t": float(res.statistic), "p": float(res.pvalue),
            "ci_t": (mean - half, mean + half), "ci_boot": (float(lo), float(hi))}


def power_t(effect: float, n: int, sd: float, alpha: float = 0.05) -> float:
    """Power of the two-sided one-sample t test (n units, unit SD sd) at a true mean `effect`."""
    df, nc = n - 1, effect * np.sqrt(n) / sd
    crit = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def minimal_detectable_effect(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest mean effect the two-sided one-sample t test over n units detects with `power` (noncentral t)."""
    if n < 2 or sd <= 0:
        raise ValueError(f"need n >= 2 units and sd > 0, got n={n}, sd={sd}")
    # power rises with the effect: grow the bracket from the normal answer (scipy's nct is NaN far out in the tail)
    hi = minimal_detectable_effect_normal(n, sd, alpha, power)
    while power_t(hi, n, sd, alpha) < power:
        hi *= 1.5
    return float(optimize.brentq(lambda e: power_t(e, n, sd, alpha) - power, 0.0, hi, xtol=1e-12 * sd))


def minimal_detectable_effect_normal(n: int, sd: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The normal approximation (z_{1-alpha/2} + z_power) * sd / sqrt(n); below the t answer for small n."""
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * sd / np.sqrt(n))
