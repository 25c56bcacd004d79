"""What a study cost: wall time per run (summary.json wall_time_s) and per phase (metrics' time/* per round).

Issue 19 asks every study to record its wall time per run and what each phase costs; the numbers come from the
runs themselves, so the page stays true when the code or the machine changes. Wall times are per run: with
`rlhfsim sweep --jobs J` J runs share the machine, so the study's wall clock is about sum / J on an idle machine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.report.plots import Section

PHASE_PREFIX = "time/"


def phase_means(metrics: pd.DataFrame) -> pd.DataFrame:
    """[runs x rounds] long metrics -> per variant, mean seconds per round of each time/* phase (rounds >= 1).

    Round 0 evaluates the SFT policy only and carries no time/round, so it is excluded. Phases that never cost
    anything (all zeros or absent) are dropped.
    """
    cols = [c for c in metrics.columns if str(c).startswith(PHASE_PREFIX)]
    if not cols or "round" not in metrics:
        return pd.DataFrame()
    m = metrics[metrics["round"] >= 1]
    out = m.groupby("variant", sort=False)[cols].mean()
    keep = [c for c in cols if np.nansum(np.abs(out[c].to_numpy(dtype=float))) > 0]
    return out[keep]


def cost_section(study) -> Section | None:
    """A table: per variant, runs, wall time per run (median, min-max), and mean seconds per round by phase."""
    s = study.summary
    if s.empty or "wall_time_s" not in s:
        return None
    phases = phase_means(study.metrics)
    order = [p for p in ("time/round",) if p in phases] + [p for p in phases.columns if p != "time/round"]
    header = ["variant", "runs", "wall s/run median", "min-max"] + [f"{p[len(PHASE_PREFIX) :]} s/round" for p in order]
    rows = []
    for v in study.variants:
        w = s.loc[s["variant"] == v, "wall_time_s"].dropna().astype(float)
        if w.empty:
            continue
        row = [v, str(len(w)), f"{w.median():.0f}", f"{w.min():.0f}-{w.max():.0f}"]
        row += [f"{phases.at[v, p]:.2f}" if v in phases.index and np.isfinite(phases.at[v, p]) else "" for p in order]
        rows.append(row)
    if not rows:
        return None
    total = float(s["wall_time_s"].dropna().astype(float).sum())
    note = (
        f"Wall time per run from summary.json (wall_time_s), {total / 60:.0f} run-minutes in all; per-phase seconds are "
        "means over runs and rounds >= 1 of the metrics' time/* columns (round = the whole round). Runs that share "
        "the machine (sweep --jobs) or a loaded machine inflate these; they measure this study's runs, not the code's best."
    )
    return Section("Cost: wall time per run and per phase", header, rows, note)
