"""Paired statistics over seeds: a variant against the baseline, run by run with the same seed.

Runs of one seed share the SFT policy, the prompts and the initial gold, so the seed is a block: the
effect is estimated from per-seed differences d_s = variant_s - baseline_s, which removes what the seed
shares (a Welch interval on the two unpaired samples keeps it as noise).

    paired_effect(variant_by_seed, baseline_by_seed)   # {diff, lo, hi, p, n, ...}
    holm([0.01, 0.04, 0.03])                           # Holm-adjusted p-values, same order
    compare(summary, variants, baseline, endpoints)     # tidy table of every comparison, Holm within families
    tost(d, margin)                                     # two one-sided tests: is |mean d| < margin?

Interval: with n >= MIN_BOOT paired seeds, the expanded percentile bootstrap (Hesterberg 2015, "What teachers
should know about the bootstrap", sec. 5.1): the percentile interval of the bootstrap means of d, at the tail
probability whose normal quantile is sqrt(n/(n-1)) t_{n-1}; the plain percentile interval is too narrow for the
few seeds of a study (coverage about 0.85 for a nominal 0.95 at n = 5). Below MIN_BOOT the bootstrap cannot
reach beyond the observed d at all (with 2 seeds it is [min d, max d], coverage 0.5), so the paired t-interval
is used. p-value: the paired t-test on the same d (scipy.stats.ttest_1samp).

Multiple comparisons: a verdict and the interval printed beside it use the same correction. compare() gives each
comparison, besides its unadjusted 95% interval (lo, hi), the interval at its Holm step's level (lo_adj, hi_adj at
level_adj = 1 - alpha / (m - j), j its 0-based rank by p): Holm rejects it (p_holm < alpha) only if its own p is
below that step's alpha, which for the t test is the adjusted interval excluding 0.

"No effect" is a claim of equivalence: it needs a margin declared before the run and a TOST (Schuirmann 1987) inside
it; the "interval inside +-MDE" reading is a power statement, not a test. Without a margin a report says "no effect
detected" and gives the interval.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rlhfsim.experiment.ids import documented_target

LEVEL = 0.95
N_BOOT = 4000
MIN_BOOT = 6  # fewer paired seeds: paired t-interval instead of the bootstrap
MIN_P_SEEDS = 5  # fewer paired seeds: intervals only, no p-value printed (such a study detects only large effects)
SMALL_NOTE = (
    f"fewer than {MIN_P_SEEDS} paired seeds: interval only, no p-value; a study this small detects only large effects"
)

# quantities that a finite run observes only partly: (column, why, predicate on a summary row -> censored)
# "drop after peak" is 0 and "peak round" is the last round whenever gold still rises at the end: the run
# stopped before the quantity could be seen; a never-stalled run has no stagnation round.
CENSORED = {
    "gold_drop_after_peak": "gold peaks in the last round: no drop is observed yet (0 is an upper bound; gold may fall after the run ends)",
    "gold_peak_round": "gold peaks in the last round: the true peak may come later",
    "proxy_change_after_gold_peak": "gold peaks in the last round: nothing after the peak is observed",
    "stagnation_round": "gold never stalled within the run: the round is beyond the last one",
}


def drop_censored(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """A copy of `summary` with `column` blanked (NaN) in the runs where it is censored, so a paired test leaves those
    seeds out instead of reading the bound (e.g. a drop of 0 while gold still rises) as a value."""
    cens = censored_rows(summary, column)
    if column not in summary or not cens.any():
        return summary
    out = summary.copy()
    out[column] = pd.to_numeric(out[column], errors="coerce").mask(cens.to_numpy())
    return out


def _target(column: str) -> float | None:
    return documented_target(column)


def _toward_target(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """For an endpoint whose better direction is "closer to a target" (ids.TARGET), the per-run distance |value - target|
    replaces the value, so a paired difference < 0 means closer (shape_rel < 0 is not "less collapsed" than 0)."""
    t = _target(column)
    if t is None or column not in summary:
        return summary
    out = summary.copy()
    out[column] = (pd.to_numeric(out[column], errors="coerce") - t).abs()
    return out


def censored_rows(summary: pd.DataFrame, column: str) -> pd.Series:
    """Bool per row: is `column` censored in that run (see CENSORED)?"""
    if column not in CENSORED or summary.empty:
        return pd.Series(False, index=summary.index)
    if column == "stagnation_round":
        return (
            pd.to_numeric(summary.get(column), errors="coerce").isna()
            if column in summary
            else pd.Series(True, index=summary.index)
        )
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


def paired_effect(
    variant: pd.Series, baseline: pd.Series, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0
) -> dict:
    """Mean paired difference with its expanded percentile bootstrap interval and paired t p-value.

    variant, baseline: values indexed by seed; seeds missing on either side are dropped (n counts pairs).
    n = 1: the difference without interval; d constant: a zero-width interval and p = 0 (d != 0) or 1.
    """
    from scipy import stats

    d = paired_differences(variant, baseline).to_numpy(dtype=float)
    out = {
        "diff": float("nan"),
        "lo": float("nan"),
        "hi": float("nan"),
        "p": float("nan"),
        "n": int(d.size),
        "sd": float("nan"),
        "method": "",
    }
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


def tost(d, margin: float, alpha: float = 1 - LEVEL) -> dict:
    """Two one-sided t tests of equivalence for paired differences ``d [n]`` inside ``(-margin, +margin)``.

    H0_lower: mean <= -margin (p_lower = P(T >= (mean + margin) / se)), H0_upper: mean >= +margin (p_upper = P(T <=
    (mean - margin) / se)), T ~ t_{n-1}. Equivalent at level alpha when both reject: p = max(p_lower, p_upper) < alpha,
    which is the (1 - 2 alpha) t interval [lo, hi] lying inside (-margin, margin). Non-finite d are dropped; fewer
    than 2 values: no test (NaN p, equivalent False). Returns {n, mean, sd, se, margin, p_lower, p_upper, p, lo, hi,
    level, equivalent}.
    """
    from scipy import stats

    if not (isinstance(margin, (int, float)) and margin > 0):
        raise ValueError(f"the equivalence margin must be a positive number, got {margin!r}")
    x = np.asarray(d, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    out = {
        "n": n,
        "mean": float(x.mean()) if n else float("nan"),
        "sd": float("nan"),
        "se": float("nan"),
        "margin": float(margin),
        "p_lower": float("nan"),
        "p_upper": float("nan"),
        "p": float("nan"),
        "lo": float("nan"),
        "hi": float("nan"),
        "level": 1 - 2 * alpha,
        "equivalent": False,
    }
    if n < 2:
        return out
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    if se == 0:  # no spread: the mean is known exactly
        inside = abs(mean) < margin
        p_l, p_u = (0.0 if mean > -margin else 1.0), (0.0 if mean < margin else 1.0)
        out.update(sd=sd, se=se, p_lower=p_l, p_upper=p_u, p=max(p_l, p_u), lo=mean, hi=mean, equivalent=bool(inside))
        return out
    p_l = float(stats.t.sf((mean + margin) / se, n - 1))
    p_u = float(stats.t.cdf((mean - margin) / se, n - 1))
    half = float(stats.t.ppf(1 - alpha, n - 1)) * se
    p = max(p_l, p_u)
    out.update(sd=sd, se=se, p_lower=p_l, p_upper=p_u, p=p, lo=mean - half, hi=mean + half, equivalent=bool(p < alpha))
    return out


def holm_alphas(pvalues, alpha: float = 1 - LEVEL) -> np.ndarray:
    """Each comparison's Holm step level alpha / (m - j), j its 0-based rank by p (ties in input order); NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    out[order] = alpha / (ok.size - np.arange(ok.size))
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


