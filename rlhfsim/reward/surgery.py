"""Reward-profile surgery: collapse as the only thing that changes between arms (issue 19).

Applied between the reward source and the optimiser (Proxy.score). A batch of P rows is split into
groups, the runs of consecutive rows with the same prompt (optimisers lay rows out prompt-major). Inside each
group the proxy's ranking is kept and only the values change:

    own        the proxy's values, centred per group:                      o  (sorted ascending along the ranking)
    target     one of   pooled:  the batch's mean centred sorted profile (one prompt-independent profile per group size)
                        optimum: the finite-n optimum of the trained utility, theory.optimal_rewards(U, k), centred
                        gold:    the group's own gold values sorted ascending, centred (gold's shape on the proxy's ranking)
    blend      b = (1 - dial) * o + dial * t        (both ascending along the same ranking, so b keeps the order)
    out        group mean of the proxy + c * b,     c = sqrt(sum o^2 / sum b^2) over the whole batch

So each prompt keeps the proxy's own level (a prompt offset is not profile shape), and with match_scale the
pooled within-prompt variance of the output equals the proxy's; since the group means are untouched, the batch
std of the output equals the proxy's too (between-group variance + within-group variance). At dial 0 the output
IS the proxy; at dial 1 every group's centred values are c * target (one c for the batch).

Applied to any reward source (learned, noisy_gold, gold: rlhfsim.reward.proxy), so ties are kept, not broken:
rows are ranked within a group by the source with a stable sort, and rows with equal source values (a tie block)
get the mean of the target over the block's rank positions, so they stay equal in the output. A group whose values
are all equal (a closed prompt answered wrong k times, under gold) has no ranking and no profile: it keeps its
values. Breaking such ties by row order would hand the optimiser a made-up ranking. A learned (or noisy_gold)
source ties exactly only where a group holds the same completion more than once, which a sharp policy does often
(e.g. k identical answers to a closed prompt): identical completions then get identical outputs. On a batch with no
exact ties the output is the same, bit for bit, as before ties were handled (a block of one row is left as it is);
`ties: row_order` (SurgeryConfig.ties) restores the old tie-breaking everywhere, to reproduce runs made with it.
For dial < 1 the output is strictly increasing along the ranking wherever the source is; at dial 1 it is
non-decreasing (a target such as x's optimum [0, 0, 1, 1] has ties of its own).
Singleton groups (group_size 1) have no profile: they keep the proxy's value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from rlhfsim.reward.config import PROFILES, SurgeryConfig
from rlhfsim.theory import optimal_rewards


def group_runs(keys: Sequence) -> np.ndarray:
    """[P] group index of each row: a new group starts wherever a row's key differs from the previous row's."""
    keys = list(keys)
    if not keys:
        return np.zeros(0, dtype=np.int64)
    starts = np.array([True] + [a != b for a, b in zip(keys[1:], keys[:-1])])
    return np.cumsum(starts) - 1


def group_orders(scores: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
    """Per group, its row indices sorted ascending by score (stable: ties keep row order)."""
    out = []
    for g in range(int(groups.max()) + 1 if groups.size else 0):
        rows = np.flatnonzero(groups == g)
        out.append(rows[np.argsort(scores[rows], kind="stable")])
    return out


def tie_mean(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """target [k] along a group's ranking, with each run of equal `source` values [k] (ascending) replaced by its
    mean over the run's positions; returned as is (the same array) when the source has no ties."""
    starts = np.r_[True, source[1:] != source[:-1]]
    if starts.all():
        return target
    block = np.cumsum(starts) - 1
    return (np.bincount(block, weights=target) / np.bincount(block))[block]


def pooled_profiles(sorted_centred: list[np.ndarray]) -> dict[int, np.ndarray]:
    """{k: mean over the batch's groups of size k of their centred ascending profiles [k]}."""
    by_k: dict[int, list[np.ndarray]] = {}
    for s in sorted_centred:
        by_k.setdefault(s.size, []).append(s)
    return {k: np.mean(np.stack(v), axis=0) for k, v in by_k.items()}


