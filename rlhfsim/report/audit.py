"""The report's audit section: which alarms fired, and how many rounds before gold peaked and fell.

Recomputed from each run's metrics rows (rlhfsim.diagnostics.audit.warning_summary), so a report is
right even for runs whose summary.json predates a change of the definition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.audit import ALARMS, warning_summary
from rlhfsim.report.plots import Section
from rlhfsim.report.select import audits_on

NOTE = (
    "Per variant over seeds. first: the first round an alarm fired (rounds with the reward model of that round, "
    "before its PPO); fired: seeds where it fired at all, and how many rounds it was on (mean). Lead on peak = "
    "gold peak round - first alarm round (> 0: a warning before gold peaked; a peak at round 0, the SFT policy, leaves "
    "no round to warn in). Lead on drop = first round gold sat more than 0.05 below its peak - first alarm round "
    "(> 0: a warning before the damage showed in gold; '–' where gold never dropped that far). Mean ± sd over the seeds "
    "where both are defined, with n."
)


def run_warnings(study) -> pd.DataFrame:
    """One row per (run, alarm): variant, seed, first round, rounds fired, peak/drop rounds and leads."""
    rows = []
    for r in study.runs:
        if r.metrics is None or r.metrics.empty or "eval/gold" not in r.metrics or not audits_on(r):
            continue  # a run with audits off has no alarms to report, whatever its metrics rows hold
        recs = r.metrics.replace({np.nan: None}).to_dict("records")
        w = warning_summary(recs)
        if not w:
            continue
        for a in ALARMS:
            aw = w["alarms"][a]
            rows.append(
                {
                    "variant": r.variant,
                    "seed": r.seed,
                    "alarm": a,
                    "peak_round": w["gold_peak_round"],
                    "drop_round": w["gold_drop_round"],
                    **aw,
                    "measured": f"audit/alarm_{a}" in r.metrics,
                }
            )
    return pd.DataFrame(rows)


def _ms(x: pd.Series) -> str:
    v = pd.to_numeric(x, errors="coerce").dropna()
    if v.empty:
        return "–"
    sd = f" ± {v.std():.1f}" if len(v) > 1 else ""
    return f"{v.mean():.1f}{sd} (n={len(v)})"


def warning_table(study) -> tuple[list[str], list[list[str]]]:
    """Header and rows: variant x alarm with first round, seeds fired, lead on peak, lead on drop."""
    df = run_warnings(study)
    header = ["variant", "alarm", "first round", "fired (seeds; rounds on)", "lead on gold peak", "lead on gold drop"]
    out = []
    if df.empty or not df["measured"].any():
        return header, out
    for v in [x for x in study.variants if x in set(df["variant"])]:
        for a in ALARMS:
            d = df[(df["variant"] == v) & (df["alarm"] == a)]
            if not d["measured"].any():
                out.append([v, a, "not measured", "–", "–", "–"])
                continue
            fired = d["first_round"].notna()
            out.append(
                [
                    v,
                    a,
                    _ms(d["first_round"]),
                    f"{int(fired.sum())}/{len(d)}; {d['rounds_fired'].mean():.1f}",
                    _ms(d["lead_rounds"]),
                    _ms(d["lead_drop_rounds"]),
                ]
            )
    return header, out


def gold_table(study) -> tuple[list[str], list[list[str]]]:
    """Header and rows per variant: SFT gold, peak gold and round, drop round, final gold (mean ± sd over seeds)."""
    df = run_warnings(study)
    header = ["variant", "gold SFT", "gold peak", "peak round", "drop round (seeds)", "gold final", "closed acc final"]
    out = []
    m = study.metrics
    for v in study.variants:
        runs = m[m["variant"] == v] if not m.empty else m
        if runs.empty or "eval/gold" not in runs:
            continue
        g = runs.groupby("seed")["eval/gold"]
        first, peak, last = g.first(), g.max(), g.last()
        acc = (
            runs.groupby("seed")["eval/accuracy_closed"].last()
            if "eval/accuracy_closed" in runs
            else pd.Series(dtype=float)
        )
        d = df[(df["variant"] == v) & (df["alarm"] == ALARMS[0])] if not df.empty else df

        def f(x):
            return f"{x.mean():.3f} ± {x.std():.3f}" if len(x) > 1 else (f"{x.mean():.3f}" if len(x) else "–")

        drops = d["drop_round"].dropna() if not d.empty else pd.Series(dtype=float)
        out.append(
            [
                v,
                f(first),
                f(peak),
                _ms(d["peak_round"]) if not d.empty else "–",
                f"{_ms(drops)} ({len(drops)}/{len(d)})",
                f(last),
                f(acc),
            ]
        )
    return header, out


def sections(study) -> list[Section]:
    """The audit tables as report sections (gold per variant, alarms against the gold peak and drop); [] when no run
    logged audit alarms. Whether the alarms discriminate runs whose gold fell: report/alarm_detection.py."""
    wh, wr = warning_table(study)
    if not wr:
        return []
    return [
        Section("Audits: gold reward per variant", *gold_table(study), "Mean ± sd over seeds."),
        Section("Audits: alarms against the gold peak and drop", wh, wr, NOTE),
    ]


def markdown(study, md_table) -> list[str]:
    """The audit sections under one '## Audits' heading as Markdown lines (md_table renders a header and rows)."""
    secs = sections(study)
    if not secs:
        return ["## Audits", "", "_No run logged audit alarms (audit/alarm_* columns)._", ""]
    return ["## Audits", ""] + [
        x for s in secs for x in (f"{s.title}:", "", *md_table(s.header, s.rows), "", s.note, "")
    ]


def html(study, html_table) -> str:
    """The same as HTML (html_table renders a header and rows)."""
    from html import escape

    secs = sections(study)
    if not secs:
        return "<h2 id='audits'>Audits</h2><p><em>No run logged audit alarms (audit/alarm_* columns).</em></p>"
    return "<h2 id='audits'>Audits</h2>" + "".join(
        f"<p>{escape(s.title)}:</p>" + html_table(s.header, s.rows) + f"<p class='note'>{escape(s.note)}</p>"
        for s in secs
    )
