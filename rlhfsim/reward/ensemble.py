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

from typing import Callable

import numpy as np
import torch

__all__ = ["AGGREGATORS", "aggregate", "disagreement"]


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


def aggregate(rewards_k_by_batch: torch.Tensor | np.ndarray, method: str, lam: float = 0.1) -> torch.Tensor | np.ndarray:
    """Aggregate member rewards ``[M, B]`` into one reward per completion ``[B]``.

    ``method`` is one of :data:`AGGREGATORS` (``mean``, ``wco``, ``uwo``, ``median``); ``lam``
    (>= 0) is the UWO variance weight, ignored by the others. With ``M = 1`` every method
    returns the single member. Returns a torch tensor for tensor input, numpy for array input.
    """
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregation {method!r}; valid: {', '.join(sorted(AGGREGATORS))}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0 (a negative weight rewards disagreement), got {lam}")
    x, is_np = _to_torch(rewards_k_by_batch)
    return _back(AGGREGATORS[method](x, float(lam)), is_np)


def disagreement(rewards: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Member disagreement per completion: std over members (ddof = 0) of ``[M, B]`` -> ``[B]``.

    0 for ``M = 1``. Same type as the input.
    """
    x, is_np = _to_torch(rewards)
    return _back(x.std(0, correction=0), is_np)
