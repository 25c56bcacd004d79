"""When does the policy stop improving, and what moved before it did?

Stagnation is the RLHF failure the simulator is built to catch: the policy keeps moving (KL between
consecutive policies stays positive) while the gold reward no longer rises. A detector must know the
noise of what it reads, so a window is "flat" only when its slope's interval covers 0, "rising" / "falling"
when the interval lies above / below it. Falling gold is its own state (over-optimisation), not stagnation.
Lagged correlations between per-round diagnostics ask which signal moves first.

The noise of a window slope: the held-out prompts are the same every round, so a prompt's difficulty is in every
round's gold and cancels in a slope. The exact SE is over prompts of each prompt's own window slope, sqrt(c' K c)
with K the rounds' covariance matrix over paired prompts (``eval/gold_cov_lag{l}``, rlhfsim.diagnostics.policy_eval).
Treating rounds as independent with each round's SE over prompts (``eval/gold_se``) counts the prompt spread as
noise in every round: far too wide when prompts differ more than rounds do (the fallback for runs without the
covariances).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

MDS_POWER = 0.8  # power at which the minimal detectable slope is stated
MAX_LAG = 4  # rounds back whose paired covariance each round logs: exact window-slope SEs for windows up to 5 rounds

__all__ = ["bootstrap_se", "detect_stagnation", "lagged_correlations", "window_cov", "window_slope"]


def bootstrap_se(x, n_boot: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error of the mean of ``x [P]`` (one value per prompt), resampling prompts.

    A fixed ``seed`` keeps the value a pure function of ``x`` (reproducible runs). NaN for fewer than 2 values.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    return float(x[idx].mean(axis=1).std(ddof=1))


def window_cov(gold_cov, rounds, start: int, window: int) -> np.ndarray | None:
    """[w, w] covariance of the window's gold estimates from per-round lag covariances, or None where it is incomplete.

    gold_cov: [R, L+1], row i holding round rounds[i]'s covariance with round rounds[i] - l (``eval/gold_cov_lag{l}``,
    NaN where not logged); rounds: [R]. K[a, b] = gold_cov[start + max(a, b), |a - b|]: needs consecutive round
    numbers inside the window (the lags are in rounds) and window - 1 <= L.
    """
    C = np.asarray(gold_cov, dtype=np.float64)
    r = np.asarray(rounds, dtype=np.float64)[start : start + window]
    if window - 1 >= C.shape[1] or not np.array_equal(r - r[0], np.arange(window)):
        return None
    a = np.arange(window)
    hi, lag = np.maximum.outer(a, a), np.abs(np.subtract.outer(a, a))  # [w, w]
    K = C[start + hi, lag]
    return K if np.isfinite(K).all() else None


def window_slope(r, g, se=None, cov=None) -> tuple[float, float, int]:
    """(least-squares slope of ``g`` on ``r``, its standard error, degrees of freedom for the interval).

    With the window's covariance matrix ``cov [w, w]`` (paired over prompts, :func:`window_cov`) the SE is exact:
    ``sqrt(c' K c)``, ``c_i = (r_i - mean r) / sum (r_j - mean r)^2``, the SE over prompts of each prompt's own slope
    (dof = inf: hundreds of prompts; normal interval). With per-point standard errors ``se`` (all finite) instead,
    ``sqrt(sum c_i^2 se_i^2)`` (rounds taken as independent). Without either, the OLS residual SE (dof = n - 2; NaN SE
    for n = 2).
    """
    r, g = np.asarray(r, float), np.asarray(g, float)
    rc = r - r.mean()
    c = rc / (rc * rc).sum()
    slope = float((c * g).sum())
    if cov is not None:
        return slope, float(np.sqrt(max(float(c @ np.asarray(cov, float) @ c), 0.0))), 10**9
    if se is not None and np.isfinite(se).all():
        return slope, float(np.sqrt((c * c * np.asarray(se, float) ** 2).sum())), 10**9
    dof = r.size - 2
    if dof < 1:
        return slope, float("nan"), 0
    resid = g - g.mean() - slope * rc
    return slope, float(np.sqrt((resid @ resid) / dof / (rc * rc).sum())), dof


def detect_stagnation(
    gold,
    policy_move,
    rounds=None,
    window: int = 3,
    gold_se=None,
    level: float = 0.95,
    min_slope: float = 0.0,
    move_threshold: float = 1e-3,
    move_se=None,
    gold_cov=None,
) -> dict:
    """The round from which the gold reward stops rising although the policy keeps moving.

    Args:
        gold: ``[R]`` gold reward of the policy per round (NaN allowed).
        policy_move: ``[R]`` KL from the previous round's policy to this round's (NaN allowed, e.g. round 0).
        rounds: ``[R]`` the caller's round numbers (default ``1..R``).
        window: rounds per window (>= 2).
        gold_se: ``[R]`` standard error of each round's gold (``eval/gold_se``); without it the window's
            own residual scatter is used (needs window >= 3; a 2-point window is then never decided).
        level: two-sided level of the slope's interval.
        min_slope: the interval must lie above ``+min_slope`` to count as rising and below ``-min_slope`` to
            count as falling (0: any slope distinguishable from noise).
        move_threshold: mean ``policy_move`` inside a window (into its 2nd..last round) above which the
            policy counts as moving.
        move_se: ``[R]`` standard error of each round's ``policy_move`` (``eval/policy_move_se``); with it the
            policy counts as moving only when the lower end of the mean move's interval (same ``level``) is
            above ``move_threshold``, so sampling noise in the KL estimate is not read as movement.
        gold_cov: ``[R, L+1]`` each round's covariance with the round ``l`` before it over the paired prompts
            (``eval/gold_cov_lag{l}``, NaN where missing); a window with all it needs uses the exact paired SE
            (:func:`window_cov`), else ``gold_se`` (independent rounds), else the residual scatter.

    Each window (``window`` consecutive rounds, all gold finite) is rising, falling or flat (the interval
    covers the band). Returns ``stagnation_round``: the first round starting a flat window while the
    policy moves after which no window rises (``None`` if none); ``first_flat_round``: the first
    flat-while-moving window, transient or not; ``overopt_round``: the first falling window while the
    policy moves (gold falling: over-optimisation, a separate state); ``final_state`` of the last decided
    window (``rising`` / ``flat`` / ``falling`` / ``None``); ``peak_round`` / ``peak_gold`` / ``final_gold``;
    ``slope_se``: the median SE of the decided windows' slopes; ``se_method``: ``paired`` / ``independent`` /
    ``residual`` (the one every decided window used) or ``mixed``; ``mds``: the minimal detectable slope, the true slope
    a window calls rising with probability 0.8 at the median SE (``min_slope + (z_level + z_0.8) * slope_se``; normal).
    """
    g = np.asarray(gold, dtype=np.float64).ravel()
    mv = np.asarray(policy_move, dtype=np.float64).ravel()
    r = np.arange(1, g.size + 1, dtype=np.float64) if rounds is None else np.asarray(rounds, dtype=np.float64).ravel()
    se = np.full(g.shape, np.nan) if gold_se is None else np.asarray(gold_se, dtype=np.float64).ravel()
    mse = (
        np.zeros(g.shape) if move_se is None else np.nan_to_num(np.asarray(move_se, dtype=np.float64).ravel(), nan=0.0)
    )
    if not (g.shape == mv.shape == r.shape == se.shape == mse.shape):
        raise ValueError(
            f"gold {g.shape}, policy_move {mv.shape}, gold_se {se.shape} and rounds {r.shape} differ in shape"
        )
    if window < 2:
        raise ValueError(f"window must be >= 2 to define a slope, got {window}")
    order = np.argsort(r, kind="stable")
    g, mv, r, se, mse = g[order], mv[order], r[order], se[order], mse[order]
    C = None if gold_cov is None else np.asarray(gold_cov, dtype=np.float64).reshape(g.size, -1)[order]

    n_win = max(g.size - window + 1, 0)
    state = np.full(n_win, None, dtype=object)
    moving = np.zeros(n_win, bool)
    ses, methods = [], set()
    for s in range(n_win):
        w = slice(s, s + window)
        if not np.isfinite(g[w]).all():
            continue
        K = window_cov(C, r, s, window) if C is not None else None
        slope, sd, dof = window_slope(r[w], g[w], se[w] if gold_se is not None else None, K)
        if not np.isfinite(sd):
            continue
        ses.append(sd)
        methods.add(
            "paired"
            if K is not None
            else "independent"
            if gold_se is not None and np.isfinite(se[w]).all()
            else "residual"
        )
        half = float(stats.t.ppf(0.5 + level / 2, dof)) * sd
        state[s] = "rising" if slope - half > min_slope else "falling" if slope + half < -min_slope else "flat"
        inside, ok = mv[s + 1 : s + window], np.isfinite(mv[s + 1 : s + window])
        if ok.any():  # the mean move's interval must clear the threshold
            half_mv = (
                float(stats.norm.ppf(0.5 + level / 2))
                * float(np.sqrt((mse[s + 1 : s + window][ok] ** 2).sum()))
                / ok.sum()
            )
            moving[s] = float(inside[ok].mean()) - half_mv > move_threshold
    rising = state == "rising"
    rising_after = np.flip(np.cumsum(np.flip(rising))) > 0 if n_win else rising
    first = lambda cond: next((int(r[s]) for s in range(n_win) if cond(s)), None)  # noqa: E731
    out = {
        "stagnation_round": first(lambda s: state[s] == "flat" and moving[s] and not rising_after[s]),
        "first_flat_round": first(lambda s: state[s] == "flat" and moving[s]),
        "overopt_round": first(lambda s: state[s] == "falling" and moving[s]),
        "final_state": next((state[s] for s in range(n_win - 1, -1, -1) if state[s] is not None), None),
        "slope_se": float(np.median(ses)) if ses else float("nan"),
        "se_method": (methods.pop() if len(methods) == 1 else "mixed") if methods else None,
    }
    out["mds"] = min_slope + float(stats.norm.ppf(0.5 + level / 2) + stats.norm.ppf(MDS_POWER)) * out["slope_se"]
    finite = np.isfinite(g)
    if not finite.any():
        return {**out, "peak_round": None, "peak_gold": float("nan"), "final_gold": float("nan")}
    peak = int(np.nanargmax(g))
    return {**out, "peak_round": int(r[peak]), "peak_gold": float(g[peak]), "final_gold": float(g[finite][-1])}


def _corr(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    if n < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), n
    return float(np.clip(np.corrcoef(x, y)[0, 1], -1.0, 1.0)), n


def lagged_correlations(
    df: pd.DataFrame,
    x_cols: Sequence[str],
    y_cols: Sequence[str],
    lags: Iterable[int] = (0, 1),
) -> dict[str, dict[str, float]]:
    """Pearson correlations of per-round series, with ``y`` shifted ``L`` rounds after ``x``.

    ``df`` has one row per round with a ``round`` column (duplicates raise: average seeds before
    calling). For lag ``L`` each round ``r`` pairs ``x(r)`` with ``y(r + L)``, matched by round
    NUMBER, so a missing round drops its pairs instead of shifting the series. ``y`` may be a
    difference the caller computed (e.g. the gold change into the round).

    Returns ``{"corr/{x}->{y}@lag{L}": {"value": r, "n": pairs}}`` where ``n`` counts the rounds
    with both values finite; ``value`` is NaN when ``n < 3`` or either side is constant.
    """
    if "round" not in df.columns:
        raise ValueError("df needs a 'round' column")
    if df["round"].duplicated().any():
        raise ValueError("df has several rows for one round; aggregate them first")
    base = df.set_index("round")
    out: dict[str, dict[str, float]] = {}
    for L in lags:
        L = int(L)
        for x in x_cols:
            xs = base[x].astype(float)
            for y in y_cols:
                # y at round r + L, re-indexed to r
                ys = base[y].astype(float)
                ys.index = ys.index - L
                joined = pd.concat([xs.rename("x"), ys.rename("y")], axis=1, join="inner")
                value, n = _corr(joined["x"].to_numpy(), joined["y"].to_numpy())
                out[f"corr/{x}->{y}@lag{L}"] = {"value": value, "n": n}
    return out
