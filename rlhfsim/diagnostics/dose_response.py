"""Dose-response across paired seeds: per-seed OLS slope of an endpoint on a dose, then a test of the mean slope.

Each seed is one experimental unit (same SFT, same prompts in every arm), so the arms of a seed are paired and
the seed's slope of the endpoint (e.g. gold gain) on the dose (e.g. surgery.dial) is one number per seed:

    b_s = sum_d (x_d - xbar_s)(y_sd - ybar_s) / sum_d (x_d - xbar_s)^2        (over the doses seed s has)

The mean slope is tested with a one-sample t test across seeds (H0: mean slope 0), with a t interval and a
percentile bootstrap interval over seeds beside it. The minimal detectable effect (MDE) is the mean slope the
test finds with the asked power, from the per-seed slope SD of a pilot: the noncentral-t solution, with the
normal approximation (z_{1-a/2} + z_power) * sd / sqrt(n) as its large-n check.

Which doses a test uses: the OLS slope weighs dose d by (x_d - xbar) / Sxx, so with doses {0, 0.5, 1} it is exactly
y(1) - y(0) and the middle arm carries no weight (:func:`slope_weights`, :func:`zero_weight_doses`). Two ways to use
every arm: the per-seed curvature (:func:`per_seed_curvature`, the x^2 coefficient of a quadratic fit, from the
orthogonal quadratic contrast; the slope is the orthogonal linear one), and a declared contrast (:func:`per_seed_contrast`:
weights per dose summing to 0, e.g. "any collapse" = mean over doses > 0 minus dose 0).
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


def slope_weights(doses) -> np.ndarray:
    """The OLS slope as a contrast: weights [D] with slope = sum_d w_d y_d, w_d = (x_d - xbar) / Sxx (doses [D], distinct)."""
    x = np.asarray(doses, dtype=np.float64)
    dx = x - x.mean()
    return dx / (dx @ dx)


def zero_weight_doses(doses, weights=None, tol: float = 1e-12) -> list[float]:
    """The doses a test ignores: weight 0 in `weights` [D] (default the OLS slope's, :func:`slope_weights`)."""
    x = np.asarray(doses, dtype=np.float64)
    w = slope_weights(x) if weights is None else np.asarray(weights, dtype=np.float64)
    scale = max(float(np.abs(w).max()), 1e-300)
    return [float(d) for d, wd in zip(x, w) if abs(wd) <= tol * scale]


def quadratic_contrast(doses) -> np.ndarray:
    """[D] orthogonal quadratic contrast q (q . 1 = q . x = 0), scaled so that q . x^2 = 1: then q . y is the x^2
    coefficient of the least-squares quadratic through y (exact: y = a + b x + c x^2 gives q . y = c). Needs D >= 3."""
    x = np.asarray(doses, dtype=np.float64)
    if np.unique(x).size < 3:
        raise ValueError(f"a curvature needs at least 3 distinct doses, got {sorted(set(x.tolist()))}")
    basis = np.stack([np.ones_like(x), x - x.mean()])  # [2, D], orthogonal
    q = x**2 - (basis @ x**2 / (basis * basis).sum(1)) @ basis  # x^2 minus its projection on span(1, x)
    return q / (q @ x**2)


def per_seed_contrast(y: np.ndarray, weights) -> np.ndarray:
    """sum_d w_d y_sd per seed. y: [S, D]; weights: [D]. Returns [S]; NaN for a seed lacking a dose with nonzero weight."""
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    used = w != 0
    out = np.where(used, y, 0.0) @ w
    return np.where(np.isnan(y[:, used]).any(1), np.nan, out)


def per_seed_curvature(dose, y: np.ndarray) -> np.ndarray:
    """The x^2 coefficient of each seed's least-squares quadratic in the dose. dose: [D]; y: [S, D] -> [S] (NaN for a
    seed missing a dose). Beside :func:`per_seed_slopes` (the orthogonal linear part) it uses the middle arms."""
    return per_seed_contrast(y, quadratic_contrast(dose))


def slopes_from_table(df: pd.DataFrame, endpoint: str, dose: str, seed: str = "seed") -> pd.Series:
    """Per-seed slopes from a tidy table (one row per run: seed, dose, endpoint); index = seed."""
    wide = df.pivot_table(index=seed, columns=dose, values=endpoint, aggfunc="mean")
    return pd.Series(
        per_seed_slopes(wide.columns.to_numpy(dtype=float), wide.to_numpy()), index=wide.index, name=f"slope/{endpoint}"
    )


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
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "t": float(res.statistic),
        "p": float(res.pvalue),
        "ci_t": (mean - half, mean + half),
        "ci_boot": (float(lo), float(hi)),
    }


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
