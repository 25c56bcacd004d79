"""The report's audit section: leads of each alarm on the gold peak and drop, per variant over seeds."""

from rlhfsim.report import audit as section
from rlhfsim.report.alarm_detection import alarm_table, detection
from rlhfsim.report.render import _md_table
from tests.fixtures.memory import mem_run, mem_study


def _run(variant, seed, gold, exploit_from=None, shift_at=()):
    rows = []
    for r, g in enumerate(gold):
        row = {"round": r, "eval/gold": g}
        if r > 0:
            row.update({f"audit/alarm_{a}": 0.0 for a in ("collapse", "saturation", "explosion", "exploit", "shift")})
            row["audit/alarm_exploit"] = float(exploit_from is not None and r >= exploit_from)
            row["audit/alarm_shift"] = float(r in shift_at)
        rows.append(row)
    return mem_run(variant, seed, rows, "audits")


def _study(runs):
    return mem_study(runs, "audits")


def test_leads_over_seeds():
    runs = [
        _run("base", 0, [0.4, 0.45, 0.5, 0.3, 0.3], exploit_from=1, shift_at=(4,)),  # peak 2, drop 3
        _run("base", 1, [0.4, 0.5, 0.42, 0.41, 0.3], exploit_from=2),  # peak 1, drop 2
        _run("fix", 0, [0.4, 0.41, 0.42, 0.43, 0.44]),
    ]  # never falls, never alarms
    df = section.run_warnings(_study(runs))
    ex = df[(df.variant == "base") & (df.alarm == "exploit")].set_index("seed")
    assert ex.loc[0, "lead_rounds"] == 1 and ex.loc[0, "lead_drop_rounds"] == 2
    assert ex.loc[1, "lead_rounds"] == -1 and ex.loc[1, "lead_drop_rounds"] == 0
    header, rows = section.warning_table(_study(runs))
    cells = {(r[0], r[1]): r for r in rows}
    assert cells[("base", "exploit")][4] == "0.0 ± 1.4 (n=2)" and cells[("base", "exploit")][5] == "1.0 ± 1.4 (n=2)"
    assert cells[("base", "shift")][3].startswith("1/2") and cells[("fix", "exploit")][3].startswith("0/1")
    gh, gr = section.gold_table(_study(runs))
    assert gr[1][0] == "fix" and "(0/1)" in gr[1][4]  # no drop in the run that never fell
    md = "\n".join(section.markdown(_study(runs), _md_table))
    assert "## Audits" in md and "| base | exploit |" in md


def test_runs_without_audits_say_so():
    runs = [mem_run("a", 0, [{"round": 0, "eval/gold": 0.3}], "e")]
    assert "No run logged audit alarms" in "\n".join(section.markdown(_study(runs), _md_table))


def test_detection_counts_hits_late_misses_and_false_alarms():
    # The page's detection (report/alarm_detection.py; rule: gold > 0.03 below its running peak two rounds in a row).
    # Fall rounds: a -> 3, b -> 2, c -> 3, d and e never fall.
    runs = [
        _run("v", 0, [0.4, 0.45, 0.5, 0.3, 0.3], exploit_from=1),  # exploit hit, lead 3 - 1 = 2
        _run("v", 1, [0.4, 0.5, 0.42, 0.41, 0.3], exploit_from=2),  # exploit at the fall, lead 0
        _run("v", 2, [0.4, 0.45, 0.5, 0.3, 0.3], exploit_from=4),  # exploit late (4 > 3)
        _run("w", 0, [0.4, 0.41, 0.42, 0.43, 0.44], exploit_from=2),  # gold held: a false alarm
        _run("w", 1, [0.4, 0.41, 0.42, 0.43, 0.44], shift_at=(2,)),
    ]  # gold held: shift's false alarm
    _, det = detection(_study(runs))
    ex = det.set_index("alarm").loc["exploit"]
    assert (ex.positives, ex.true_positives, ex.late, ex.missed, ex.negatives, ex.false_alarms) == (3, 2, 1, 0, 2, 1)
    assert ex.detection_rate == 2 / 3 and ex.false_alarm_rate == 0.5
    assert (ex.lead_median, ex.lead_min, ex.lead_max) == (1.0, 0, 2)
    sh = det.set_index("alarm").loc["shift"]
    assert (sh.true_positives, sh.missed, sh.false_alarms, sh.false_alarm_rate) == (0, 3, 1, 0.5)
    md = "\n".join(_md_table(*alarm_table(det)))
    assert "| exploit | 3 | 2 (1, 0) | 0.67 | 2 | 1 | 0.50 | 0.17 | 1.0 [0, 2] |" in md
