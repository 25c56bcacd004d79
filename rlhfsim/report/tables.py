"""The final table per variant: mean ± std over seeds, and the difference to the baseline with its Welch interval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from rlhfsim.report.study import Study

FINAL_METRICS = [
    ("gold_final", "final gold", "{:.3f}"),
    ("gold_peak", "peak gold", "{:.3f}"),
    ("gold_peak_round", "round of peak", "{:.1f}"),
    ("stagnation_round", "stagnation round", "{:.1f}"),
    ("kl_final", "final KL (nats)", "{:.3f}"),
    ("collapse_probe_shape_rel_final", "collapse (probe, vs gold; 1 = collapsed)", "{:.3f}"),
]


# ----------------------------------------------------------------------------- statistics


def welch_interval(a, b, level: float = 0.95) -> dict:
    """Difference of means a - b with its Welch t-interval. NaN bounds when either side has fewer than 2 values."""
    from scipy import stats

    a = np.asarray([x for x in a if x is not None and np.isfinite(x)], dtype=float)
    b = np.asarray([x for x in b if x is not None and np.isfinite(x)], dtype=float)
    out = {"diff": float("nan"), "lo": float("nan"), "hi": float("nan"), "df": float("nan"), "n_a": int(a.size), "n_b": int(b.size)}
    if a.size == 0 or b.size == 0:
        return out
    out["diff"] = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return out
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        out.update(lo=out["diff"], hi=out["diff"], df=float("inf"))
        return out
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t = float(stats.t.ppf(0.5 + level / 2, df))
    out.update(lo=out["diff"] - t * se, hi=out["diff"] + t * se, df=float(df))
    return out


def final_table(study: Study) -> pd.DataFrame:
    """Tidy: one row per (variant, metric) with mean, std, n and the Welch difference to the baseline."""
    s = study.summary
    rows = []
    if s.empty:
        return pd.DataFrame(columns=["variant", "metric", "label", "mean", "std", "n", "diff", "lo", "hi", "df", "n_baseline"])
    done = s[s["status"].isin(["finished", "partial"])] if "status" in s else s
    for v in study.variants:
        sv = done[done["variant"] == v]
        sb = done[done["variant"] == study.baseline]
        for col, label, _ in FINAL_METRICS:
            vals = pd.to_numeric(sv[col], errors="coerce").dropna().to_numpy() if col in sv else np.array([])
            base = pd.to_numeric(sb[col], errors="coerce").dropna().to_numpy() if col in sb else np.array([])
            w = welch_interval(vals, base) if v != study.baseline else {"diff": np.nan, "lo": np.nan, "hi": np.nan, "df": np.nan}
            rows.append({
                "variant": v, "metric": col, "label": label,
                "mean": float(vals.mean()) if vals.size else np.nan,
                "std": float(vals.std(ddof=1)) if vals.size > 1 else np.nan,
                "n": int(vals.size), "diff": w["diff"], "lo": w["lo"], "hi": w["hi"], "df": w["df"], "n_baseline": int(base.size),
            })
    return pd.DataFrame(rows)


def _fmt(x, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else spec.format(x)


def _signed(x, spec: str) -> str:
    s = _fmt(x, spec)
    return s if s == "–" or s.startswith("-") else "+" + s


def table_cells(study: Study, ft: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header and rows of the final table: each metric cell is (mean ± std, Δ [CI] line)."""
    header = ["variant", "runs"] + [label for _, label, _ in FINAL_METRICS]
    rows = []
    for v in study.variants:
        fv = ft[ft["variant"] == v]
        n_runs = int(fv["n"].max()) if not fv.empty else 0
        row = [(v + (" (baseline)" if v == study.baseline else ""), ""), (str(n_runs), "")]
        for col, _, spec in FINAL_METRICS:
            r = fv[fv["metric"] == col]
            if r.empty or r["n"].iloc[0] == 0:
                row.append(("–", ""))
                continue
            r = r.iloc[0]
            main = f"{_fmt(r['mean'], spec)} ± {_fmt(r['std'], spec)}" if r["n"] > 1 else f"{_fmt(r['mean'], spec)}"
            if r["n"] != n_runs or n_runs == 1:
                main += f" (n={r['n']})"
            sub = ""
            if v != study.baseline and np.isfinite(r["diff"]):
                ci = f" [{_signed(r['lo'], spec)}, {_signed(r['hi'], spec)}]" if np.isfinite(r["lo"]) else " [CI n/a: < 2 runs]"
                sub = f"Δ {_signed(r['diff'], spec)}{ci}"
            row.append((main, sub))
        rows.append(row)
    return header, rows

