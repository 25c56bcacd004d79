"""Reward-model overoptimisation: the Gao, Schulman, Hilton (2022) scaling forms and best-of-n.

Gold reward (usually measured relative to the initial policy) as a function of the distance
``d = sqrt(KL(pi || pi_ref))`` follows::

    RL:          R(d) = d * (alpha - beta * log d)
    best-of-n:   R(d) = d * (alpha - beta * d),     KL_bon(n) = log n - (n - 1) / n

Both are linear in ``(alpha, beta)``, so fitting is ordinary least squares without an intercept
(``R(0) = 0`` by construction). :func:`best_of_n` gives the unbiased best-of-n estimate from
``N >= n`` samples per prompt, so one set of samples traces the whole best-of-n curve.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from scipy.special import gammaln

__all__ = [
    "GAO_SHAPES",
    "proxy_gold_gap",
    "standardised_w1",
    "best_of_n",
    "best_of_n_curve",
    "bon_kl",
    "fit_gao",
    "fixed_proxy_rounds",
    "gao_bon",
    "gao_rl",
    "gao_shape",
    "gao_shares",
]


def gao_rl(d, alpha: float, beta: float):
    """RL form ``d * (alpha - beta * log d)`` for ``d >= 0`` (its limit 0 at ``d = 0``). Same shape as ``d``."""
    d = np.asarray(d, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = d * (alpha - beta * np.log(d))
    return np.where(d == 0, 0.0, out)


def gao_bon(d, alpha: float, beta: float):
    """Best-of-n form ``d * (alpha - beta * d)``. Same shape as ``d``."""
    d = np.asarray(d, dtype=np.float64)
    return d * (alpha - beta * d)


def bon_kl(n):
    """Analytic KL of best-of-n sampling to the base policy: ``log n - (n - 1) / n`` (0 at n = 1)."""
    n = np.asarray(n, dtype=np.float64)
    return np.log(n) - (n - 1.0) / n


def _design(d: np.ndarray, form: str) -> np.ndarray:
    """Columns multiplying (alpha, beta): ``[d, -d log d]`` (rl) or ``[d, -d^2]`` (bon). -> ``[n, 2]``."""
    if form == "rl":
        with np.errstate(divide="ignore", invalid="ignore"):
            dlogd = np.where(d > 0, d * np.log(d), 0.0)
        return np.stack([d, -dlogd], axis=1)
    if form == "bon":
        return np.stack([d, -d * d], axis=1)
    raise ValueError(f"unknown form {form!r}; valid: 'rl', 'bon'")


def _peak(alpha: float, beta: float, form: str) -> tuple[float, float]:
    """(argmax over d >= 0, max) of the fitted curve; ``inf`` when the curve grows without bound."""
    if beta > 0:
        if form == "rl":
            # dR/dd = alpha - beta (log d + 1) = 0; there R = beta * d
            d = float(np.exp(alpha / beta - 1.0))
            return d, beta * d
        d = max(alpha, 0.0) / (2.0 * beta)
        return d, float(gao_bon(d, alpha, beta))
    # beta <= 0: no interior maximum; unbounded unless the curve never rises (then the peak is d=0)
    if beta < 0 or alpha > 0:
        return float("inf"), float("inf")
    return 0.0, 0.0


def fit_gao(d, R, form: str = "rl") -> dict[str, float]:
    """Least-squares fit of the Gao et al. form to points ``(d [n], R [n])``.

    ``d`` is ``sqrt(KL)`` (>= 0), ``R`` typically gold reward minus its initial value.
    Non-finite points and ``d < 0`` are dropped.

    Returns ``alpha``, ``beta``, ``r2`` (``1 - SS_res / SS_tot`` with ``SS_tot`` about the mean of
    ``R``; can be negative for a no-intercept fit), ``d_peak`` / ``r_peak`` (argmax and maximum of the
    fitted curve over ``d >= 0``: ``exp(alpha / beta - 1)`` for rl, ``alpha / (2 beta)`` for bon;
    ``inf`` when ``beta <= 0`` and the curve rises without bound), and ``n`` (points used). All NaN
    (``n`` excepted) when fewer than 2 points or the design is rank-deficient.
    """
    d, R = np.asarray(d, dtype=np.float64).ravel(), np.asarray(R, dtype=np.float64).ravel()
    if d.shape != R.shape:
        raise ValueError(f"d {d.shape} and R {R.shape} differ in shape")
    ok = np.isfinite(d) & np.isfinite(R) & (d >= 0)
    d, R = d[ok], R[ok]
    X = _design(d, form)
    nan = float("nan")
    out = {"alpha": nan, "beta": nan, "r2": nan, "d_peak": nan, "r_peak": nan, "n": int(d.size)}
    if d.size < 2 or np.linalg.matrix_rank(X) < 2:
        return out
    (alpha, beta), *_ = np.linalg.lstsq(X, R, rcond=None)
    resid = R - X @ np.array([alpha, beta])
    ss_tot = float(((R - R.mean()) ** 2).sum())
    ss_res = float((resid**2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res <= 1e-24 else nan)
    d_peak, r_peak = _peak(float(alpha), float(beta), form)
    out.update(alpha=float(alpha), beta=float(beta), r2=r2, d_peak=d_peak, r_peak=r_peak)
    return out


def _bon_weights(N: int, n: int) -> np.ndarray:
    """``w[i] = C(i, n-1) / C(N, n)`` for 0-based ``i`` (the i-th smallest of N is the max of a random n-subset).

    Computed in log space so large ``N`` does not overflow. -> ``[N]``, sums to 1.
    """
    i = np.arange(N, dtype=np.float64)
    w = np.zeros(N)
    top = i >= n - 1
    j = i[top]
    log_c = gammaln(j + 1) - gammaln(n) - gammaln(j - n + 2)
    log_total = gammaln(N + 1) - gammaln(n + 1) - gammaln(N - n + 1)
    w[top] = np.exp(log_c - log_total)
    return w


def _order(proxy_row: np.ndarray) -> np.ndarray:
    """Ascending order by proxy; among ties the EARLIER index ranks higher, as ``np.argmax`` picks it."""
    idx = np.arange(proxy_row.size)
    return np.lexsort((-idx, proxy_row))


def best_of_n(scores_proxy, scores_gold, n: int) -> tuple[float, float]:
    """Unbiased best-of-n estimate from ``N >= n`` samples per prompt.

    Args:
        scores_proxy: ``[P, N]`` proxy scores of N iid completions per prompt.
        scores_gold: ``[P, N]`` gold scores of the same completions.
        n: best-of-n size, ``1 <= n``.

    Returns ``(proxy_mean, gold_mean)``: over prompts, the expected proxy maximum and the expected
    gold reward of the proxy-argmax among ``n`` samples drawn without replacement from the ``N``.
    Sorting a row by proxy, its i-th smallest (1-based) is the maximum of a uniformly random
    ``n``-subset with probability ``C(i-1, n-1) / C(N, n)``; that weighting averages over all
    ``C(N, n)`` subsets exactly. Proxy ties go to the earliest sample (``np.argmax``'s rule). Entries
    that are NaN in either array are dropped per prompt; prompts left with fewer than ``n``
    samples are skipped (NaN if none remain).
    """
    px, gd = np.asarray(scores_proxy, dtype=np.float64), np.asarray(scores_gold, dtype=np.float64)
    if px.ndim != 2 or px.shape != gd.shape:
        raise ValueError(f"expected equal [P, N] arrays, got {px.shape} and {gd.shape}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    weights: dict[int, np.ndarray] = {}
    p_est, g_est = [], []
    for prow, grow in zip(px, gd):
        ok = np.isfinite(prow) & np.isfinite(grow)
        prow, grow = prow[ok], grow[ok]
        N = prow.size
        if N < n:
            continue
        if N not in weights:
            weights[N] = _bon_weights(N, n)
        order = _order(prow)
        p_est.append(float(weights[N] @ prow[order]))
        g_est.append(float(weights[N] @ grow[order]))
    if not p_est:
        return float("nan"), float("nan")
    return float(np.mean(p_est)), float(np.mean(g_est))


def best_of_n_curve(scores_proxy, scores_gold, ns: Iterable[int]) -> pd.DataFrame:
    """Best-of-n curve: one row per ``n`` with columns ``n, kl, d, proxy, gold``.

    ``kl = bon_kl(n)``, ``d = sqrt(kl)``; ``proxy`` and ``gold`` from :func:`best_of_n` on the same
    ``[P, N]`` samples. Subtract the ``n = 1`` gold to get the gain that :func:`fit_gao` (``form="bon"``) fits.
    """
    rows = []
    for n in ns:
        kl = float(bon_kl(int(n)))
        proxy, gold = best_of_n(scores_proxy, scores_gold, int(n))
        rows.append({"n": int(n), "kl": kl, "d": float(np.sqrt(max(kl, 0.0))), "proxy": proxy, "gold": gold})
    return pd.DataFrame(rows, columns=["n", "kl", "d", "proxy", "gold"])


GAO_SHAPES = ("rise_fall", "rising", "falling", "unfit")


def gao_shape(fit: dict, d_max: float) -> str:
    """What a fitted Gao curve says over the observed range ``0 < d <= d_max``.

    ``rise_fall``: alpha > 0 and the fitted peak lies inside the observed range (gold rose, then fell: the
    over-optimisation the form describes); ``rising``: alpha > 0 and no peak inside the range; ``falling``:
    alpha <= 0 (gold fell from the start; the form's rise is not there); ``unfit``: no fit (NaN alpha).
    """
    alpha, d_peak = fit.get("alpha", float("nan")), fit.get("d_peak", float("nan"))
    if not np.isfinite(alpha):
        return "unfit"
    if alpha <= 0:
        return "falling"
    return "rise_fall" if np.isfinite(d_peak) and 0 < d_peak <= d_max else "rising"


def gao_shares(shapes: Iterable[str]) -> dict[str, float]:
    """Share of per-seed fits of each :data:`GAO_SHAPES` shape (``share_<shape>``, over fitted seeds) and ``n_fits``.

    The form "fits" a study only when most seeds rise then fall; report these shares beside any pooled fit.
    """
    shapes = [s for s in shapes if s != "unfit"]
    bad = set(shapes) - set(GAO_SHAPES)
    if bad:
        raise ValueError(f"unknown Gao shapes {sorted(bad)}; valid: {', '.join(GAO_SHAPES)}")
    n = len(shapes)
    out = {f"share_{s}": (shapes.count(s) / n if n else float("nan")) for s in GAO_SHAPES[:3]}
    out["n_fits"] = n
    return out


def fixed_proxy_rounds(rows: list[dict]) -> np.ndarray:
    """``[R]`` bool: the rounds whose PPO optimised one and the same proxy as the last round's.

    The trailing run of rounds with a frozen reward model (``rm/frozen`` 1) or none trained (gold as the
    reward), plus the round just before it, whose freshly trained model the frozen rounds kept. Round 0
    (SFT) has no proxy but anchors the curve at ``d = 0`` and counts when the run's first trained round does.
    """
    n = len(rows)
    fixed = np.zeros(n, dtype=bool)
    not_retrained = [r["round"] > 0 and (r.get("rm/frozen") == 1 or "rm/loss" not in r) for r in rows]
    i = n
    while i > 0 and not_retrained[i - 1]:
        i -= 1
    if i == n:  # the last round retrained the reward model: no fixed segment
        return fixed
    fixed[max(i - 1, 0) :] = True
    if i <= 1:  # fixed from round 1 on (or gold throughout): the SFT point belongs to the same curve
        fixed[0] = True
    return fixed


def proxy_gold_gap(proxy, gold, ref_proxy, ref_gold) -> float:
    """Mean proxy minus mean gold, each in standard units of a reference set (the loop: the SFT policy's probe
    samples, scored by the same proxy): proxy, gold [N]; ref_proxy, ref_gold [M]. 0 when both rose by the same
    number of reference standard deviations; > 0 when the proxy promises more than gold delivers (over-optimisation).
    A reference without spread counts as sd 1."""

    def units(x, ref):
        ref = np.asarray(ref, dtype=np.float64)
        sd = ref.std()
        return (float(np.mean(x)) - ref.mean()) / (sd if sd > 0 else 1.0)

    return float(units(proxy, ref_proxy) - units(gold, ref_gold))


def standardised_w1(proxy, gold) -> float:
    """Wasserstein-1 distance (scipy.stats.wasserstein_distance) between z-scored proxy and z-scored gold [N] each
    (ddof 0; a constant vector z-scores to 0): 0 when proxy is gold up to a positive affine map, so it measures
    how the shapes of the two distributions differ, not their location or scale."""
    from scipy.stats import wasserstein_distance

    def z(x):
        x = np.asarray(x, dtype=np.float64).ravel()
        sd = x.std()
        return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)

    return float(wasserstein_distance(z(proxy), z(gold)))
