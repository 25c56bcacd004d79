"""Reward-collapse theory: the finite-n optimal rewards and their large-n limits.

For one prompt with ``n`` ranked completions a rich enough reward model reaches the maximiser of

    F(r) = sum_{i<j} U(r_i - r_j)   subject to   1 >= r_1 >= r_2 >= ... >= r_n >= 0,

which does not depend on the prompt (reward collapse; Song, Cai, Lee, Su 2023). As ``n`` grows
the empirical distribution of the optimum converges to the law maximising ``E U(|X - X'|)`` on
``[0, 1]``, which has closed forms for the power, log and negative-power families
(:func:`limiting_distribution`). The closed forms are for the unshifted utilities (the
``eps -> 0`` limit); :func:`optimal_rewards` solves the finite-n problem for the utility exactly
as trained, ``eps`` shift and all, which puts atoms at 0 and 1 for finite ``n``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import linalg, stats

from rlhfsim.reward.utilities import Utility, get_utility, utility_from_spec

__all__ = [
    "OptimalRewardsInfo",
    "distance_to_limit",
    "limiting_distribution",
    "optimal_rewards",
    "optimal_rewards_graph",
    "theory_report",
]


@dataclass(frozen=True)
class OptimalRewardsInfo:
    """Diagnostics of :func:`optimal_rewards`.

    ``objective`` is ``sum_{i<j} U(r_i - r_j)`` at the optimum (descending order); ``residual``
    the relative KKT residual ``max_k |projected gradient_k| / pull_k``, where ``pull_k`` is the
    sum of ``U'`` over the pairs of point ``k`` without signs (zero exactly at a KKT point of the
    box-constrained problem; rounding keeps it near ``n * 1e-16``); ``iterations`` the Newton
    iterations used (0 for closed-form cases); ``method`` how the optimum was obtained.
    """

    objective: float
    residual: float
    iterations: int
    converged: bool
    method: str


# --------------------------------------------------------------------------------------------
# finite-n optimum
# --------------------------------------------------------------------------------------------


def _as_utility(utility: Any, params: Mapping[str, Any] | None = None) -> Utility:
    """A Utility from a Utility, a spec mapping, or a name plus ``params``."""
    if isinstance(utility, str):
        return get_utility(utility, **(params or {}))
    if params:
        raise ValueError("params can only be given with a utility name, not with a Utility or a spec")
    return utility_from_spec(utility)


def _pairs(u: Utility, r: np.ndarray, order: int, E: np.ndarray | None = None):
    """Matrix of U^(order)(r_i - r_j) on the comparison graph ``E [n, n]`` (i preferred over j; zeros elsewhere).
    ``E=None`` is the total order of the descending labelling: every pair i < j."""
    d = r[:, None] - r[None, :]
    fn = (u, u.grad, u.hess)[order]
    return np.triu(fn(d), k=1) if E is None else np.where(E, fn(d), 0.0)


def _objective(u: Utility, r: np.ndarray, E: np.ndarray | None = None) -> float:
    return float(_pairs(u, r, 0, E).sum())


def _forces(u: Utility, r: np.ndarray, E: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(gradient, pull): dF/dr_k = sum_{j>k} U'(r_k - r_j) - sum_{i<k} U'(r_i - r_k), and the
    sum of the same (positive) terms without signs, the gross pull on point k."""
    g = _pairs(u, r, 1, E)
    up, down = g.sum(axis=1), g.sum(axis=0)
    return up - down, up + down


def _residual(r: np.ndarray, grad: np.ndarray, pull: np.ndarray) -> float:
    """Relative KKT residual of max F over [0, 1]^n: max_k |projected gradient_k| / pull_k."""
    pg = grad.copy()
    pg[(r <= 0.0) & (grad < 0)] = 0.0  # at the lower bound, a push downwards is blocked
    pg[(r >= 1.0) & (grad > 0)] = 0.0  # at the upper bound, a push upwards is blocked
    return float(np.max(np.abs(pg) / np.maximum(pull, np.finfo(float).tiny)))


def _kkt_residual(u: Utility, r: np.ndarray, E: np.ndarray | None = None) -> float:
    return _residual(r, *_forces(u, r, E))