def compare(
    summary: pd.DataFrame, variants: list[str], baseline: str, endpoints: list[dict], family: str, level: float = LEVEL
) -> pd.DataFrame:
    """Every (variant != baseline) x endpoint comparison, Holm-adjusted within this family.

    summary: one row per run with columns variant, seed and the endpoint columns.
    endpoints: [{"endpoint": column, "better": "higher" | "lower", "margin": m (optional, declared before the run)}].
    Returns one row per comparison: family, variant, endpoint, better, diff, lo, hi (unadjusted), p, p_holm, n,
    lo_adj, hi_adj, level_adj (the interval at its Holm step's level), method, censored (runs of the pair with a
    censored value), censored_why; with a margin also margin, tost_p (Holm-adjusted over the family's TOSTs),
    tost_lo, tost_hi (the 1 - 2 alpha' t interval, alpha' that TOST's Holm step level) and equivalent.
    """
    cols = [
        "family",
        "variant",
        "endpoint",
        "better",
        "diff",
        "lo",
        "hi",
        "p",
        "p_holm",
        "n",
        "lo_adj",
        "hi_adj",
        "level_adj",
        "method",
        "censored",
        "censored_why",
        "margin",
        "tost_p",
        "tost_lo",
        "tost_hi",
        "equivalent",
    ]
    rows, diffs = [], []
    if summary.empty or "variant" not in summary:
        return pd.DataFrame(columns=cols)
    base = summary[summary["variant"] == baseline]
    # censored runs leave the paired test (their value is only a bound), they are counted, never read as a value
    kept = {ep["endpoint"]: _toward_target(drop_censored(summary, ep["endpoint"]), ep["endpoint"]) for ep in endpoints}
    pair = lambda v, col: (
        kept[col][kept[col]["variant"] == v].set_index("seed")[col],  # noqa: E731
        kept[col][kept[col]["variant"] == baseline].set_index("seed")[col],
    )
    for ep in endpoints:
        col = ep["endpoint"]
        cens_all = censored_rows(summary, col)
        for v in variants:
            if v == baseline:
                continue
            sv = summary[summary["variant"] == v]
            if col not in summary:
                r, d = {"diff": np.nan, "lo": np.nan, "hi": np.nan, "p": np.nan, "n": 0}, np.array([])
            else:
                r, d = paired_effect(*pair(v, col), level), paired_differences(*pair(v, col)).to_numpy(float)
            seeds = set(sv["seed"]) & set(base["seed"])
            pair_rows = summary.index[summary["variant"].isin([v, baseline]) & summary["seed"].isin(seeds)]
            n_cens = int(cens_all.reindex(pair_rows).fillna(False).astype(bool).sum())
            margin = ep.get("margin")
            better = "closer" if _target(col) is not None else ep.get("better", "higher")
            rows.append(
                {
                    "family": family,
                    "variant": v,
                    "endpoint": col,
                    "better": better,
                    **{k: r.get(k, np.nan) for k in ("diff", "lo", "hi", "p", "n")},
                    "method": r.get("method", ""),
                    "censored": n_cens,
                    "censored_why": CENSORED.get(col, "") if n_cens else "",
                    "margin": float(margin) if margin else np.nan,
                }
            )
            diffs.append(d)
    df = pd.DataFrame(rows, columns=[c for c in cols if c in rows[0]] if rows else cols)
    if df.empty:
        return df.reindex(columns=cols)
    alpha = 1 - level
    df["p_holm"] = holm(df["p"].to_numpy())
    steps = holm_alphas(df["p"].to_numpy(), alpha)  # the interval beside a Holm verdict is at that verdict's level
    df["level_adj"] = np.where(np.isfinite(steps), 1 - steps, level)
    adj = [
        paired_effect(*pair(r.variant, r.endpoint), r.level_adj) if r.endpoint in summary and r.n >= 2 else {}
        for r in df.itertuples()
    ]
    df["lo_adj"] = [a.get("lo", np.nan) for a in adj]
    df["hi_adj"] = [a.get("hi", np.nan) for a in adj]
    tosts = [tost(d, m, alpha) if np.isfinite(m) else None for d, m in zip(diffs, df["margin"])]
    tp = np.array([t["p"] if t else np.nan for t in tosts])
    df["tost_p"] = holm(tp)
    t_steps = holm_alphas(tp, alpha)
    redo = [tost(d, m, a) if t else None for d, m, a, t in zip(diffs, df["margin"], t_steps, tosts)]
    df["tost_lo"] = [t["lo"] if t else np.nan for t in redo]
    df["tost_hi"] = [t["hi"] if t else np.nan for t in redo]
    df["equivalent"] = [bool(t is not None and p < alpha) for t, p in zip(tosts, df["tost_p"])]
    return df[cols]


