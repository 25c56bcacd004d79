"""Reward-model ensembles: aggregate member rewards into one score (Coste et al. 2023).

Over member rewards ``R [M, B]`` (M members, B completions):

    mean    mean over members
    wco     worst-case optimisation: min over members
    uwo     uncertainty-weighted optimisation: mean - lam * var, var over members with the
            POPULATION definition (ddof = 0, divide by M) so that M = 1 gives var 0
    median  median over members (mean of the two middle members for even M, as numpy)

Conservative aggregates (wco, uwo) penalise completions the members disagree on, which is where
the policy is exploiting one member's error; this is what reduces overoptimisation. Inputs may be
torch tensors (device, dtype and autograd are kept) or numpy arrays; the output has the input's type.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["AGGREGATORS", "aggregate", "disagreement", "ensemble_diagnostics", "ensemble_metrics", "member_scale"]


def _mean(x: torch.Tensor, lam: float) -> torch.Tensor:
    return x.mean(0)


def _wco(x: torch.Tensor, lam: float) -> torch.Tensor:
    return x.min(0).values


def _uwo(x: torch.Tensor, lam: float) -> torch.Tensor:
    return x.mean(0) - lam * x.var(0, correction=0)


def _median(x: torch.Tensor, lam: float) -> torch.Tensor:
    # torch.median returns the lower middle for even M; average the two middles instead
    s = x.sort(0).values
    M = s.shape[0]
    return 0.5 * (s[(M - 1) // 2] + s[M // 2])


AGGREGATORS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "mean": _mean,
    "wco": _wco,
    "uwo": _uwo,
    "median": _median,
}


def _to_torch(x) -> tuple[torch.Tensor, bool]:
    """(``[M, B]`` floating tensor, input was numpy)."""
    is_np = not isinstance(x, torch.Tensor)
    if is_np:
        a = np.asarray(x)
        if not np.issubdtype(a.dtype, np.floating):
            a = a.astype(np.float64)
        x = torch.from_numpy(np.ascontiguousarray(a))
    elif not x.is_floating_point():
        x = x.double()
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected member rewards of shape [M, B] with M >= 1, got {tuple(x.shape)}")
    return x, is_np


def _back(y: torch.Tensor, is_np: bool):
    return y.detach().cpu().numpy() if is_np else y


STANDARDISED = ("wco", "uwo")  # the aggregators whose result depends on each member's offset and scale


def member_scale(ref_rewards) -> tuple[np.ndarray, np.ndarray]:
    """Each member's location and scale on a reference set: ``ref [M, N]`` -> ``(mu [M], sd [M])``.

    Mean and std (ddof 0) over the reference completions; a member with no spread gets ``sd = 1`` (nothing to
    rescale). The reference set must be the same completions for every member (the loop uses a fixed probe set).
    """
    R = np.asarray(ref_rewards, dtype=np.float64)
    if R.ndim != 2 or R.shape[1] < 2:
        raise ValueError(f"expected reference rewards [M, N] with N >= 2, got shape {R.shape}")
    mu, sd = R.mean(1), R.std(1)
    return mu, np.where(sd > 0, sd, 1.0)


def aggregate(
    rewards_k_by_batch: torch.Tensor | np.ndarray, method: str, lam: float = 0.1, scale=None
) -> torch.Tensor | np.ndarray:
    """Aggregate member rewards ``[M, B]`` into one reward per completion ``[B]``.

    ``method`` is one of :data:`AGGREGATORS` (``mean``, ``wco``, ``uwo``, ``median``); ``lam``
    (>= 0) is the UWO variance weight, ignored by the others. With ``M = 1`` every method
    returns the single member. Returns a torch tensor for tensor input, numpy for array input.

    ``scale = (mu [M], sd [M])`` (:func:`member_scale` on a reference set): ``wco`` and ``uwo`` then act on the
    standardised members ``z_m = (r_m - mu_m) / sd_m``, so a member's arbitrary offset or scale (Bradley-Terry
    fixes neither) cannot decide the min or the variance, and ``lam`` weighs the variance in standardised units;
    the result is mapped back to the members' average scale, ``mean(sd) * agg(z) + mean(mu)``. ``mean`` and
    ``median`` ignore ``scale``. ``scale=None`` aggregates the raw members (Coste et al. as written).
    """
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {method!r}; valid: {', '.join(sorted(AGGREGATORS))}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (a negative weight rewards disagreement), got {lam}")
    x, is_np = _to_torch(rewards_k_by_batch)
    if scale is None or method not in STANDARDISED:
        return _back(AGGREGATORS[method](x, float(lam)), is_np)
    mu, sd = (torch.as_tensor(np.asarray(v, dtype=np.float64), dtype=x.dtype, device=x.device) for v in scale)
    if mu.shape != (x.shape[0],) or sd.shape != (x.shape[0],):
        raise ValueError(f"scale has {tuple(mu.shape)} / {tuple(sd.shape)} entries for {x.shape[0]} members")
    z = (x - mu[:, None]) / sd[:, None]
    return _back(sd.mean() * AGGREGATORS[method](z, float(lam)) + mu.mean(), is_np)


def disagreement(rewards: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Member disagreement per completion: std over members (ddof = 0) of ``[M, B]`` -> ``[B]``.

    0 for ``M = 1``. Same type as the input.
    """
    x, is_np = _to_torch(rewards)
    return _back(x.std(0, correction=0), is_np)