def _half_and_half(n: int, middle: float) -> np.ndarray:
    """Ascending optimum with floor(n/2) points at 1, the rest at 0 (odd n: middle point set)."""
    r = np.zeros(n)
    r[n - n // 2 :] = 1.0
    if n % 2 == 1:
        r[n // 2] = middle
    return r


def _projected_newton(u: Utility, n: int, tol: float, max_iter: int = 200, E: np.ndarray | None = None):
    """Bertsekas' projected Newton method for min -F over the box [0, 1]^n.

    Works in the labelling where index 1 is the best completion (descending optimum). The box
    suffices: for increasing U, swapping a mis-ordered pair never lowers F, so the box maximiser
    is sorted and the order constraints are inactive. F is concave and C^1 on R^n for concave U
    (the extension below 0 keeps it so even while iterates cross), and its Hessian is minus a
    weighted graph Laplacian with weights -U''(r_i - r_j) >= 0.
    """
    r = np.linspace(1.0, 0.0, n) if E is None else 0.5 + 0.25 * (E.sum(1) - E.sum(0)) / max(n - 1, 1)
    phi = -_objective(u, r, E)
    sigma, beta = 1e-4, 0.5
    for it in range(max_iter):
        grad, pull = _forces(u, r, E)
        res = _residual(r, grad, pull)
        grad = -grad  # gradient of phi = -F
        if res <= tol:
            return r, it
        # epsilon-active set (Bertsekas 1982): near a bound and pushed against it
        step_to_box = np.max(np.abs(r - np.clip(r - grad, 0.0, 1.0)))
        delta = min(1e-3, step_to_box)
        active = ((r <= delta) & (grad > 0)) | ((r >= 1.0 - delta) & (grad < 0))
        free = ~active
        w = -(_pairs(u, r, 2, E))
        w = w + w.T
        lap = np.diag(w.sum(axis=1)) - w
        p = np.zeros(n)
        diag = np.maximum(np.diag(lap), 1e-12)
        p[active] = -grad[active] / diag[active]
        if free.any():
            h = lap[np.ix_(free, free)]
            mu = 1e-12 * max(float(np.trace(h)) / h.shape[0], 1e-12)
            h = h + mu * np.eye(h.shape[0])
            try:
                p[free] = -linalg.solve(h, grad[free], assume_a="pos")
            except (linalg.LinAlgError, ValueError):
                p[free] = -np.linalg.lstsq(h, grad[free], rcond=None)[0]
            if not np.all(np.isfinite(p)) or grad[free] @ p[free] >= 0:
                p[free] = -grad[free] / diag[free]  # fall back to scaled steepest descent
        # Armijo along the projection arc. Close to the optimum the decrease of phi drops below
        # its rounding error; the full Newton step is then accepted when phi does not rise
        # beyond rounding and the KKT residual falls (the quadratic-convergence regime).
        roundoff = 64 * np.finfo(float).eps * (abs(phi) + 1.0)
        alpha = 1.0
        while alpha >= 1e-12:
            r_new = np.clip(r + alpha * p, 0.0, 1.0)
            phi_new = -_objective(u, r_new, E)
            decrease = alpha * float(-grad[free] @ p[free]) + float(grad[active] @ (r - r_new)[active])
            if phi - phi_new >= sigma * decrease:
                break
            if alpha == 1.0 and phi_new <= phi + roundoff and _kkt_residual(u, r_new, E) < res:
                break
            alpha *= beta
        else:
            break  # no acceptable step at machine precision: return the best point so far
        r, phi = r_new, phi_new
    return r, max_iter


@lru_cache(maxsize=64)
def _optimal_cached(u: Utility, n: int, tol: float):
    if n == 1:
        return np.array([0.5]), 0.0, 0.0, 0, "trivial"
    if u.name == "linear" or (u.name == "power" and u.params["g"] >= 1.0):
        # F is linear (g = 1) or convex (g > 1): the maximum sits at a vertex of the order
        # polytope, k points at 1 and n - k at 0, with value k (n - k) U(1): k = n // 2. For odd n
        # and linear U the middle point's coefficient is 0 and any value is optimal: take 1/2.
        g = u.params.get("g", 1.0)
        r = _half_and_half(n, 0.5 if g == 1.0 else 0.0)
        rd = r[::-1].copy()
        return r, _objective(u, rd), _kkt_residual(u, rd), 0, "closed form"
    if not u.concave:  # pragma: no cover - every non-concave family is handled above
        raise ValueError(f"no solver for the non-concave utility {u.label()}")
    rd, iters = _projected_newton(u, n, tol)
    # r and 1 - reversed(r) are both optimal; for concave F so is their mean, which removes
    # the solver's last asymmetric rounding.
    rd = np.clip(0.5 * (rd + 1.0 - rd[::-1]), 0.0, 1.0)
    res = _kkt_residual(u, rd)
    return np.sort(rd), _objective(u, rd), res, iters, "projected newton"


def optimal_rewards(utility: Any, n: int, tol: float = 1e-10, return_info: bool = False):
    """The n rewards in [0, 1] maximising ``sum_{i<j} U(r_i - r_j)`` over ``r_1 >= ... >= r_n``.

    ``utility`` is a :class:`~rlhfsim.reward.utilities.Utility`, a registry name or a spec
    mapping; the problem is solved for it exactly as trained (``eps`` shift included).

    Returns a numpy array SORTED ASCENDING (``np.sort`` convention): element 0 is the reward of
    the worst-ranked completion, element ``n - 1`` that of the best. By symmetry ``r`` and
    ``1 - r[::-1]`` are both optimal; for concave utilities the symmetric optimum is returned.
    With ``return_info=True`` returns ``(r, OptimalRewardsInfo)``.

    Method: for concave U the problem is a smooth concave maximisation over the box
    ``[0, 1]^n`` (the order constraints are never active at the box optimum, see
    ``_projected_newton``), solved by projected Newton with the analytic gradient and Hessian
    to a relative KKT residual ``<= tol`` (see :class:`OptimalRewardsInfo`). ``linear`` and
    ``power`` with ``g >= 1`` have closed-form vertex optima (half at 0, half at 1; for odd n the
    middle reward is 1/2 for g = 1 and 0 for g > 1). n = 1 gives ``[0.5]`` (no pairs; every
    reward is optimal). Results are cached per (utility, n, tol); each call returns a copy.
    """
    u = _as_utility(utility)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    r, obj, res, iters, method = _optimal_cached(u, int(n), float(tol))
    r = r.copy()
    if not return_info:
        return r
    info = OptimalRewardsInfo(
        objective=float(obj),
        residual=float(res),
        iterations=int(iters),
        converged=bool(res <= tol),
        method=method,
    )
    return r, info


@lru_cache(maxsize=4096)
def _graph_cached(u: Utility, n: int, edges: bytes, tol: float) -> np.ndarray:
    E = np.frombuffer(edges, dtype=bool).reshape(n, n)
    net = E.sum(1).astype(float) - E.sum(0)  # out- minus in-degree
    if u.name == "linear":  # F = sum_k net_k r_k: a vertex; a node with net 0 may sit anywhere, take 1/2
        return np.where(net > 0, 1.0, np.where(net < 0, 0.0, 0.5))
    if not u.concave:  # convex F (power g > 1): the maximum is a vertex of the box; n is small
        if n > 16:
            raise ValueError(
                f"the graph optimum of the non-concave utility {u.label()} enumerates 2^n vertices; n={n} > 16"
            )
        best = max(itertools.product((0.0, 1.0), repeat=n), key=lambda v: _objective(u, np.array(v), E))
        return np.array(best)
    return _projected_newton(u, n, tol, E=E)[0]


def optimal_rewards_graph(utility: Any, prefs, tol: float = 1e-10) -> np.ndarray:
    """The rewards in [0, 1] maximising ``sum over labelled pairs (a over b) of U(r_a - r_b)``, in node order.

    ``prefs [n, n]`` bool: ``prefs[a, b]`` = a was preferred over b (the comparison graph actually
    trained on: tied pairs dropped, reference answers included). With every pair labelled (a total
    order) this is :func:`optimal_rewards` placed by rank. Unlike that function the result is NOT sorted:
    element i is node i's reward. A node with no labelled pair is unconstrained: 1/2 (0 or 1 may be
    returned for convex utilities). Concave U: projected Newton on the graph's objective; linear U: the
    closed form (1 where a node wins more pairs than it loses, 0 where fewer, 1/2 when equal); convex
    power: the best box vertex. Cached per (utility, graph); each call returns a copy.
    """
    u = _as_utility(utility)
    E = np.asarray(prefs, dtype=bool)
    if E.ndim != 2 or E.shape[0] != E.shape[1]:
        raise ValueError(f"prefs must be a square [n, n] matrix, got shape {E.shape}")
    if (E & E.T).any() or np.diag(E).any():
        raise ValueError("prefs has a pair preferred both ways (or a self-preference); it is not a comparison graph")
    return _graph_cached(u, E.shape[0], np.ascontiguousarray(E).tobytes(), float(tol)).copy()


# --------------------------------------------------------------------------------------------
# large-n limits
# --------------------------------------------------------------------------------------------


def _point_masses():
    return stats.rv_discrete(name="half_at_0_half_at_1", values=([0, 1], [0.5, 0.5]))


def limiting_distribution(name: Any, **params: Any):
    """The large-n law of the optimal rewards for the unshifted utility (eps -> 0).

    ``name`` is a registry name (aliases such as ``x``, ``-1/x``, ``inv`` work), a spec mapping
    or a :class:`Utility`; ``params`` as for :func:`get_utility` (``eps`` is accepted and
    ignored, so a trained utility's spec can be passed unchanged):

    * ``linear`` / ``x``, ``power`` with ``g >= 1``: half the mass at 0, half at 1, returned as
      ``scipy.stats.rv_discrete`` with values ``([0, 1], [0.5, 0.5])``;
    * ``power`` with ``0 < g < 1``: ``Beta((1 - g)/2, (1 - g)/2)``;
    * ``log``: ``Beta(1/2, 1/2)`` (arcsine);
    * ``neg_power`` with ``0 < g < 1``: ``Beta((1 + g)/2, (1 + g)/2)``;
    * ``neg_power`` with ``g >= 1`` (``inv``, ``-1/x``): uniform on ``[0, 1]``.

    Every returned object has scipy's ``cdf``, ``ppf``, ``mean``, ``rvs``...
    ``logsigmoid`` has no closed form in the paper: ValueError.
    """
    u = _as_utility(name, params)
    fam, g = u.name, u.params.get("g")
    if fam == "linear" or (fam == "power" and g >= 1.0):
        return _point_masses()
    if fam == "power":
        a = (1.0 - g) / 2.0
        return stats.beta(a, a)
    if fam == "log":
        return stats.beta(0.5, 0.5)
    if fam == "neg_power":
        if g >= 1.0:
            return stats.uniform(0.0, 1.0)
        a = (1.0 + g) / 2.0
        return stats.beta(a, a)
    raise ValueError(
        f"no closed-form limiting distribution for utility {u.label()!r} (the paper gives none "
        "for logsigmoid); use optimal_rewards for the finite-n optimum"
    )


def _limit_label(dist) -> str:
    if isinstance(dist, stats.rv_discrete):
        return "1/2 delta_0 + 1/2 delta_1"
    name = dist.dist.name
    if name == "uniform":
        return "Uniform(0, 1)"
    a, b = dist.args
    return f"Beta({a:g}, {b:g})"


def _cdf_left(dist, x: np.ndarray) -> np.ndarray:
    """F(x-) (equal to F(x) for continuous laws, below it at an atom)."""
    return dist.cdf(np.nextafter(x, -np.inf))


def distance_to_limit(r, dist) -> dict:
    """Distances between the empirical law of ``r`` and ``dist``.

    ``w1``: :func:`scipy.stats.wasserstein_distance` between ``r`` and the limit's quantiles at
    levels ``(i - 0.5)/n``, i = 1..n. ``ks``: the exact Kolmogorov-Smirnov distance
    ``sup_x |F_n(x) - F(x)|`` (evaluated at the sample points, the limit's atoms and their left
    limits, so atoms of either side are handled; for a continuous ``dist`` it equals
    :func:`scipy.stats.kstest`'s statistic).
    """
    r = np.sort(np.asarray(r, dtype=float).ravel())
    n = r.size
    if n == 0:
        raise ValueError("r is empty")
    q = dist.ppf((np.arange(1, n + 1) - 0.5) / n)
    w1 = float(stats.wasserstein_distance(r, q))
    pts = r
    if isinstance(dist, stats.rv_discrete):
        pts = np.union1d(pts, dist.xk)
    pts = np.unique(pts)
    emp_right = np.searchsorted(r, pts, side="right") / n
    emp_left = np.searchsorted(r, pts, side="left") / n
    ks = max(
        float(np.max(np.abs(emp_right - dist.cdf(pts)))),
        float(np.max(np.abs(emp_left - _cdf_left(dist, pts)))),
    )
    return {"w1": w1, "ks": ks}


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _atoms(r: np.ndarray, tol: float = 1e-9) -> tuple[int, int]:
    return int(np.sum(r <= tol)), int(np.sum(r >= 1.0 - tol))


def theory_report(
    utility_name: Any,
    params: Mapping[str, Any] | None = None,
    n: int = 8,
    out_png: str | None = None,
) -> str:
    """Printable summary of the finite-n optimum for a utility and its distance to the limit.

    Solves :func:`optimal_rewards` for ``get_utility(utility_name, **params)`` and, where a
    closed form exists, compares it with :func:`limiting_distribution` (W1 and KS). With
    ``out_png`` also draws the sorted optimum against the response index and, beside it, the
    optimum against the quantile level ``(i - 0.5)/n`` over the limit's quantile function.
    """
    u = _as_utility(utility_name, params)
    r, info = optimal_rewards(u, n, return_info=True)
    lines = [
        f"utility     {u.label()}   ({'concave' if u.concave else 'convex'})",
        f"n           {n}",
        f"objective   {info.objective:.10g}   (sum over i<j of U(r_i - r_j))",
        f"residual    {info.residual:.3g}   converged={info.converged}   "
        f"iterations={info.iterations}   method={info.method}",
    ]
    lo, hi = _atoms(r)
    lines.append(f"atoms       {lo} at 0, {hi} at 1")
    with np.printoptions(precision=4, suppress=True, linewidth=96):
        if n <= 64:
            lines.append("optimum (ascending):")
            lines.extend("  " + s for s in np.array2string(r).splitlines())
        else:
            levels = np.linspace(0.0, 1.0, 11)
            lines.append("optimum deciles (levels 0, 0.1, ..., 1):")
            lines.extend("  " + s for s in np.array2string(np.quantile(r, levels)).splitlines())
    try:
        dist = limiting_distribution(u)
    except ValueError as exc:
        dist = None
        lines.append(f"limit       none ({exc})")
    if dist is not None:
        dists = distance_to_limit(r, dist)
        lines.append(f"limit       {_limit_label(dist)}   (n -> infinity, eps -> 0)")
        lines.append(f"distance    W1={dists['w1']:.4g}   KS={dists['ks']:.4g}")
    text = "\n".join(lines)
    if out_png is not None:
        _plot(u, r, dist, out_png)
    return text


def _plot(u: Utility, r: np.ndarray, dist, out_png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    n = r.size
    idx = np.arange(1, n + 1)
    level = (idx - 0.5) / n
    with sns.axes_style("whitegrid"):
        fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
        sns.lineplot(x=idx, y=r, marker="o", ax=ax0)
        ax0.set_xlabel("Response index (ascending reward)")
        ax0.set_ylabel("Optimal reward")
        ax0.set_ylim(-0.02, 1.02)
        ax0.set_title(f"{u.label()}, n = {n}")
        sns.scatterplot(x=level, y=r, s=18, label=f"optimum, n = {n}", ax=ax1)
        if dist is not None:
            grid = np.linspace(0.0005, 0.9995, 999)
            sns.lineplot(
                x=grid, y=dist.ppf(grid), color="black", linestyle="--", label=f"limit {_limit_label(dist)}", ax=ax1
            )
        ax1.set_xlabel("Quantile level (i - 0.5) / n")
        ax1.set_ylabel("Reward quantile")
        ax1.set_title("Quantile function vs limit law")
        ax1.legend(loc="lower right")
        fig.tight_layout()
        fig.savefig(out_png, dpi=120)
        plt.close(fig)
