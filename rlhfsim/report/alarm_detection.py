"""The page's alarm-detection tables and figure: does each audit alarm tell the runs whose held-out gold fell from the
runs whose gold held, and how many rounds ahead? The numbers are rlhfsim.diagnostics.alarm_detection's (the declared
gold-fall rule: gold more than 0.03 below its running peak for two logged rounds), recomputed from each audited run's
metrics rows; runs with audits off are left out.

    runs, alarms = detection(study)           # per (run, alarm) and per alarm (diagnostics.alarm_detection)
    sections(study)                           # [per-alarm Section, per-run Section], [] when no run logged alarms
    fig_detection(study)                      # rates per alarm | lead per run, or None
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.alarm_detection import MARGIN, SUSTAIN, alarm_detection
from rlhfsim.diagnostics.audit import ALARMS
from rlhfsim.report.plots import Section, pyplot, seaborn_theme
from rlhfsim.report.select import audits_on

RULE = (
    f"Gold fell: held-out gold more than {MARGIN:g} below its running peak in {SUSTAIN} logged rounds in a row (the "
    "fall round is the first of them; about 3 paired standard errors of a round-to-round change in the realistic "
    "preset, docs/metrics.md \"Alarm detection\"). This is not the 'drop' of the table above (summary.json: one round "
    "more than 0.05 below the overall peak)."
)
ALARM_NOTE = (
    "Per alarm, all variants pooled. Runs gold fell = positives: hit = the alarm fired at or before the fall "
    "round (true positive), late = only after it, missed = never (late and missed are the false negatives). "
    "Runs gold held = negatives: a false alarm fires in one of them at any round. Discrimination = detection "
    "rate - false-alarm rate (Youden's J: 0 for an alarm that fires whatever gold does, or never; 1 perfect). "
    "Lead = fall round - first alarm round over the hits (rounds of warning). " + RULE
)
RUN_NOTE = (
    "One row per audited run. Each alarm's cell: the first round it fired and, where gold fell, the lead in rounds "
    "(fall round - first alarm round: > 0 warned ahead, < 0 fired after the fall); '–' never fired; 'n/m' not "
    "logged. " + RULE
)


def study_metrics(study) -> pd.DataFrame:
    """Per-round rows of the audited runs, with their variant and seed."""
    parts = [
        r.metrics.assign(variant=r.variant, seed=r.seed)
        for r in study.runs
        if r.metrics is not None and not r.metrics.empty and "eval/gold" in r.metrics and audits_on(r)
    ]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def detection(study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-run, per-alarm) tables of the study's audited runs under the declared rule; empty when none logged alarms."""
    m = study_metrics(study)
    if m.empty or not any(f"audit/alarm_{a}" in m for a in ALARMS):
        return pd.DataFrame(), pd.DataFrame()
    runs, alarms = alarm_detection(m)
    order = {v: i for i, v in enumerate(study.variants)}
    runs = runs.sort_values(
        ["variant", "seed"], key=lambda s: s.map(order) if s.name == "variant" else s, kind="stable"
    )
    return runs, alarms


def _rate(x) -> str:
    return "–" if pd.isna(x) else f"{x:.2f}"


def _int(x) -> str:
    return "–" if pd.isna(x) else str(int(x))