def _finite(row, key) -> float:
    v = row.get(key, np.nan) if hasattr(row, "get") else np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def verdict(row: dict | pd.Series, baseline: str, alpha: float = 1 - LEVEL, digits: int = 3) -> str:
    """One sentence from a primary comparison: which way, by how much, with the paired interval and n.

    The interval printed is the one at the verdict's own Holm step level (lo_adj/hi_adj; the plain 95% interval when
    the row has none). Not detected: with a declared margin the TOST decides "equivalent within +-m" or
    "inconclusive"; without one the sentence says "no effect detected" (never a null claimed).
    """
    v, ep, n = row["variant"], row["endpoint"], int(row["n"])
    diff, p = float(row["diff"]), float(row["p_holm"])
    lo, hi, lvl = _finite(row, "lo_adj"), _finite(row, "hi_adj"), _finite(row, "level_adj")
    if not np.isfinite(lo):
        lo, hi, lvl = float(row["lo"]), float(row["hi"]), 1 - alpha
    f = f"{{:+.{digits}f}}"
    if n < 2 or not np.isfinite(lo):
        return f"{v} vs {baseline}: {ep} {f.format(diff) if np.isfinite(diff) else 'n/a'} from {n} paired seed(s); no interval (needs >= 2)."
    method = row.get("method") or "paired"
    if lvl > 1 - alpha + 1e-12:  # a Holm step below the first: say which level the printed interval is at
        method = f"{lvl:.1%}".replace(".0%", "%") + f" Holm-step {method} interval"
    ci = f"{f.format(diff)} [{f.format(lo)}, {f.format(hi)}] vs {baseline} ({method}, {n} seeds)"
    cens = (
        f"; censored in {int(row['censored'])} run(s), left out of the test: {row['censored_why']}"
        if int(row.get("censored", 0) or 0)
        else ""
    )
    small = n < MIN_P_SEEDS  # too few seeds for a p-value worth printing: the interval decides, and says so
    ptxt = f"; {SMALL_NOTE}" if small else f" (p = {p:.3g} after Holm)"
    excludes = lo > 0 or hi < 0
    target = _target(str(ep)) if row.get("better") == "closer" else None
    if target is not None:  # the test ran on |value - target|: say so in the sentence
        ep = f"the distance of {ep} from its target {target:g}"
    if excludes and (small or p < alpha):
        moves = "raises" if diff > 0 else "lowers"
        good = (diff > 0) == (row.get("better", "higher") == "higher") if target is None else diff < 0
        return f"{v} {moves} {ep} by {ci}: {'better' if good else 'worse'}{ptxt}{cens}."
    if (
        excludes
    ):  # the shown interval (bootstrap) excludes 0 but the Holm-adjusted t test does not reject: never "no effect"
        return (
            f"Not called: {v} changes {ep} by {ci}; the interval excludes 0 but the paired t test does not reject after Holm "
            f"(p = {p:.3g}){cens}."
        )
    why = "the interval includes 0"
    m = _finite(row, "margin")
    if np.isfinite(m):
        tlo, thi, tp = _finite(row, "tost_lo"), _finite(row, "tost_hi"), _finite(row, "tost_p")
        tint = f"TOST interval [{f.format(tlo)}, {f.format(thi)}]" + (
            f"; {SMALL_NOTE}" if small else f", TOST p = {tp:.3g} after Holm"
        )
        if bool(row.get("equivalent", False)):
            return f"Equivalent within ±{m:g} (margin declared before the run): {v} changes {ep} by {ci}; {tint}{cens}."
        return (
            f"Inconclusive: no effect detected and equivalence within ±{m:g} not shown: {v} changes {ep} by {ci}; "
            f"{tint}{cens}."
        )
    if small:
        why += f"; {SMALL_NOTE}"
    return (
        f"No effect detected: {v} changes {ep} by {ci}; {why}; no equivalence margin was declared, so this is not "
        f"evidence of no effect{cens}."
    )
