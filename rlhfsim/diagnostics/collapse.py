"""Reward-collapse diagnostics of a reward model on held-out prompts (Song, Cai, Lee, Su 2023).

Every function takes reward matrices ``R [P, k]``: row ``i`` holds the rewards of prompt ``i``'s
``k`` completions (NaN marks a missing completion). ``types`` is a length-``P`` sequence of
prompt-type labels (``"open"`` / ``"closed"`` in the synthetic world); ``G [P, k]`` the hidden
gold reward of the same completions.

Collapse is read off the *sorted within-prompt reward profile*: a rich enough reward model gives
every prompt the same sorted profile whatever its type, so the distance between the open and the
closed mean profiles shrinks towards 0, while under the gold reward the two types differ.
All metric names and ranges are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

__all__ = [
    "collapse_index",
    "collapse_metrics",
    "mean_kendall_tau",
    "mean_profile",
    "pairwise_accuracy",
    "sorted_profiles",
    "to_unit_interval",
]


def _as_matrix(R) -> np.ndarray:
    """``R`` as a float64 ``[P, k]`` array (a single row ``[k]`` becomes ``[1, k]``)."""
    R = np.asarray(R, dtype=np.float64)
    if R.ndim == 1:
        R = R[None, :]
    if R.ndim != 2:
        raise ValueError(f"expected a [P, k] reward matrix, got shape {R.shape}")
    return R


def _type_mask(types: Sequence[str], t: str, P: int) -> np.ndarray:
    types = np.asarray(list(types), dtype=object)
    if types.shape != (P,):
        raise ValueError(f"types has length {types.shape[0]}, reward matrix has {P} rows")
    return types == t


def to_unit_interval(logits, bounded: bool) -> np.ndarray:
    """Map reward-model outputs ``[P, k]`` (or any shape) onto ``[0, 1]``.

    ``bounded=True``: the model was trained on ``sigmoid(logit)`` (the paper's setting), so the
    reward *is* the sigmoid. ``bounded=False``: raw logits have no natural scale, so they are
    min-max normalised over the whole array passed in (one evaluation set), ``(x - min) / (max -
    min)`` over finite entries; a constant array maps to 0.5. Min-max values are comparable
    within one evaluation set only. NaN stays NaN.
    """
    x = np.asarray(logits, dtype=np.float64)
    if bounded:
        # scipy's expit is overflow-safe for large |logit|
        from scipy.special import expit

        return expit(x)
    finite = np.isfinite(x)
    if not finite.any():
        return np.full_like(x, np.nan)
    lo, hi = x[finite].min(), x[finite].max()
    if hi == lo:
        return np.where(finite, 0.5, np.nan)
    return (x - lo) / (hi - lo)


def sorted_profiles(R) -> np.ndarray:
    """Each row of ``R [P, k]`` sorted DESCENDING (best completion first); NaNs go last. -> ``[P, k]``."""
    R = _as_matrix(R)
    # negating twice sorts descending while keeping np.sort's NaN-last rule
    return -np.sort(-R, axis=1)


def _row_profile(row_desc: np.ndarray, k: int) -> np.ndarray:
    """A descending row with ``m < k`` valid entries resampled to ``k`` quantile positions.

    Uses the Hazen quantiles at ``(i - 0.5) / k``; for ``m == k`` these are exactly the sorted
    values, so complete and incomplete rows share one definition.
    """
    v = row_desc[np.isfinite(row_desc)]
    if v.size == 0:
        return np.full(k, np.nan)
    p = (np.arange(1, k + 1) - 0.5) / k
    return np.quantile(v, p, method="hazen")[::-1]


def _profiles_complete(R) -> np.ndarray:
    """Descending profiles ``[P, k]`` with missing entries filled by quantile resampling of the row."""
    S = sorted_profiles(R)
    k = S.shape[1]
    incomplete = ~np.isfinite(S).all(axis=1)
    for i in np.flatnonzero(incomplete):
        S[i] = _row_profile(S[i], k)
    return S


def mean_profile(R, types: Sequence[str], t: str) -> np.ndarray:
    """Mean sorted (descending) within-prompt reward profile of the prompts of type ``t``. -> ``[k]``.

    Rows with missing entries are resampled to ``k`` quantiles of their valid entries first
    (so a missing completion does not shift the others' positions); rows with no valid entry
    are ignored. All-NaN when no prompt of type ``t`` has a reward.
    """
    R = _as_matrix(R)
    S = _profiles_complete(R[_type_mask(types, t, R.shape[0])])
    S = S[np.isfinite(S).all(axis=1)]
    if S.shape[0] == 0:
        return np.full(R.shape[1], np.nan)
    return S.mean(axis=0)


def _w1_profiles(pa: np.ndarray, pb: np.ndarray) -> float:
    """W1 between two equal-size empirical distributions given by their sorted values."""
    if not (np.isfinite(pa).all() and np.isfinite(pb).all()):
        return float("nan")
    return float(np.mean(np.abs(pa - pb)))


def collapse_index(R01, types: Sequence[str], a: str = "open", b: str = "closed") -> float:
    """Collapse index: W1 distance between the mean sorted reward profiles of types ``a`` and ``b``.

    ``R01 [P, k]`` are rewards in ``[0, 1]`` (see :func:`to_unit_interval`). Each type's mean
    profile is a ``k``-point empirical distribution, and for two such distributions
    ``W1 = mean_i |sorted_a[i] - sorted_b[i]|``. Range ``[0, 1]``: 0 means both types get the
    same distribution (full collapse); a polarised profile (half 0, half 1) against a uniform
    grid ``(i - 0.5) / k`` gives 0.25. NaN when either type is absent.
    """
    return _w1_profiles(mean_profile(R01, types, a), mean_profile(R01, types, b))


def _pair_signs(x: np.ndarray) -> np.ndarray:
    """``sign(x[:, i] - x[:, j])`` for all ordered pairs: ``[P, k, k]`` (NaN where either is missing)."""
    return np.sign(x[:, :, None] - x[:, None, :])


def _pairwise_counts(R: np.ndarray, G: np.ndarray) -> tuple[float, int]:
    """(credited pairs, gold-differing pairs) over unordered within-prompt pairs ``i < j``."""
    sr, sg = _pair_signs(R), _pair_signs(G)
    iu = np.triu_indices(R.shape[1], k=1)
    sr, sg = sr[:, iu[0], iu[1]], sg[:, iu[0], iu[1]]
    valid = np.isfinite(sr) & np.isfinite(sg) & (sg != 0)
    # a proxy tie on a gold-differing pair is a coin flip: half credit
    credit = np.where(sr == sg, 1.0, np.where(sr == 0, 0.5, 0.0))
    return float(credit[valid].sum()), int(valid.sum())


def pairwise_accuracy(R, G) -> float:
    """Share of within-prompt pairs ordered by ``R`` as by gold ``G`` (both ``[P, k]``).

    Only pairs whose gold differs count (a gold tie has no right order); a proxy tie on such a
    pair scores 1/2. Range ``[0, 1]``, 0.5 = chance. NaN -- not 0 -- when no pair of any
    prompt differs in gold (e.g. all completions of every closed prompt wrong).
    """
    R, G = _as_matrix(R), _as_matrix(G)
    if R.shape != G.shape:
        raise ValueError(f"R {R.shape} and G {G.shape} differ in shape")
    credit, n = _pairwise_counts(R, G)
    return credit / n if n else float("nan")


def _row_kendall(r: np.ndarray, g: np.ndarray) -> float:
    ok = np.isfinite(r) & np.isfinite(g)
    r, g = r[ok], g[ok]
    # tau is undefined for fewer than 2 items or a constant side; skip without scipy's warning
    if r.size < 2 or np.ptp(r) == 0 or np.ptp(g) == 0:
        return float("nan")
    return float(stats.kendalltau(r, g).statistic)


def mean_kendall_tau(R, G) -> float:
    """Mean over prompts of Kendall's tau-b between proxy ``R[i]`` and gold ``G[i]`` (``[P, k]``).

    Prompts where tau is undefined (fewer than 2 scored completions, or a constant proxy or
    gold row) are skipped. Range ``[-1, 1]``; NaN when no prompt has a defined tau.
    """
    R, G = _as_matrix(R), _as_matrix(G)
    if R.shape != G.shape:
        raise ValueError(f"R {R.shape} and G {G.shape} differ in shape")
    taus = np.array([_row_kendall(r, g) for r, g in zip(R, G)])
    taus = taus[np.isfinite(taus)]
    return float(taus.mean()) if taus.size else float("nan")


def _nanstats(x: np.ndarray) -> dict[str, float]:
    """Mean, std (ddof=0) and 10/50/90 % quantiles of the finite entries (NaN when none)."""
    v = x[np.isfinite(x)]
    if v.size == 0:
        return dict.fromkeys(("mean", "std", "q10", "q50", "q90"), float("nan"))
    q10, q50, q90 = np.quantile(v, [0.1, 0.5, 0.9])
    return {"mean": float(v.mean()), "std": float(v.std()), "q10": float(q10), "q50": float(q50), "q90": float(q90)}


def _within_std(R01: np.ndarray) -> float:
    """Mean over prompts (with >= 2 valid entries) of the within-prompt std (ddof=0)."""
    n = np.isfinite(R01).sum(axis=1)
    rows = R01[n >= 2]
    if rows.shape[0] == 0:
        return float("nan")
    return float(np.nanstd(rows, axis=1).mean())


def _saturation(L: np.ndarray, R01: np.ndarray, bounded: bool, sat_tol: float, logit_thr: float, prefix: str) -> dict[str, float]:
    """Saturation share and logit explosion (max, 99th percentile of |logit|) over the finite entries; NaN when none."""
    finite = np.isfinite(L)
    absL = np.abs(L[finite])
    if absL.size == 0:
        return dict.fromkeys((f"{prefix}saturation", f"{prefix}logit_absmax", f"{prefix}logit_abs_p99"), float("nan"))
    sat = ((R01[finite] <= sat_tol) | (R01[finite] >= 1.0 - sat_tol)) if bounded else absL > logit_thr
    return {f"{prefix}saturation": float(sat.mean()), f"{prefix}logit_absmax": float(absL.max()),
            f"{prefix}logit_abs_p99": float(np.quantile(absL, 0.99))}


def _theory_desc(opt, k: int) -> np.ndarray:
    """An ascending theory optimum as a descending ``k``-point profile (resampled if its length differs)."""
    opt = np.sort(np.asarray(opt, dtype=np.float64))[::-1]
    return opt if opt.size == k else _row_profile(opt, k)


def collapse_metrics(
    R_logits,
    types: Sequence[str],
    bounded: bool,
    gold=None,
    theory: Mapping[str, np.ndarray] | None = None,
    sat_tol: float = 0.02,
    logit_thr: float = 10.0,
) -> dict[str, float]:
    """All reward-model collapse and gold-agreement metrics for one evaluation set.

    Args:
        R_logits: ``[P, k]`` reward-model outputs before any squashing (logits).
        types: length-``P`` prompt types.
        bounded: rewards are ``sigmoid(logit)`` (True) or raw logits (False); fixes the reward
            scale of ``reward/*`` and how :func:`to_unit_interval` maps onto ``[0, 1]``.
        gold: optional ``[P, k]`` gold rewards in ``[0, 1]``; without it the gold metrics are NaN.
        theory: optional ``{type: optimal rewards sorted ascending}`` (``theory.optimal_rewards``
            for the utility trained on that type); without it the theory metrics are absent.
        sat_tol: a bounded reward within ``sat_tol`` of 0 or 1 counts as saturated.
        logit_thr: an unbounded reward with ``|logit| > logit_thr`` counts as saturated.

    Returns a flat ``{metric name: float}``: ``collapse/*`` on the ``[0, 1]`` scale,
    ``reward/*`` on the trained reward scale, ``rm/*`` agreement with gold (order only, so
    scale-free). Per-type keys are made for every type present in ``types``.
    """
    L = _as_matrix(R_logits)
    P, k = L.shape
    R01 = to_unit_interval(L, bounded)
    reward = R01 if bounded else L
    G = None if gold is None else _as_matrix(gold)
    if G is not None and G.shape != L.shape:
        raise ValueError(f"gold {G.shape} and rewards {L.shape} differ in shape")
    present = sorted(set(types))
    nan = float("nan")

    m: dict[str, float] = {}
    m["collapse/index"] = collapse_index(R01, types)
    m["collapse/index_gold"] = collapse_index(G, types) if G is not None else nan
    m["collapse/index_gap"] = m["collapse/index_gold"] - m["collapse/index"]

    m.update(_saturation(L, R01, bounded, sat_tol, logit_thr, "collapse/"))

    if G is not None:
        m["rm/pairwise_acc"] = pairwise_accuracy(L, G)
        m["rm/gold_pairs"] = float(_pairwise_counts(L, G)[1])
        m["rm/kendall_tau"] = mean_kendall_tau(L, G)
    else:
        m["rm/pairwise_acc"] = m["rm/gold_pairs"] = m["rm/kendall_tau"] = nan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are expected and handled
        for t in present:
            sel = _type_mask(types, t, P)
            for stat, v in _nanstats(reward[sel]).items():
                m[f"reward/{t}_{stat}"] = v
            m[f"collapse/{t}_within_std"] = _within_std(R01[sel])
            m.update(_saturation(L[sel], R01[sel], bounded, sat_tol, logit_thr, f"collapse/{t}_"))
            if G is not None:
                m[f"collapse/{t}_within_std_gold"] = _within_std(G[sel])
                m[f"rm/{t}_pairwise_acc"] = pairwise_accuracy(L[sel], G[sel])
                m[f"rm/{t}_kendall_tau"] = mean_kendall_tau(L[sel], G[sel])
            else:
                m[f"collapse/{t}_within_std_gold"] = m[f"rm/{t}_pairwise_acc"] = m[f"rm/{t}_kendall_tau"] = nan
            if theory is not None and t in theory:
                dev = np.abs(mean_profile(R01, types, t) - _theory_desc(theory[t], k))
                m[f"collapse/{t}_theory_maxdev"] = float(dev.max()) if np.isfinite(dev).all() else nan
                m[f"collapse/{t}_theory_meandev"] = float(dev.mean()) if np.isfinite(dev).all() else nan
    return m
