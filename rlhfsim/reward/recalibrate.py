"""Per-round recalibration of the proxy reward before PPO (pure functions and their config).

An affine map per prompt type, score = scale * proxy + shift, fitted each round on a small sample:
    reference: standardise against the reference (SFT) policy's samples, so that they score mean 0,
               std 1 (Gao, Schulman, Hilton 2022 normalise their reward models this way); it fixes the
               proxy's scale relative to the KL coefficient, and (per type) the offset between types
    gold:      least-squares fit of gold on proxy over the current policy's samples, where the config
               allows gold labels for a small audited set; the slope is floored at `min_slope` (0), so
               a type whose proxy has come to anti-correlate with gold gives a flat score, not a reversed one
Affine maps keep the order within a type; per-type maps change how types compare within a PPO batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlhfsim.reward.config import RecalibrationConfig  # noqa: F401  (re-exported)

ALL = "all"  # the key of the map fitted over every type; the fallback for a type absent from the fit sample


def _keys(types: Sequence[str] | None, n: int, per_type: bool) -> list[tuple[str, np.ndarray]]:
    t = np.asarray(list(types) if types is not None else [ALL] * n, dtype=object)
    out = [(ALL, np.ones(n, dtype=bool))]
    if per_type:
        out += [(k, t == k) for k in sorted(set(t)) if k != ALL]
    return out


def standardise_params(
    proxy, types: Sequence[str] | None = None, per_type: bool = True
) -> dict[str, tuple[float, float]]:
    """{key: (scale, shift)} so that scale * proxy + shift has mean 0 and std 1 (ddof 0) on this sample.

    proxy: [N] proxy rewards of reference-policy samples; types: [N] prompt types. A constant
    sample keeps scale 1 (only the shift applies).
    """
    x = np.asarray(proxy, dtype=np.float64)
    out = {}
    for key, sel in _keys(types, x.size, per_type):
        v = x[sel]
        sd = float(v.std())
        scale = 1.0 / sd if sd > 1e-12 else 1.0
        out[key] = (scale, -float(v.mean()) * scale)
    return out


def gold_fit_params(
    proxy, gold, types: Sequence[str] | None = None, per_type: bool = True, min_slope: float = 0.0
) -> dict[str, tuple[float, float]]:
    """{key: (scale, shift)}: least squares gold ~ scale * proxy + shift with scale >= min_slope.

    proxy, gold: [N]. With the slope floored the shift is refitted (mean gold - slope * mean proxy);
    a constant proxy gets slope min_slope.
    """
    x, y = np.asarray(proxy, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"proxy {x.shape} and gold {y.shape} differ in shape")
    out = {}
    for key, sel in _keys(types, x.size, per_type):
        xs, ys = x[sel], y[sel]
        xc = xs - xs.mean()
        var = float((xc * xc).sum())
        slope = float((xc * (ys - ys.mean())).sum() / var) if var > 1e-12 else min_slope
        slope = max(slope, min_slope)
        out[key] = (slope, float(ys.mean() - slope * xs.mean()))
    return out


def apply(params: dict[str, tuple[float, float]] | None, proxy, types: Sequence[str]) -> np.ndarray:
    """scale * proxy + shift with each element's type map (the ALL map where its type has none). [N] -> [N]."""
    x = np.asarray(proxy, dtype=np.float64)
    if not params:
        return x
    t = list(types)
    if len(t) != x.size:
        raise ValueError(f"{x.size} rewards but {len(t)} types")
    scale = np.array([params.get(k, params[ALL])[0] for k in t])
    shift = np.array([params.get(k, params[ALL])[1] for k in t])
    return scale * x + shift


def as_metrics(params: dict[str, tuple[float, float]] | None) -> dict[str, float]:
    """recal/{key}_scale, recal/{key}_shift for every fitted map."""
    out = {}
    for key, (a, b) in (params or {}).items():
        out[f"recal/{key}_scale"], out[f"recal/{key}_shift"] = a, b
    return out
