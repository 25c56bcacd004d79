"""Reward-collapse diagnostics of a reward model on held-out prompts (Song, Cai, Lee, Su 2023).

Every function takes reward matrices ``R [P, k]``: row ``i`` holds the rewards of prompt ``i``'s
``k`` completions (NaN marks a missing completion). ``types`` is a length-``P`` sequence of
prompt-type labels (``"open"`` / ``"closed"`` in the synthetic world); ``G [P, k]`` the hidden
gold reward of the same completions.

Collapse in the paper's sense is about each prompt: every prompt gets the same sorted reward
profile whatever the prompt. A Bradley-Terry model fixes only within-prompt differences, so the
measure removes each prompt's offset (and scale) before comparing profiles (:func:`shape_dependence`),
reports the between-type offset separately (:func:`level_gap`), and always beside gold on the same
completions (:func:`profile_collapse`). All metric names and ranges are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from rlhfsim.theory_graph import optimal_rewards_graphs

__all__ = [
    "collapse_metrics",
    "gold_graphs",
    "graph_optimum_dev",
    "level_gap",
    "kendall_rows",
    "mean_kendall_tau",
    "mean_profile",
    "pairwise_accuracy",
    "profile_collapse",
    "shape_dependence",
    "sorted_profiles",
    "standardised_profiles",
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


def standardised_profiles(R) -> tuple[np.ndarray, np.ndarray]:
    """Each prompt's sorted profile with its own offset and scale removed. ``R [P, k]`` -> ``(Z [P, k], ok [P])``.

    ``Z[i] = (s_i - mean(s_i)) / std(s_i)`` (ddof=0) for the descending profile ``s_i`` (missing entries
    resampled as in :func:`mean_profile`), so ``mean(Z[i]**2) == 1``. ``ok[i]`` is False (and ``Z[i]`` NaN)
    for a row with fewer than 2 valid entries or no spread (a constant row has no shape).
    """
    S = _profiles_complete(_as_matrix(R))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mu, sd = S.mean(axis=1, keepdims=True), S.std(axis=1, keepdims=True)
    scale = np.nanmax(np.abs(S), axis=1, keepdims=True) if S.size else sd
    # spread below rounding of the row's magnitude is a constant row
    ok = np.isfinite(S).all(axis=1) & (sd[:, 0] > 1e-12 * np.maximum(scale[:, 0], 1e-300)) & (S.shape[1] >= 2)
    Z = np.full(S.shape, np.nan)
    Z[ok] = (S[ok] - mu[ok]) / sd[ok]
    return Z, ok


def shape_dependence(R, rows=None) -> float:
    """How much the standardised sorted reward profile depends on the prompt, in ``[0, 1]``; 0 = every prompt the same.

    ``D = mean_i mean_j (Z[i, j] - Zbar[j])**2`` over the usable rows (``rows`` [P] bool, default all
    with a shape) of :func:`standardised_profiles`, ``Zbar`` their mean. ``D`` is the mean squared
    2-Wasserstein distance between each prompt's standardised reward distribution and their W2
    barycentre (in 1-D the mean quantile function), i.e. the share of the standardised profiles'
    variance that differs between prompts. Invariant to per-prompt offsets and positive scales,
    to completion order, and so to any global affine map. ``D = 1 - |Zbar|^2 / k``; always 0 for
    ``k = 2`` (two points have no shape beyond offset and scale). NaN with no usable row.
    """
    Z, ok = standardised_profiles(R)
    use = ok if rows is None else ok & np.asarray(rows, bool)
    if not use.any():
        return float("nan")
    Zu = Z[use]
    return float(np.mean((Zu - Zu.mean(axis=0)) ** 2))


def level_gap(R, types: Sequence[str], rows=None, a: str = "open", b: str = "closed") -> float:
    """Between-type offset in units of the within-prompt spread: ``(mean level of a - mean level of b) / s``.

    A prompt's level is its mean reward; ``s`` is the root mean within-prompt variance of the rows
    used (``rows`` [P] bool, default every row with >= 2 valid entries). Invariant to a global
    positive affine map, NOT to per-prompt offsets (it is the offset), so for a Bradley-Terry model,
    whose loss fixes no prompt's offset, it reports what generalisation put there. NaN when a type
    is absent or ``s == 0``.
    """
    X = _as_matrix(R)
    n = np.isfinite(X).sum(axis=1)
    use = (n >= 2) if rows is None else (n >= 2) & np.asarray(rows, bool)
    t = np.asarray(list(types), dtype=object)
    if not ((t[use] == a).any() and (t[use] == b).any()):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lvl, var = np.nanmean(X, axis=1), np.nanvar(X, axis=1)
    s = float(np.sqrt(var[use].mean()))
    if s == 0:
        return float("nan")
    return float((lvl[use & (t == a)].mean() - lvl[use & (t == b)].mean()) / s)


def _rel(x: float, x_gold: float) -> float:
    """``1 - x / x_gold``: 0 = as prompt-dependent as gold, 1 = none of it left (NaN when gold has none)."""
    return 1.0 - x / x_gold if np.isfinite(x_gold) and x_gold != 0 else float("nan")


def profile_collapse(R, G, types: Sequence[str], prefix: str = "collapse/") -> dict[str, float]:
    """Collapse of reward ``R`` against gold ``G`` (both ``[P, k]``, same completions), split into shape and level.

    Both are computed on the same rows: prompts whose gold AND reward profiles have a shape
    (gold-constant prompts, e.g. all answers wrong, have no profile to lose). Keys (``prefix`` first):
    ``shape`` = ``1 - D`` (:func:`shape_dependence`; higher = more collapsed, 1 = one standardised profile
    for every prompt), ``shape_gold`` the same under gold, ``shape_rel`` = ``1 - D / D_gold`` (share of
    gold's prompt dependence the reward lost; 0 = as gold, 1 = fully collapsed, < 0 more varied than
    gold); ``level_gap`` / ``level_gap_gold`` (:func:`level_gap`, open minus closed) and
    ``level_rel`` = ``1 - |gap| / |gap_gold|`` (higher = types' levels closer than under gold);
    ``shape_prompts`` the number of rows used.
    """
    R, G = _as_matrix(R), _as_matrix(G)
    if R.shape != G.shape:
        raise ValueError(f"R {R.shape} and G {G.shape} differ in shape")
    rows = standardised_profiles(R)[1] & standardised_profiles(G)[1]
    d, d_gold = shape_dependence(R, rows), shape_dependence(G, rows)
    gap, gap_gold = level_gap(R, types, rows), level_gap(G, types, rows)
    return {
        f"{prefix}shape": 1.0 - d,
        f"{prefix}shape_gold": 1.0 - d_gold,
        f"{prefix}shape_rel": _rel(d, d_gold),
        f"{prefix}level_gap": gap,
        f"{prefix}level_gap_gold": gap_gold,
        f"{prefix}level_rel": _rel(abs(gap), abs(gap_gold)),
        f"{prefix}shape_prompts": float(rows.sum()),
    }


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


def kendall_rows(R: np.ndarray, G: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each complete row pair: ``R, G [P, k]`` without NaN -> ``[P]``, NaN where either row is constant.

    scipy.stats.kendalltau's statistic bit for bit, for all rows at once: C - D, the tied pairs of each side and the
    pair count are integers (exact in any order), and tau-b = (C - D) / sqrt(n0 - n1) / sqrt(n0 - n2) is the same
    float operations as scipy's (the evaluation set's 256 prompts: one array op instead of 256 scipy calls)."""
    iu = np.triu_indices(R.shape[1], k=1)
    sr = np.sign(R[:, iu[0]] - R[:, iu[1]])  # [P, pairs]
    sg = np.sign(G[:, iu[0]] - G[:, iu[1]])
    tot = iu[0].size
    cmd = (sr * sg).sum(axis=1)  # concordant minus discordant (ties count 0): small integers, exact
    xtie, ytie = (sr == 0).sum(axis=1), (sg == 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = cmd / np.sqrt((tot - xtie).astype(np.float64)) / np.sqrt((tot - ytie).astype(np.float64))
    tau = np.minimum(1.0, np.maximum(-1.0, tau))
    return np.where((xtie == tot) | (ytie == tot), np.nan, tau)


def mean_kendall_tau(R, G) -> float:
    """Mean over prompts of Kendall's tau-b between proxy ``R[i]`` and gold ``G[i]`` (``[P, k]``).

    Prompts where tau is undefined (fewer than 2 scored completions, or a constant proxy or
    gold row) are skipped. Range ``[-1, 1]``; NaN when no prompt has a defined tau.
    """
    R, G = _as_matrix(R), _as_matrix(G)
    if R.shape != G.shape:
        raise ValueError(f"R {R.shape} and G {G.shape} differ in shape")
    complete = np.isfinite(R).all(axis=1) & np.isfinite(G).all(axis=1)
    taus = np.full(R.shape[0], np.nan)
    if R.shape[1] >= 2:
        taus[complete] = kendall_rows(R[complete], G[complete])
    for i in np.flatnonzero(~complete):  # rows with missing entries: scipy on what is there
        taus[i] = _row_kendall(R[i], G[i])
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


def _saturation(
    L: np.ndarray, R01: np.ndarray, bounded: bool, sat_tol: float, logit_thr: float, prefix: str
) -> dict[str, float]:
    """Saturation share, logit size (max, 99th percentile of |logit|) and within-prompt gap explosion.

    ``saturation``: bounded, the share of rewards within ``sat_tol`` of 0 or 1; unbounded, the share of
    within-prompt pairs whose logit gap exceeds ``logit_thr`` (a Bradley-Terry gap is log-odds, the only
    scale such a model fixes; a single logit's size is an arbitrary per-prompt offset). ``gap_abs_p99``:
    the 99th percentile of within-prompt ``|r_a - r_b|`` on the trained reward scale. NaN when empty.
    """
    finite = np.isfinite(L)
    absL = np.abs(L[finite])
    keys = ("saturation", "logit_absmax", "logit_abs_p99", "gap_abs_p99")
    if absL.size == 0:
        return dict.fromkeys((prefix + k for k in keys), float("nan"))
    reward = R01 if bounded else L
    iu = np.triu_indices(L.shape[1], k=1)
    gaps = np.abs(reward[:, iu[0]] - reward[:, iu[1]]).ravel()
    gaps = gaps[np.isfinite(gaps)]
    if bounded:
        sat = float(((R01[finite] <= sat_tol) | (R01[finite] >= 1.0 - sat_tol)).mean())
    else:
        sat = float((gaps > logit_thr).mean()) if gaps.size else float("nan")
    return {
        f"{prefix}saturation": sat,
        f"{prefix}logit_absmax": float(absL.max()),
        f"{prefix}logit_abs_p99": float(np.quantile(absL, 0.99)),
        f"{prefix}gap_abs_p99": float(np.quantile(gaps, 0.99)) if gaps.size else float("nan"),
    }


def gold_graphs(G) -> np.ndarray:
    """The comparison graph gold gives each prompt, ties dropped: ``G [P, k]`` -> ``[P, k, k]`` bool (a over b)."""
    G = _as_matrix(G)
    return np.nan_to_num(G[:, :, None] - G[:, None, :], nan=0.0) > 0


def graph_optimum_dev(R01, prefs, utility) -> np.ndarray:
    """Per prompt, mean ``|r - optimum|`` over its completions against :func:`rlhfsim.theory.optimal_rewards_graph`.

    ``R01 [P, k]`` bounded rewards, ``prefs [P, k, k]`` each prompt's comparison graph. -> ``[P]``, NaN
    for a prompt with no labelled pair (its optimum is not determined) or a missing reward. All prompts' optima are
    solved together (rlhfsim.theory_graph: the per-graph solver's values, bit for bit).
    """
    R01 = _as_matrix(R01)
    E = np.asarray(prefs, bool)
    out = np.full(R01.shape[0], np.nan)
    ok = E.any(axis=(1, 2)) & np.isfinite(R01).all(axis=1) if len(E) else np.zeros(0, bool)
    if ok.any():
        out[ok] = np.abs(R01[ok] - optimal_rewards_graphs(utility, E[ok])).mean(axis=1)
    return out


def collapse_metrics(
    R_logits,
    types: Sequence[str],
    bounded: bool,
    gold=None,
    theory: Mapping[str, object] | None = None,
    prefs=None,
    sat_tol: float = 0.02,
    logit_thr: float = 10.0,
) -> dict[str, float]:
    """All reward-model collapse and gold-agreement metrics for one evaluation set.

    Args:
        R_logits: ``[P, k]`` reward-model outputs before any squashing (logits).
        types: length-``P`` prompt types.
        bounded: rewards are ``sigmoid(logit)`` (True) or raw logits (False): the trained reward scale.
        gold: optional ``[P, k]`` gold rewards in ``[0, 1]``; without it the gold metrics are NaN.
        theory: optional ``{type: Utility as trained}``; for bounded rewards each prompt is compared with
            the optimum of its comparison graph (``prefs``, else the graph gold gives, ties dropped).
        prefs: optional ``[P, k, k]`` comparison graphs (the annotator's labels on training groups).
        sat_tol: a bounded reward within ``sat_tol`` of 0 or 1 counts as saturated.
        logit_thr: an unbounded within-prompt logit gap above ``logit_thr`` counts as saturated.

    Returns a flat ``{metric name: float}``: ``collapse/shape*``, ``collapse/level*`` (:func:`profile_collapse`,
    scale-free), ``collapse/*within_std`` and ``reward/*`` on the trained reward scale, ``rm/*``
    agreement with gold (order only). Per-type keys for every type present. See docs/metrics.md.
    """
    L = _as_matrix(R_logits)
    P, k = L.shape
    R01 = to_unit_interval(L, bounded) if bounded else L
    reward = R01 if bounded else L
    G = None if gold is None else _as_matrix(gold)
    if G is not None and G.shape != L.shape:
        raise ValueError(f"gold {G.shape} and rewards {L.shape} differ in shape")
    present = sorted(set(types))
    nan = float("nan")

    m: dict[str, float] = {}
    if G is not None:
        m.update(profile_collapse(reward, G, types))
    m.update(_saturation(L, R01, bounded, sat_tol, logit_thr, "collapse/"))

    if G is not None:
        m["rm/pairwise_acc"] = pairwise_accuracy(L, G)
        m["rm/gold_pairs"] = float(_pairwise_counts(L, G)[1])
        m["rm/kendall_tau"] = mean_kendall_tau(L, G)
    else:
        m["rm/pairwise_acc"] = m["rm/gold_pairs"] = m["rm/kendall_tau"] = nan
    graphs = None
    if bounded and theory is not None:
        graphs = np.asarray(prefs, bool) if prefs is not None else (gold_graphs(G) if G is not None else None)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows are expected and handled
        for t in present:
            sel = _type_mask(types, t, P)
            for stat, v in _nanstats(reward[sel]).items():
                m[f"reward/{t}_{stat}"] = v
            m[f"collapse/{t}_within_std"] = _within_std(reward[sel])
            m.update(_saturation(L[sel], R01[sel], bounded, sat_tol, logit_thr, f"collapse/{t}_"))
            if G is not None:
                m[f"collapse/{t}_within_std_gold"] = _within_std(G[sel])
                m[f"rm/{t}_pairwise_acc"] = pairwise_accuracy(L[sel], G[sel])
                m[f"rm/{t}_kendall_tau"] = mean_kendall_tau(L[sel], G[sel])
            else:
                m[f"collapse/{t}_within_std_gold"] = m[f"rm/{t}_pairwise_acc"] = m[f"rm/{t}_kendall_tau"] = nan
            if graphs is not None and t in theory:
                dev = graph_optimum_dev(R01[sel], graphs[sel], theory[t])
                ok = np.isfinite(dev)
                m[f"collapse/{t}_graph_dev_mean"] = float(dev[ok].mean()) if ok.any() else nan
                m[f"collapse/{t}_graph_dev_max"] = float(dev[ok].max()) if ok.any() else nan
    return m
