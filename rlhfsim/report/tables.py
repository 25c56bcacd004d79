"""The final table per variant: mean ± std over seeds, and the paired difference to the baseline (report/stats.py), one
column per metric that experiment/metrics.py declares with table=True."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.experiment.metrics import table_metrics
from rlhfsim.report.stats import censored_rows, drop_censored, paired_effect
from rlhfsim.report.study import Study

COLUMNS = [
    "variant",
    "metric",
    "label",
    "mean",
    "std",
    "n",
    "diff",
    "lo",
    "hi",
    "p",
    "n_pairs",
    "n_baseline",
    "censored",
]


def finished(study: Study) -> pd.DataFrame:
    s = study.summary
    return s[s["status"].isin(["finished", "partial"])] if "status" in s else s


def final_table(study: Study) -> pd.DataFrame:
    """Tidy: one row per (variant, metric): mean, std, n, and the paired difference to the baseline (seed by seed)."""
    done = finished(study)
    if done.empty:
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    for v in study.variants:
        for col, label, _ in table_metrics():
            kept = drop_censored(done, col)  # a censored value is a bound: counted, not averaged or paired
            sv, sb = kept[kept["variant"] == v], kept[kept["variant"] == study.baseline]
            vals = pd.to_numeric(sv[col], errors="coerce").dropna().to_numpy() if col in sv else np.array([])
            n_base = int(pd.to_numeric(sb[col], errors="coerce").notna().sum()) if col in sb else 0
            none = {"diff": np.nan, "lo": np.nan, "hi": np.nan, "p": np.nan, "n": 0}
            w = (
                paired_effect(sv.set_index("seed")[col], sb.set_index("seed")[col])
                if v != study.baseline and col in done
                else none
            )
            rows.append(
                {
                    "variant": v,
                    "metric": col,
                    "label": label,
                    "mean": float(vals.mean()) if vals.size else np.nan,
                    "std": float(vals.std(ddof=1)) if vals.size > 1 else np.nan,
                    "n": int(vals.size),
                    "diff": w["diff"],
                    "lo": w["lo"],
                    "hi": w["hi"],
                    "p": w["p"],
                    "n_pairs": w["n"],
                    "n_baseline": n_base,
                    "censored": int(censored_rows(done[done["variant"] == v], col).sum()) if col in done else 0,
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def _fmt(x, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else spec.format(x)


def _signed(x, spec: str) -> str:
    s = _fmt(x, spec)
    return s if s == "–" or s.startswith("-") else "+" + s


def table_cells(study: Study, ft: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header and rows of the final table: each metric cell is (mean ± std, Δ [paired CI] line)."""
    header = ["variant", "runs"] + [label for _, label, _ in table_metrics()]
    rows = []
    for v in study.variants:
        fv = ft[ft["variant"] == v]
        n_runs = int(fv["n"].max()) if not fv.empty else 0
        row = [(v + (" (baseline)" if v == study.baseline else ""), ""), (str(n_runs), "")]
        for col, _, spec in table_metrics():
            r = fv[fv["metric"] == col]
            if r.empty or r["n"].iloc[0] == 0:
                row.append(("–", ""))
                continue
            r = r.iloc[0]
            main = f"{_fmt(r['mean'], spec)} ± {_fmt(r['std'], spec)}" if r["n"] > 1 else f"{_fmt(r['mean'], spec)}"
            if r["n"] != n_runs or n_runs == 1:
                main += f" (n={r['n']})"
            if r["censored"]:
                main += f" (censored in {r['censored']})"
            sub = ""
            if v != study.baseline and np.isfinite(r["diff"]):
                ci = (
                    f" [{_signed(r['lo'], spec)}, {_signed(r['hi'], spec)}]"
                    if np.isfinite(r["lo"])
                    else " [CI n/a: < 2 paired seeds]"
                )
                sub = f"Δ {_signed(r['diff'], spec)}{ci}"
            row.append((main, sub))
        rows.append(row)
    return header, rows
