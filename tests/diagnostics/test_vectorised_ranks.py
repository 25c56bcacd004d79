"""The all-rows Kendall and Spearman paths equal the one-row-at-a-time scipy computations bit for bit (ties,
constant rows, missing entries), as the round's diagnostics must log the same numbers as before."""

import numpy as np
from scipy import stats

from rlhfsim.diagnostics.advantage import _pearson, within_prompt_rank_corr
from rlhfsim.diagnostics.collapse import mean_kendall_tau


def _tau_per_row(R, G):
    taus = []
    for r, g in zip(R, G):
        ok = np.isfinite(r) & np.isfinite(g)
        r, g = r[ok], g[ok]
        if r.size >= 2 and np.ptp(r) != 0 and np.ptp(g) != 0:
            taus.append(float(stats.kendalltau(r, g).statistic))
    return float(np.mean(taus)) if taus else float("nan")


def _rho_per_row(R, G):
    rhos = []
    for r, g in zip(R, G):
        ok = np.isfinite(r) & np.isfinite(g)
        r, g = r[ok], g[ok]
        if r.size >= 2 and np.ptp(r) != 0 and np.ptp(g) != 0:
            rhos.append(_pearson(stats.rankdata(r), stats.rankdata(g)))
    return float(np.mean(rhos)) if rhos else float("nan")


def test_all_rows_equal_per_row_scipy_bit_for_bit():
    rng = np.random.default_rng(0)
    for trial in range(120):
        P, k = int(rng.integers(1, 120)), int(rng.integers(1, 10))
        R = rng.normal(size=(P, k))
        G = rng.integers(0, 4, size=(P, k)) / 3.0  # graded gold: many ties
        R[rng.random((P, k)) < 0.2] = 0.5  # proxy ties
        if trial % 3 == 0:
            R[rng.random((P, k)) < 0.05] = np.nan
        if trial % 5 == 0:
            G[rng.random(P) < 0.3] = 1.0  # constant gold rows
        for new, old in ((mean_kendall_tau, _tau_per_row), (within_prompt_rank_corr, _rho_per_row)):
            a, b = old(R, G), new(R, G)
            assert a == b or (np.isnan(a) and np.isnan(b)), (new.__name__, trial, a, b)