def alarm_table(alarms: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    header = [
        "alarm",
        "runs gold fell",
        "hit (late, missed)",
        "detection rate",
        "runs gold held",
        "false alarms",
        "false-alarm rate",
        "discrimination",
        "lead in rounds, median [min, max]",
    ]
    rows = []
    for r in alarms.itertuples():
        lead = "–" if pd.isna(r.lead_median) else f"{r.lead_median:.1f} [{r.lead_min:.0f}, {r.lead_max:.0f}]"
        rows.append(
            [
                r.alarm,
                str(r.positives),
                f"{r.true_positives} ({r.late}, {r.missed})",
                _rate(r.detection_rate),
                str(r.negatives),
                str(r.false_alarms),
                _rate(r.false_alarm_rate),
                _rate(r.discrimination),
                lead,
            ]
        )
    return header, rows


def run_table(runs: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    alarms = [a for a in ALARMS if a in set(runs["alarm"])]
    header = ["variant", "seed", "gold peak", "gold fell at round"] + [f"{a}: first (lead)" for a in alarms]
    rows = []
    for (v, s), d in runs.groupby(["variant", "seed"], sort=False):
        d = d.set_index("alarm")
        cells = []
        for a in alarms:
            x = d.loc[a]
            if not x["measured"]:
                cells.append("n/m")
            elif pd.isna(x["first_alarm"]):
                cells.append("–")
            else:
                cells.append(_int(x["first_alarm"]) + ("" if pd.isna(x["lead"]) else f" ({int(x['lead']):+d})"))
        first = d.iloc[0]
        rows.append(
            [
                str(v),
                str(s),
                f"{first['peak_gold']:.3f}",
                _int(first["fall_round"]) if first["fell"] else "held",
                *cells,
            ]
        )
    return header, rows


def sections(study) -> list[Section]:
    """The per-alarm detection table and the per-run table; [] when no audited run logged alarms."""
    runs, alarms = detection(study)
    if alarms.empty:
        return []
    return [
        Section(
            "Alarm detection: does each alarm tell runs whose gold fell from runs whose gold held?",
            *alarm_table(alarms),
            ALARM_NOTE,
        ),
        Section("Alarm detection per run: first alarm round and lead on the gold fall", *run_table(runs), RUN_NOTE),
    ]


def fig_detection(study):
    """Two panels: detection and false-alarm rate per alarm (with counts); lead in rounds per run where gold fell and
    the alarm fired (hits >= 0, late < 0). None when no audited run logged alarms."""
    runs, alarms = detection(study)
    if alarms.empty:
        return None
    seaborn_theme()
    plt = pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.5, 0.6 * len(alarms) + 2.2), sharey=True)
    y = np.arange(len(alarms))
    ax.barh(
        y - 0.2, alarms["detection_rate"].fillna(0), height=0.4, color="tab:blue", label="detection rate (gold fell)"
    )
    ax.barh(
        y + 0.2, alarms["false_alarm_rate"].fillna(0), height=0.4, color="tab:red", label="false-alarm rate (gold held)"
    )
    for i, r in enumerate(alarms.itertuples()):
        ax.text(1.02, i - 0.2, f"{r.true_positives}/{r.positives}", va="center", fontsize=8)
        ax.text(1.02, i + 0.2, f"{r.false_alarms}/{r.negatives}", va="center", fontsize=8)
    ax.set(yticks=y, yticklabels=alarms["alarm"], xlim=(0, 1.18), xlabel="share of runs (0-1)", title="rates per alarm")
    ax.invert_yaxis()
    ax.legend(loc="lower right", fontsize=8)
    fired = runs[runs["fell"] & runs["lead"].notna()]
    rng = np.random.default_rng(0)
    where = {a: i for i, a in enumerate(alarms["alarm"])}
    for out, colour in (("hit", "tab:blue"), ("late", "tab:orange")):
        d = fired[fired["outcome"] == out]
        if not d.empty:
            bx.scatter(
                d["lead"].astype(float),
                d["alarm"].map(where) + rng.uniform(-0.25, 0.25, len(d)),
                s=18,
                alpha=0.7,
                color=colour,
                label=f"{out} ({len(d)} runs)",
            )
    bx.axvline(0, color="0.3", lw=1, ls="--")
    bx.set(xlabel="lead = gold fall round - first alarm round (rounds)", title="lead per run where gold fell")
    if not fired.empty:
        bx.legend(loc="lower right", fontsize=8)
    else:
        bx.text(0.5, 0.5, "no run whose gold fell had an alarm", transform=bx.transAxes, ha="center", fontsize=9)
    fig.tight_layout()
    return fig
