"""Gold at matched KL, a standard secondary (issue 30): arms that move the policy two or four times as far from the SFT
reference are compared where both have gone equally far, so a gold difference that is only "went further" is not read
as an effect.

    matched_kl_table(study)    one row per variant != baseline: per seed KL* (the largest KL both runs reach) and the
                               paired difference of held-out gold there, mean with its 95% t interval
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.report.phase import matched_kl, t_summary
from rlhfsim.report.plots import Section

COLUMNS = ["variant", "n", "kl_star", "gold_variant", "gold_baseline", "diff", "lo", "hi"]


def _trajectories(study) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    out = {}
    for r in study.runs:
        m = r.metrics
        if (
            m is None
            or m.empty
            or "eval/kl" not in m
            or "eval/gold" not in m
            or r.status not in ("finished", "partial")
        ):
            continue
        m = m.sort_values("round")
        out[(r.variant, r.seed)] = (
            pd.to_numeric(m["eval/kl"], errors="coerce").to_numpy(float),
            pd.to_numeric(m["eval/gold"], errors="coerce").to_numpy(float),
        )
    return out


def matched_kl_table(study) -> pd.DataFrame:
    traj = _trajectories(study)
    rows = []
    for v in study.variants:
        if v == study.baseline:
            continue
        per = []
        for (var, seed), tv in traj.items():
            tb = traj.get((study.baseline, seed))
            if var != v or tb is None:
                continue
            k, gb, gv = matched_kl(tb, tv)
            if np.isfinite(gb) and np.isfinite(gv):
                per.append((k, gv, gb))
        if not per:
            continue
        k, gv, gb = (np.array(x) for x in zip(*per))
        t = t_summary(gv - gb)
        rows.append(
            {
                "variant": v,
                "n": t["n"],
                "kl_star": float(k.mean()),
                "gold_variant": float(gv.mean()),
                "gold_baseline": float(gb.mean()),
                "diff": t["mean"],
                "lo": t["lo"],
                "hi": t["hi"],
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def matched_kl_section(study):
    """The table as a report section (None with fewer than 2 variants or no KL logged)."""
    tab = matched_kl_table(study)
    if tab.empty:
        return None
    f = lambda x, s="{:+.3f}": s.format(x) if np.isfinite(x) else "n/a"  # noqa: E731
    rows = [
        [
            r["variant"],
            str(int(r["n"])),
            f(r["kl_star"], "{:.3f}"),
            f(r["gold_variant"], "{:.3f}"),
            f(r["gold_baseline"], "{:.3f}"),
            f"{f(r['diff'])} [{f(r['lo'])}, {f(r['hi'])}]",
        ]
        for _, r in tab.iterrows()
    ]
    note = (
        f"Per seed, KL* is the largest KL to the SFT reference (eval/kl) that both the variant's and {study.baseline}'s run "
        "reach; each run's held-out gold is read where it first reaches KL*, linear between the rounds around the crossing. "
        "The difference is paired by seed; 95% t interval over seeds, not corrected for multiplicity (a secondary)."
    )
    return Section(
        f"Gold at matched KL against {study.baseline}",
        ["variant", "seeds", "mean KL* (nats)", "gold (variant)", "gold (baseline)", "difference [95% t]"],
        rows,
        note,
    )
