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

NOTE = ("Per variant over seeds. first: the first round an alarm fired (rounds with the reward model of that round, "
        "before its PPO); fired: seeds where it fired at all, and how many rounds it was on (mean). Lead on peak = "
        "gold peak round - first alarm round (> 0: a warning before gold peaked; a peak at round 0, the SFT policy, leaves "
        "no round to warn in). Lead on drop = first round gold sat more than 0.05 below its peak - first alarm round "
        "(> 0: a warning before the damage showed in gold; '–' where gold never dropped that far). Mean ± sd over the seeds "
        "where both are defined, with n.")


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
            rows.append({"variant": r.variant, "seed": r.seed, "alarm": a, "peak_round": w["gold_peak_round"],
                         "drop_round": w["gold_drop_round"], **aw, "measured": f"audit/alarm_{a}" in r.metrics})
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
            out.append([v, a, _ms(d["first_round"]), f"{int(fired.sum())}/{len(d)}; {d['rounds_fired'].mean():.1f}",
                        _ms(d["lead_rounds"]), _ms(d["lead_drop_rounds"])])
    return header, out


DETECTION_NOTE = ("Per alarm over every run of the study (all variants pooled). A run is positive when its held-out gold "
                  "fell more than 0.05 below its peak (the drop round above). Detected: the alarm fired at or before "
                  "the drop round; late: it first fired after it; missed: never fired. A false alarm fires in a run "
                  "whose gold never dropped. Lead = drop round - first alarm round over detected runs (>= 0). An alarm "
                  "that discriminates has a high detection rate and a low false-alarm rate; firing in every run is "
                  "no discrimination.")


def detection(df: pd.DataFrame) -> pd.DataFrame:
    """Per alarm: positives (runs whose gold dropped), detected / late / missed, negatives and false alarms, lead.

    df: run_warnings's rows (one per run x alarm). Unmeasured alarms are left out. Returns one row per alarm with
    detection_rate = detected / positives and false_alarm_rate = false alarms / negatives (NaN when undefined).
    """
    cols = ["alarm", "positives", "detected", "late", "missed", "negatives", "false_alarms", "detection_rate",
            "false_alarm_rate", "lead_median", "lead_min", "lead_max"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for a in [x for x in ALARMS if x in set(df["alarm"])]:
        d = df[(df["alarm"] == a) & df["measured"]]
        if d.empty:
            continue
        pos = d[d["drop_round"].notna()]
        neg = d[d["drop_round"].isna()]
        first = pd.to_numeric(pos["first_round"], errors="coerce")
        drop = pd.to_numeric(pos["drop_round"], errors="coerce")
        hit = first.notna() & (first <= drop)
        late = first.notna() & (first > drop)
        lead = (drop - first)[hit]
        fa = int(neg["first_round"].notna().sum())
        out.append({"alarm": a, "positives": len(pos), "detected": int(hit.sum()), "late": int(late.sum()),
                    "missed": int(first.isna().sum()), "negatives": len(neg), "false_alarms": fa,
                    "detection_rate": hit.sum() / len(pos) if len(pos) else np.nan,
                    "false_alarm_rate": fa / len(neg) if len(neg) else np.nan,
                    "lead_median": lead.median() if len(lead) else np.nan,
                    "lead_min": lead.min() if len(lead) else np.nan, "lead_max": lead.max() if len(lead) else np.nan})
    return pd.DataFrame(out, columns=cols)


def detection_table(study) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the detection table (detection()) for the page."""
    det = detection(run_warnings(study))
    header = ["alarm", "runs gold dropped", "detected (late, missed)", "detection rate", "runs gold held",
              "false alarms", "false-alarm rate", "lead in rounds, median [min, max]"]

    def rate(x):
        return "–" if pd.isna(x) else f"{x:.2f}"

    rows = []
    for r in det.itertuples():
        lead = "–" if pd.isna(r.lead_median) else f"{r.lead_median:.1f} [{r.lead_min:.0f}, {r.lead_max:.0f}]"
        rows.append([r.alarm, str(r.positives), f"{r.detected} ({r.late}, {r.missed})", rate(r.detection_rate),
                     str(r.negatives), str(r.false_alarms), rate(r.false_alarm_rate), lead])
    return header, rows


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
        acc = runs.groupby("seed")["eval/accuracy_closed"].last() if "eval/accuracy_closed" in runs else pd.Series(dtype=float)
        d = df[(df["variant"] == v) & (df["alarm"] == ALARMS[0])] if not df.empty else df

        def f(x):
            return f"{x.mean():.3f} ± {x.std():.3f}" if len(x) > 1 else (f"{x.mean():.3f}" if len(x) else "–")

        drops = d["drop_round"].dropna() if not d.empty else pd.Series(dtype=float)
        out.append([v, f(first), f(peak), _ms(d["peak_round"]) if not d.empty else "–",
                    f"{_ms(drops)} ({len(drops)}/{len(d)})", f(last), f(acc)])
    return header, out


def sections(study) -> list[Section]:
    """The audit tables as report sections (gold per variant, alarms against the gold peak and drop, detection); []
    when no run logged audit alarms."""
    wh, wr = warning_table(study)
    if not wr:
        return []
    return [Section("Audits: gold reward per variant", *gold_table(study), "Mean ± sd over seeds."),
            Section("Audits: alarms against the gold peak and drop", wh, wr, NOTE),
            Section("Audits: does each alarm discriminate runs whose gold dropped from runs whose gold held?", *detection_table(study),
                    DETECTION_NOTE)]


def markdown(study, md_table) -> list[str]:
    """The audit sections under one '## Audits' heading as Markdown lines (md_table renders a header and rows)."""
    secs = sections(study)
    if not secs:
        return ["## Audits", "", "_No run logged audit alarms (audit/alarm_* columns)._", ""]
    return ["## Audits", ""] + [x for s in secs for x in (f"{s.title}:", "", *md_table(s.header, s.rows), "", s.note, "")]


def html(study, html_table) -> str:
    """The same as HTML (html_table renders a header and rows)."""
    from html import escape

    secs = sections(study)
    if not secs:
        return "<h2 id='audits'>Audits</h2><p><em>No run logged audit alarms (audit/alarm_* columns).</em></p>"
    return "<h2 id='audits'>Audits</h2>" + "".join(f"<p>{escape(s.title)}:</p>" + html_table(s.header, s.rows)
                                                   + f"<p class='note'>{escape(s.note)}</p>" for s in secs)
