"""Alarm detection on constructed runs with known answers: the gold-fall rule, leads, hits, false alarms, rates."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.diagnostics.alarm_detection import alarm_detection, gold_fall_round, per_run

FALLS = [0.40, 0.45, 0.50, 0.50, 0.46, 0.44, 0.44]  # peak 0.50 at round 2; 0.46 and 0.44 are > 0.03 below: falls at 4
HOLDS = [0.40, 0.42, 0.44, 0.46, 0.48, 0.49, 0.50]


def _run(variant, seed, gold, fire=(), alarm="exploit", logged=True):
    """One run's rows: gold per round, `alarm` on in the rounds `fire`, the other alarms logged quiet from round 1."""
    rows = []
    for r, g in enumerate(gold):
        row = {"variant": variant, "seed": seed, "round": r, "eval/gold": g}
        if logged and r > 0:
            row.update({f"audit/alarm_{a}": 0.0 for a in ("collapse", "saturation", "explosion", "exploit", "shift")})
            row[f"audit/alarm_{alarm}"] = float(r in fire)
        rows.append(row)
    return pd.DataFrame(rows)


def _frame(*runs):
    return pd.concat(runs, ignore_index=True)


def _fall(gold, **kw):
    return gold_fall_round(range(len(gold)), gold, **kw)


def test_fall_round_needs_the_margin_and_the_sustain():
    assert _fall(FALLS) == 4
    assert _fall(HOLDS) is None
    assert _fall(FALLS, margin=0.05) == 5  # 0.46 is only 0.04 below the peak; 0.44, 0.44 are 0.06
    assert _fall([0.4, 0.5, 0.48, 0.48, 0.48]) is None  # 0.02 below the peak: within the margin
    assert _fall([0.4, 0.5, 0.44, 0.5, 0.5]) is None  # one dip that recovers: not sustained
    assert _fall([0.4, 0.5, 0.44, 0.5, 0.5], sustain=1) == 2
    assert _fall([0.4, 0.5, 0.44, 0.46, 0.5], sustain=3) is None
    assert _fall([0.4, 0.5, 0.5, 0.5, 0.4]) is None  # a drop in the last round cannot show 2 rounds
    assert _fall([0.6, 0.5, 0.5]) == 1  # gold can fall from the SFT policy (round 0)
    assert gold_fall_round([0, 1, 2, 3], [0.4, np.nan, 0.3, 0.3]) == 2  # missing gold is skipped
    assert gold_fall_round([0, 1], [np.nan, np.nan]) is None
    with pytest.raises(ValueError):
        _fall(FALLS, sustain=0)
    with pytest.raises(ValueError):
        gold_fall_round([0, 1], FALLS)


@pytest.mark.parametrize("offset", [-0.3, 0.0, 0.25])
def test_fall_rule_is_invariant_to_an_offset_of_gold(offset):
    for gold in (FALLS, HOLDS, [0.5, 0.47, 0.49, 0.45, 0.46]):
        assert gold_fall_round(range(len(gold)), np.add(gold, offset)) == gold_fall_round(range(len(gold)), gold)
    runs = _frame(_run("v", 0, FALLS, fire=(2,)), _run("v", 1, HOLDS, fire=(3,)))
    shifted = runs.assign(**{"eval/gold": runs["eval/gold"] + offset})
    cols = ["fall_round", "first_alarm", "lead", "outcome"]
    assert per_run(shifted)[cols].equals(per_run(runs)[cols])


def test_the_default_rule_against_noise():
    """Gold read with the realistic preset's round-to-round noise (eval/gold_delta_se ~0.010: sd ~0.007 a round; 0.008
    here for headroom), 16 rounds: a flat series is called a fall in under 5% of runs, a real fall of 0.05 (a rise to
    round 8, then down) in over 90%; the studies' 0.02 margin alone would call flat runs falls in over 20%."""
    rng = np.random.default_rng(0)
    flat = [gold_fall_round(range(16), 0.55 + rng.normal(0, 0.008, 16)) is not None for _ in range(2000)]
    assert np.mean(flat) < 0.05
    loose = [gold_fall_round(range(16), 0.55 + rng.normal(0, 0.008, 16), margin=0.02) is not None for _ in range(2000)]
    assert np.mean(loose) > 0.2
    curve = np.r_[np.linspace(0.47, 0.57, 9), np.linspace(0.57, 0.52, 8)[1:]]
    fell = [gold_fall_round(range(16), curve + rng.normal(0, 0.008, 16)) for _ in range(1000)]
    assert np.mean([f is not None for f in fell]) > 0.9 and min(f for f in fell if f is not None) > 8


