"""When does the policy stop improving, and what moved before it did?

Stagnation is the RLHF failure the simulator is built to catch: the policy keeps moving (KL between
consecutive policies stays positive) while the gold reward no longer rises. Lagged correlations
between per-round diagnostics ask which signal moves first (e.g. does a drop in reward-model
pairwise accuracy at round r predict the gold change at round r + 1?).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["detect_stagnation", "lagged_correlations"]


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``x``."""
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def detect_stagnation(
    gold,
    policy_move,
    rounds=None,
    window: int = 3,
    slope_threshold: float = 0.005,
    move_threshold: float = 1e-3,
) -> dict:
    """The round from which the gold reward stops rising although the policy keeps moving.

    Args:
        gold: ``[R]`` gold reward of the policy per round (NaN allowed).
        policy_move: ``[R]`` KL from the previous round's policy to this round's, i.e. how far the
            policy moved INTO each round (NaN allowed, e.g. round 0, which has no predecessor).
        rounds: ``[R]`` the caller's round numbers (default ``1..R``); the slope is per unit of
            these numbers and the returned rounds are taken from them.
        window: rounds per window (>= 2).
        slope_threshold: gold slope (per round) below which a window counts as flat. A falling
            gold (overoptimisation) counts as flat too.
        move_threshold: mean ``policy_move`` over the moves INSIDE a window (into its 2nd..last
            round; finite entries) above which the policy counts as moving; a window with no
            finite inside move is not moving.

    A window is ``window`` consecutive entries (sorted by round) with all gold finite; its slope is
    the least-squares slope of gold on round. Windows with a NaN gold say nothing either way.

    Returns:
        ``stagnation_round``: the first round ``s`` whose window is flat while the policy moves AND
        after which no later window is rising (slope >= threshold) -- the round from which gold
        stops improving for good. A transient dip followed by renewed gains is not stagnation.
        It can be the first round (e.g. 0, the SFT evaluation): the loop never raised gold.
        ``None`` if there is no such round (gold still rising at the end, or the policy not moving).
        ``first_flat_round``: the first flat-while-moving window, transient or not (``None`` if none).
        ``peak_round`` / ``peak_gold``: round and value of the highest gold (first if tied);
        ``final_gold``: last finite gold. Rounds are ints (``None`` / NaN when gold is all NaN).
    """
    g = np.asarray(gold, dtype=np.float64).ravel()
    mv = np.asarray(policy_move, dtype=np.float64).ravel()
    r = np.arange(1, g.size + 1, dtype=np.float64) if rounds is None else np.asarray(rounds, dtype=np.float64).ravel()
    if not (g.shape == mv.shape == r.shape):
        raise ValueError(f"gold {g.shape}, policy_move {mv.shape} and rounds {r.shape} differ in shape")
    if window < 2:
        raise ValueError(f"window must be >= 2 to define a slope, got {window}")
    order = np.argsort(r, kind="stable")
    g, mv, r = g[order], mv[order], r[order]

    n_win = max(g.size - window + 1, 0)
    flat_moving, rising = np.zeros(n_win, bool), np.zeros(n_win, bool)
    for s in range(n_win):
        gw, rw, inside = g[s : s + window], r[s : s + window], mv[s + 1 : s + window]
        if not np.isfinite(gw).all():
            continue
        slope = _slope(rw, gw)
        rising[s] = slope >= slope_threshold
        moving = np.isfinite(inside).any() and float(np.nanmean(inside)) > move_threshold
        flat_moving[s] = moving and not rising[s]
    # rising_after[s]: some window starting at s or later still rises
    rising_after = np.flip(np.cumsum(np.flip(rising))) > 0 if n_win else rising
    first_flat = next((int(r[s]) for s in range(n_win) if flat_moving[s]), None)
    stagnation = next((int(r[s]) for s in range(n_win) if flat_moving[s] and not rising_after[s]), None)

    finite = np.isfinite(g)
    if not finite.any():
        return {"stagnation_round": stagnation, "first_flat_round": first_flat, "peak_round": None,
                "peak_gold": float("nan"), "final_gold": float("nan")}
    peak = int(np.nanargmax(g))
    return {
        "stagnation_round": stagnation,
        "first_flat_round": first_flat,
        "peak_round": int(r[peak]),
        "peak_gold": float(g[peak]),
        "final_gold": float(g[finite][-1]),
    }


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
