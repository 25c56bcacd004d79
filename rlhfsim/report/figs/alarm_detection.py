"""alarm_detection: does each reward-model audit alarm tell the runs whose held-out gold fell from the runs whose gold
held, and with how many rounds of warning? The answering figure of audit-kind pages (report/kinds.py); another page
draws it when its experiment names it in `headline` (its tables, report/alarm_detection.py, are on every page whose
audited runs logged alarms). Numbers: rlhfsim.diagnostics.alarm_detection (the declared gold-fall rule)."""

from __future__ import annotations

from rlhfsim.diagnostics.alarm_detection import MARGIN, SUSTAIN
from rlhfsim.report.alarm_detection import fig_detection
from rlhfsim.report.registry import Figure, Page, audits_off


def draw(page: Page):
    return fig_detection(page.study)  # None when no audited run logged alarms: left out


FIGURE = Figure(
    "alarm_detection",
    draw,
    kinds=("audit",),
    needs=("audit/alarms",),
    when=audits_off,
    quiet=True,
    title="Alarm detection: which alarms fire where gold falls, and how early",
    caption=(
        f"Left: per alarm, the share of runs whose held-out gold fell (more than {MARGIN:g} below its running peak "
        f"for {SUSTAIN} rounds in a row) in which it fired at or before the fall (blue, detection rate), and the share "
        "of runs whose gold held in which it fired at all (red, false-alarm rate); counts at the bar ends. An alarm "
        "that discriminates has a long blue and a short red bar; equal bars mean it fires whatever gold does. Right: "
        "per run whose gold fell and whose alarm fired, the lead in rounds (fall round - first alarm round; blue "
        ">= 0 a warning, orange < 0 fired after the fall), jittered vertically. All variants pooled."
    ),
)