def test_lead_hit_late_missed_and_false_alarm():
    runs, alarms = alarm_detection(
        _frame(
            _run("v", 0, FALLS, fire=(2, 3)),  # fires 2 rounds before the fall at 4: hit, lead 2
            _run("v", 1, FALLS, fire=(4,)),  # at the fall: hit, lead 0
            _run("v", 2, FALLS, fire=(6,)),  # after it: late, lead -2
            _run("v", 3, FALLS),  # never: missed
            _run("w", 0, HOLDS, fire=(1,)),  # gold never falls, alarm fires: false alarm
            _run("w", 1, HOLDS),  # gold never falls, quiet
        )
    )
    ex = runs[runs["alarm"] == "exploit"].set_index(["variant", "seed"])
    assert (
        ex.loc[("v", 0), "lead"] == 2 and ex.loc[("v", 0), "outcome"] == "hit" and ex.loc[("v", 0), "fall_round"] == 4
    )
    assert ex.loc[("v", 1), "lead"] == 0 and ex.loc[("v", 1), "outcome"] == "hit"
    assert ex.loc[("v", 2), "lead"] == -2 and ex.loc[("v", 2), "outcome"] == "late"
    assert ex.loc[("v", 3), "outcome"] == "missed" and pd.isna(ex.loc[("v", 3), "lead"])
    assert ex.loc[("w", 0), "outcome"] == "false_alarm" and pd.isna(ex.loc[("w", 0), "fall_round"])
    assert ex.loc[("w", 1), "outcome"] == "quiet"
    a = alarms.set_index("alarm").loc["exploit"]
    assert (a.positives, a.true_positives, a.late, a.missed, a.false_negatives) == (4, 2, 1, 1, 2)
    assert (a.negatives, a.false_alarms, a.false_alarm_rate, a.detection_rate) == (2, 1, 0.5, 0.5)
    assert a.discrimination == 0.0 and (a.lead_median, a.lead_min, a.lead_max) == (1.0, 0.0, 2.0)
    quiet = alarms.set_index("alarm").loc["collapse"]  # logged in every run, never fired
    assert (quiet.true_positives, quiet.missed, quiet.false_alarms, quiet.detection_rate, quiet.false_alarm_rate) == (
        0,
        4,
        0,
        0.0,
        0.0,
    )
    assert np.isnan(quiet.lead_median)


def test_an_alarm_that_fires_in_every_run_does_not_discriminate():
    _, alarms = alarm_detection(
        _frame(*[_run("v", s, g, fire=(1,)) for s, g in enumerate([FALLS, HOLDS, FALLS, HOLDS])])
    )
    a = alarms.set_index("alarm").loc["exploit"]
    assert a.detection_rate == 1.0 and a.false_alarm_rate == 1.0 and a.discrimination == 0.0


def test_runs_without_alarms():
    # A run that logged no alarm column (audits off) is unmeasured and counted nowhere; one that logged them quiet
    # counts as a miss or a true negative.
    runs, alarms = alarm_detection(_frame(_run("off", 0, FALLS, logged=False), _run("on", 0, HOLDS)))
    assert set(runs.loc[runs["variant"] == "off", "outcome"]) == {"unmeasured"}
    assert (alarms["runs"] == 1).all() and (alarms["negatives"] == 1).all() and (alarms["false_alarms"] == 0).all()
    assert alarms["detection_rate"].isna().all()  # no run fell: no detection rate
    _, none = alarm_detection(_frame(_run("off", 0, FALLS, logged=False)))
    assert none.empty
    runs, alarms = alarm_detection(pd.DataFrame(columns=["variant", "seed", "round", "eval/gold"]))
    assert runs.empty and alarms.empty