def ensemble_diagnostics(
    member_logits: np.ndarray, gold: np.ndarray, types, bounded: bool, method: str, lam: float, scale=None
) -> dict[str, float]:
    """:func:`ensemble_metrics` from member logits ``[M, N]``: rewards on the trained scale
    (sigmoid when bounded), the proxy aggregated as PPO sees it (``scale``: see :func:`aggregate`)."""
    z = np.asarray(member_logits, dtype=np.float64)
    R = 1.0 / (1.0 + np.exp(-z)) if bounded else z
    return ensemble_metrics(R, gold, types, proxy=aggregate(R, method, lam, scale))


def ensemble_metrics(members: np.ndarray, gold: np.ndarray, types, proxy: np.ndarray | None = None) -> dict[str, float]:
    """Member disagreement and how well it predicts the proxy's error against gold, overall and per type.

    ``members [M, N]`` member rewards of N completions on the trained scale, ``gold [N]``, ``types``
    length N, ``proxy [N]`` the aggregated reward (default: the member mean). The proxy's error is
    the part of the proxy gold does not explain: the proxy is regressed on gold by least squares over
    all N completions (the proxy's scale and offset are arbitrary, e.g. Bradley-Terry logits) and the
    error is the absolute residual ``|proxy - (a + b * gold)|`` (NaN when gold is constant). Returns ``rm/ens_std`` (mean member std, ddof 0),
    ``rm/ens_err_corr`` (Spearman rho of member std against that error) and ``_{type}`` versions.
    The correlations are NaN with fewer than 3 completions or a constant side (e.g. one member).
    """
    from scipy import stats

    R = np.asarray(members, dtype=np.float64)
    g = np.asarray(gold, dtype=np.float64).ravel()
    t = np.asarray(list(types), dtype=object)
    p = R.mean(0) if proxy is None else np.asarray(proxy, dtype=np.float64).ravel()
    if not (R.shape[1] == g.size == t.size == p.size):
        raise ValueError(f"members {R.shape}, gold {g.shape}, types {t.shape}, proxy {p.shape}: N must agree")
    std = R.std(0)
    ok = np.isfinite(p) & np.isfinite(g)
    err = np.full(g.size, np.nan)
    if ok.sum() >= 2 and np.ptp(g[ok]) > 0:
        b, a = np.polyfit(g[ok], p[ok], 1)  # the proxy gold explains: p ~ a + b * gold
        err[ok] = np.abs(p[ok] - (a + b * g[ok]))

    def corr(sel: np.ndarray) -> float:
        x, y = std[sel & ok], err[sel & ok]
        if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
            return float("nan")
        return float(stats.spearmanr(x, y).statistic)

    everything = np.ones(g.size, dtype=bool)
    out = {"rm/ens_std": float(std.mean()), "rm/ens_err_corr": corr(everything)}
    for name in sorted(set(t)):
        sel = t == name
        out[f"rm/ens_std_{name}"] = float(std[sel].mean())
        out[f"rm/ens_err_corr_{name}"] = corr(sel)
    return out
