"""Mean-over-seeds curves whose bands respect the metric's range, with each seed drawn thin beneath.

seaborn's "sd" band is mean +- sd, which leaves [0, 1] for a share near 0 or 1 and goes below 0 for a count.
Here the band is either a percentile bootstrap of the mean over seeds (inside [min, max] of the seeds, so
inside any range the values respect) or mean +- sd clipped to the metric's range.

    lo, hi = seed_interval(values_by_seed, band="ci", bounds=(0, 1))
    draw_seed_curves(ax, metrics, "audit/alarms", variants, palette, band="ci", bounds=(0, 5))
"""

from __future__ import annotations

import numpy as np
import pandas as pd

N_BOOT = 1000


def seed_interval(
    values, band: str = "ci", bounds: tuple[float, float] | None = None, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """(lo, hi) around the mean of `values` [n_seeds]: the 95% percentile-bootstrap interval of the mean ("ci") or
    mean +- 1 sd ("sd"); either clipped to `bounds` (None: unbounded). NaNs are dropped; one value gives (v, v)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]  # [n]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        lo = hi = float(v[0])
    elif band == "ci":
        rng = np.random.default_rng(seed)
        means = v[rng.integers(0, v.size, (n_boot, v.size))].mean(axis=1)  # [n_boot]
        lo, hi = (float(x) for x in np.percentile(means, [2.5, 97.5]))
    elif band == "sd":
        m, s = float(v.mean()), float(v.std(ddof=1))
        lo, hi = m - s, m + s
    else:
        raise ValueError(f"band {band!r}: use 'ci' or 'sd'")
    if bounds is not None:
        lo, hi = float(np.clip(lo, *bounds)), float(np.clip(hi, *bounds))
    return lo, hi


# ranges that hold by definition (docs/metrics.md), matched on the metric name's last part; metrics whose range
# depends on the world or the reward model (gold, proxy) are left unclipped
_UNIT = (
    "acc",
    "accuracy",
    "sign_agree",
    "rate",
    "share",
    "clipfrac",
    "flat_groups",
)  # also as a name's _suffix or prefix_
_SIGNED_UNIT = ("corr", "kendall_tau", "spearman", "pg_cos")


def metric_bounds(col: str) -> tuple[float, float] | None:
    """The range a metric cannot leave by definition, or None where it depends on the world or model."""
    leaf = col.rsplit("/", 1)[-1]
    if any(k in leaf for k in _SIGNED_UNIT):
        return (-1.0, 1.0)
    if any(leaf == k or leaf.endswith("_" + k) or leaf.startswith(k + "_") for k in _UNIT):
        return (0.0, 1.0)
    if leaf in ("kl", "sqrt_kl", "entropy", "length") or leaf.endswith(("_std", "_kl")):
        return (0.0, float("inf"))
    if leaf.startswith("shape_rel") or leaf.endswith("shape_rel"):
        return (float("-inf"), 1.0)
    return None


def seed_curves(df: pd.DataFrame, y: str, band: str = "ci", bounds: tuple[float, float] | None = None) -> pd.DataFrame:
    """Per (variant, round): mean of `y` over seeds, its band (lo, hi) and n seeds. `df` has variant, seed, round, y."""
    d = df[["variant", "seed", "round", y]].copy()
    d[y] = pd.to_numeric(d[y], errors="coerce")
    d = d.dropna(subset=[y])
    rows = []
    for (v, rd), g in d.groupby(["variant", "round"], sort=True):
        lo, hi = seed_interval(g[y].to_numpy(), band, bounds, seed=int(rd))
        rows.append({"variant": v, "round": rd, "mean": float(g[y].mean()), "lo": lo, "hi": hi, "n": len(g)})
    return pd.DataFrame(rows, columns=["variant", "round", "mean", "lo", "hi", "n"])


def draw_seed_curves(
    ax,
    df: pd.DataFrame,
    y: str,
    variants: list[str],
    pal: dict,
    band: str = "ci",
    bounds: tuple[float, float] | None = None,
) -> bool:
    """Each seed of each variant as a thin line, the mean over seeds on top with its band; False when nothing was logged."""
    d = df[["variant", "seed", "round", y]].copy()
    d[y] = pd.to_numeric(d[y], errors="coerce")
    d = d.dropna(subset=[y])
    if d.empty:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
        return False
    curves = seed_curves(d, y, band, bounds)
    for v in [v for v in variants if v in set(d["variant"])]:
        colour = pal.get(v, "grey")
        for _, s in d[d["variant"] == v].sort_values("round").groupby("seed"):
            ax.plot(s["round"], s[y], color=colour, lw=0.6, alpha=0.35)
        c = curves[curves["variant"] == v]
        ax.fill_between(c["round"], c["lo"], c["hi"], color=colour, alpha=0.18, lw=0)
        ax.plot(c["round"], c["mean"], color=colour, lw=1.8, marker="o", ms=3.5, label=v)
    return True
