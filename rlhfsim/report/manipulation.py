"""The manipulation check of an A/B page (issue 30): what each arm did to the rewards its optimiser saw, before any claim
about what it did to gold. An arm that was meant to degrade (or protect) the reward model but left its accuracy against
gold, its collapse and the advantages it handed the optimiser where the baseline's were tested nothing.

    manipulation_table(study)      one row per (variant, measure): per seed the mean over trained rounds (round >= 1),
                                   mean and sd over seeds, and the paired difference to the baseline with its 95% t interval
    manipulation_section(study)    the same as a report section: arms as rows, measures as columns (None: nothing logged)

Read from the page's study, in which the reward-model columns of arms that optimise gold itself are blanked
(registry.proxy_free): such an arm shows "–" for its reward model, and its advantages are gold's own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.report.phase import t_summary
from rlhfsim.report.plots import Section

# (metric column, heading): the reward model against gold, its collapse, and the advantages the optimiser applied
MEASURES = (
    ("rm/pairwise_acc", "RM pairwise acc. vs gold"),
    ("rm/within_prompt_spearman", "RM within-prompt Spearman vs gold"),
    ("collapse/probe_shape_rel", "collapse shape_rel (0 = as gold)"),
    ("adv/gold_corr", "advantage corr. with gold's"),
    ("adv/sign_agree", "advantage sign agreement"),
    ("adv/std_raw", "advantage scale (raw std)"),
)
COLUMNS = ["variant", "metric", "n", "mean", "sd", "n_pairs", "diff", "lo", "hi"]


def per_run(study, column: str) -> dict[tuple[str, int], float]:
    """(variant, seed) -> the run's mean of `column` over its trained rounds (round >= 1); runs without it left out."""
    out = {}
    for r in study.runs:
        m = r.metrics
        if m is None or m.empty or column not in m or "round" not in m or r.status not in ("finished", "partial"):
            continue
        x = pd.to_numeric(m.loc[m["round"] >= 1, column], errors="coerce").to_numpy(float)
        x = x[np.isfinite(x)]
        if x.size:
            out[(r.variant, r.seed)] = float(x.mean())
    return out


def manipulation_table(study) -> pd.DataFrame:
    rows = []
    for col, _ in MEASURES:
        vals = per_run(study, col)
        if not vals:
            continue
        for v in study.variants:
            own = {s: x for (var, s), x in vals.items() if var == v}
            if not own:
                continue
            xs = np.array(list(own.values()))
            row = {
                "variant": v,
                "metric": col,
                "n": len(xs),
                "mean": float(xs.mean()),
                "sd": float(xs.std(ddof=1)) if len(xs) > 1 else np.nan,
                "n_pairs": 0,
                "diff": np.nan,
                "lo": np.nan,
                "hi": np.nan,
            }
            if v != study.baseline:
                d = [x - vals[(study.baseline, s)] for s, x in own.items() if (study.baseline, s) in vals]
                t = t_summary(d)
                row.update(n_pairs=t["n"], diff=t["mean"], lo=t["lo"], hi=t["hi"])
            rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _f(x: float, spec: str = "{:.3f}") -> str:
    return spec.format(x) if np.isfinite(x) else "–"


def manipulation_section(study) -> Section | None:
    tab = manipulation_table(study)
    if tab.empty or len(study.variants) < 2:
        return None
    cols = [c for c, _ in MEASURES if c in set(tab["metric"])]
    heads = dict(MEASURES)
    rows = []
    for v in study.variants:
        row = [v + (" (baseline)" if v == study.baseline else "")]
        for c in cols:
            hit = tab[(tab["variant"] == v) & (tab["metric"] == c)]
            if hit.empty:
                row.append("–")
                continue
            r = hit.iloc[0]
            cell = _f(r["mean"]) + (f" ± {_f(r['sd'])}" if np.isfinite(r["sd"]) else "")
            if r["n_pairs"]:
                cell += f"; Δ {_f(r['diff'], '{:+.3f}')} [{_f(r['lo'], '{:+.3f}')}, {_f(r['hi'], '{:+.3f}')}]"
            row.append(cell)
        rows.append(row)
    note = (
        "What each arm did to the rewards its optimiser saw: per run the mean over trained rounds (round >= 1) of the "
        "reward model's agreement with gold on fresh held-out samples (rm/pairwise_acc, rm/within_prompt_spearman), the "
        "collapse of its within-prompt reward profile on the probe set (collapse/probe_shape_rel: 0 = as prompt-dependent "
        "as gold, 1 = one profile for every prompt), and the advantages the optimiser applied against gold's on the same "
        f"rollouts (adv/gold_corr, adv/sign_agree; adv/std_raw their scale); mean ± sd over seeds, and Δ the paired "
        f"difference to {study.baseline} seed by seed with its 95% t interval, not corrected for multiplicity. An arm whose "
        "manipulation left these where the baseline's are did not test its question; '–': not logged, or the arm "
        "optimises gold itself (no reward model). docs/metrics.md defines each measure."
    )
    return Section(
        f"Manipulation check: the rewards the optimiser saw, against {study.baseline}",
        ["variant", *(heads[c] for c in cols)],
        rows,
        note,
    )