def profile_surgery(
    scores: np.ndarray,
    groups: np.ndarray,
    dial: float,
    profile: str,
    *,
    gold: np.ndarray | None = None,
    optimum: Callable[[int], np.ndarray] | None = None,
    match_scale: bool = True,
    ties: str = "keep",
) -> np.ndarray:
    """Surgery of one batch (module docstring). scores: [P] proxy; groups: [P] from group_runs;
    gold: [P] gold rewards (profile gold); optimum: k -> ascending [k] (profile optimum); ties: keep, or row_order
    (ties broken by row order, all-tied groups profiled: the behaviour before issue 29). Returns [P] float64."""
    x = np.asarray(scores, dtype=np.float64)
    if profile not in PROFILES:
        raise ValueError(f"unknown surgery profile {profile!r}; valid: {list(PROFILES)}")
    if ties not in ("keep", "row_order"):
        raise ValueError(f"surgery ties must be keep or row_order, got {ties!r}")
    if not 0.0 <= dial <= 1.0:
        raise ValueError(f"surgery dial must be in [0, 1], got {dial}")
    if profile == "none" or dial == 0.0 or x.size == 0:
        return x.copy()  # dial 0 is the proxy itself, whatever the layout
    orders = [o for o in group_orders(x, np.asarray(groups)) if o.size > 1]  # singletons keep their value
    if not orders:
        raise ValueError(
            "profile surgery needs groups of >= 2 completions of a prompt (consecutive rows); "
            "set the optimiser's group_size >= 2 or surgery.profile: none"
        )
    keep = ties == "keep"
    if keep:
        orders = [o for o in orders if x[o[-1]] != x[o[0]]]  # an all-tied group has no ranking: it keeps its values
    if not orders:
        return x.copy()
    own = [x[o] - x[o].mean() for o in orders]  # centred, ascending along the ranking
    if profile == "pooled":
        pooled = pooled_profiles(own)
        targets = [pooled[o.size] for o in orders]
    elif profile == "optimum":
        if optimum is None:
            raise ValueError("surgery profile 'optimum' needs the optimum callable")
        targets = [np.sort(np.asarray(optimum(o.size), dtype=np.float64)) for o in orders]
    else:
        if gold is None:
            raise ValueError("surgery profile 'gold' needs the gold rewards of the batch")
        g = np.asarray(gold, dtype=np.float64)
        targets = [np.sort(g[o]) for o in orders]
    targets = [
        tie_mean(t - t.mean(), x[o]) if keep else t - t.mean() for t, o in zip(targets, orders)
    ]  # tied rows stay tied
    blend = [(1.0 - dial) * o + dial * t for o, t in zip(own, targets)]
    c = 1.0
    if match_scale:
        num, den = sum(float(o @ o) for o in own), sum(float(b @ b) for b in blend)
        c = float(np.sqrt(num / den)) if den > 0 else 1.0  # a flat blend stays flat: nothing to rescale
    out = x.copy()
    for o, b in zip(orders, blend):
        out[o] = x[o].mean() + c * b
    return out


def apply(
    cfg: SurgeryConfig,
    prompts: Sequence,
    scores: np.ndarray,
    gold: Callable[[], np.ndarray] | None = None,
    utility=None,
) -> np.ndarray:
    """The config's surgery on a batch of rows (`prompts` [P], repeated consecutively per group); gold is called
    only for profile gold, utility (a UtilitySpec or Utility) used only for profile optimum."""
    if cfg.profile == "none":
        return np.asarray(scores)
    groups = group_runs([(p.id, p.text) for p in prompts])
    optimum = None
    if cfg.profile == "optimum":
        u = utility.build() if hasattr(utility, "build") else utility
        optimum = lambda k: optimal_rewards(u, k)  # noqa: E731 (cached per (utility, k) inside theory)
    g = gold() if cfg.profile == "gold" and gold is not None else None
    return profile_surgery(
        scores, groups, cfg.dial, cfg.profile, gold=g, optimum=optimum, match_scale=cfg.match_scale, ties=cfg.ties
    )
