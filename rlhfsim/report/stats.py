"""Paired statistics over seeds: a variant against the baseline, run by run with the same seed.

Runs of one seed share the SFT policy, the prompts and the initial gold, so the seed is a block: the
effect is estimated from per-seed differences d_s = variant_s - baseline_s, which removes what the seed
shares (a Welch interval on the two unpaired samples keeps it as noise).

    paired_effect(variant_by_seed, baseline_by_seed)   # {diff, lo, hi, p, n, ...}
    holm([0.01, 0.04, 0.03])                           # Holm-adjusted p-values, same order
    compare(summary, variants, baseline, endpoints)     # tidy table of every comparison, Holm within families

Interval: with n >= MIN_BOOT paired seeds, the expanded percentile bootstrap (Hesterberg 2015, "What teachers
should know about the bootstrap", sec. 5.1): the percentile interval of the bootstrap means of d, at the tail
probability whose normal quantile is sqrt(n/(n-1)) t_{n-1}; the plain percentile interval is too narrow for the
few seeds of a study (coverage about 0.85 for a nominal 0.95 at n = 5). Below MIN_BOOT the bootstrap cannot
reach beyond the observed d at all (with 2 seeds it is [min d, max d], coverage 0.5), so the paired t-interval
is used. p-value: the paired t-test on the same d (scipy.stats.ttest_1samp).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

LEVEL = 0.95
N_BOOT = 4000
MIN_BOOT = 6  # fewer paired seeds: paired t-interval instead of the bootstrap

# quantities that a finite run observes only partly: (column, why, predicate on a summary row -> censored)
# "drop after peak" is 0 and "peak round" is the last round whenever gold still rises at the end: the run
# stopped before the quantity could be seen; a never-stalled run has no stagnation round.
CENSORED = {
    "gold_drop_after_peak": "gold peaks in the last round: no drop is observed yet (0 is an upper bound; gold may fall after the run ends)",
    "gold_peak_round": "gold peaks in the last round: the true peak may come later",
    "proxy_change_after_gold_peak": "gold peaks in the last round: nothing after the peak is observed",
    "stagnation_round": "gold never stalled within the run: the round is beyond the last one",
}


def censored_rows(summary: pd.DataFrame, column: str) -> pd.Series:
    """Bool per row: is `column` censored in that run (see CENSORED)?"""
    if column not in CENSORED or summary.empty:
        return pd.Series(False, index=summary.index)
    if column == "stagnation_round":
        return pd.to_numeric(summary.get(column), errors="coerce").isna() if column in summary else pd.Series(True, index=summary.index)
    peak = pd.to_numeric(summary.get("gold_peak_round"), errors="coerce")
    last = pd.to_numeric(summary.get("rounds_completed"), errors="coerce")
    return (peak >= last) & last.notna() & (last > 0)


def _expanded_alpha(alpha: float, n: int) -> float:
    """Tail probability for the expanded percentile interval: Phi^-1(1 - a'/2) = sqrt(n/(n-1)) t_{n-1}(1 - alpha/2)."""
    from scipy import stats

    z = math.sqrt(n / (n - 1)) * float(stats.t.ppf(1 - alpha / 2, n - 1))
    return float(2 * stats.norm.sf(z))


def bootstrap_means(d: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """Means of n_boot resamples (with replacement) of d [n] -> [n_boot]."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))  # [n_boot, n]
    return d[idx].mean(axis=1)


def paired_differences(variant: pd.Series, baseline: pd.Series) -> pd.Series:
    """Per-seed d = variant - baseline on the seeds both have a finite value for (Series indexed by seed)."""
    a = pd.to_numeric(variant, errors="coerce").groupby(level=0).mean()  # two run dirs claiming one seed: their mean
    b = pd.to_numeric(baseline, errors="coerce").groupby(level=0).mean()
    d = (a - b.reindex(a.index)).replace([np.inf, -np.inf], np.nan).dropna()
    return d.sort_index()


def paired_effect(variant: pd.Series, baseline: pd.Series, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Mean paired difference with its expanded percentile bootstrap interval and paired t p-value.

    variant, baseline: values indexed by seed; seeds missing on either side are dropped (n counts pairs).
    n = 1: the difference without interval; d constant: a zero-width interval and p = 0 (d != 0) or 1.
    """
    from scipy import stats

    d = paired_differences(variant, baseline).to_numpy(dtype=float)
    out = {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan"), "n": int(d.size), "sd": float("nan"),
           "method": ""}
    if d.size == 0:
        return out
    out["diff"] = float(d.mean())
    if d.size < 2:
        return out
    out["sd"] = float(d.std(ddof=1))
    if out["sd"] == 0:
        out.update(lo=out["diff"], hi=out["diff"], p=0.0 if out["diff"] != 0 else 1.0)
        return out
    test = stats.ttest_1samp(d, 0.0)
    if d.size < MIN_BOOT:
        ci = test.confidence_interval(level)
        out.update(lo=float(ci.low), hi=float(ci.high), p=float(test.pvalue), method="paired t")
        return out
    a = _expanded_alpha(1 - level, d.size)
    boots = bootstrap_means(d, n_boot, seed)
    lo, hi = np.quantile(boots, [a / 2, 1 - a / 2])
    out.update(lo=float(lo), hi=float(hi), p=float(test.pvalue), method="paired bootstrap")
    return out


def holm(pvalues) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order; NaN stays NaN and is not counted in m."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, (m - np.arange(m)) * p[order])  # (m - j) p_(j), j = 0..m-1
    out[order] = np.maximum.accumulate(adj)
    return out


def compare(summary: pd.DataFrame, variants: list[str], baseline: str, endpoints: list[dict], family: str,
            level: float = LEVEL) -> pd.DataFrame:
    """Every (variant != baseline) x endpoint comparison, Holm-adjusted within this family.

    summary: one row per run with columns variant, seed and the endpoint columns.
    endpoints: [{"endpoint": column, "better": "higher" | "lower"}].
    Returns one row per comparison: family, variant, endpoint, better, diff, lo, hi, p, p_holm, n,
    censored (runs of the pair with a censored value), censored_why.
    """
    cols = ["family", "variant", "endpoint", "better", "diff", "lo", "hi", "p", "p_holm", "n", "method", "censored", "censored_why"]
    rows = []
    if summary.empty or "variant" not in summary:
        return pd.DataFrame(columns=cols)
    base = summary[summary["variant"] == baseline]
    for ep in endpoints:
        col = ep["endpoint"]
        cens_all = censored_rows(summary, col)
        for v in variants:
            if v == baseline:
                continue
            sv = summary[summary["variant"] == v]
            if col not in summary:
                r = {"diff": np.nan, "lo": np.nan, "hi": np.nan, "p": np.nan, "n": 0}
            else:
                r = paired_effect(sv.set_index("seed")[col], base.set_index("seed")[col], level)
            seeds = set(sv["seed"]) & set(base["seed"])
            pair_rows = summary.index[summary["variant"].isin([v, baseline]) & summary["seed"].isin(seeds)]
            n_cens = int(cens_all.reindex(pair_rows).fillna(False).astype(bool).sum())
            rows.append({"family": family, "variant": v, "endpoint": col, "better": ep.get("better", "higher"),
                         **{k: r.get(k, np.nan) for k in ("diff", "lo", "hi", "p", "n")}, "method": r.get("method", ""),
                         "censored": n_cens, "censored_why": CENSORED.get(col, "") if n_cens else ""})
    df = pd.DataFrame(rows, columns=[c for c in cols if c != "p_holm"])
    df.insert(df.columns.get_loc("p") + 1, "p_holm", holm(df["p"].to_numpy()) if len(df) else [])
    return df


def verdict(row: dict | pd.Series, baseline: str, alpha: float = 1 - LEVEL, digits: int = 3) -> str:
    """One sentence from a primary comparison: which way, by how much, with the paired interval and n."""
    v, ep, n = row["variant"], row["endpoint"], int(row["n"])
    diff, lo, hi, p = (float(row[k]) for k in ("diff", "lo", "hi", "p_holm"))
    f = f"{{:+.{digits}f}}"
    if n < 2 or not np.isfinite(lo):
        return f"{v} vs {baseline}: {ep} {f.format(diff) if np.isfinite(diff) else 'n/a'} from {n} paired seed(s); no interval (needs >= 2)."
    ci = f"{f.format(diff)} [{f.format(lo)}, {f.format(hi)}] vs {baseline} ({row.get('method') or 'paired'}, {n} seeds)"
    cens = f"; censored in {int(row['censored'])} run(s): {row['censored_why']}" if int(row.get("censored", 0) or 0) else ""
    if (lo > 0 or hi < 0) and p < alpha:
        moves = "raises" if diff > 0 else "lowers"
        good = (diff > 0) == (row.get("better", "higher") == "higher")
        return f"{v} {moves} {ep} by {ci}: {'better' if good else 'worse'} (p = {p:.3g} after Holm){cens}."
    why = "the interval includes 0" if lo <= 0 <= hi else f"p = {p:.3g} after Holm over the comparisons"
    return f"No difference detected: {v} changes {ep} by {ci}; {why}{cens}."
