"""Alarm detection: do the reward-model audit alarms tell runs whose held-out gold falls from runs whose gold holds,
and how many rounds ahead do they warn? A pure function of the per-round rows the runs log (metrics.jsonl).

    per_run, per_alarm = alarm_detection(metrics)    # metrics: one row per (run, round), keys e.g. variant, seed

The gold-fall rule (`gold_fall_round`, declared before experiments/audits_realistic.yaml ran):
    gold falls at round r when held-out gold (`eval/gold`) sits more than `margin` below its running peak (the
    highest gold of rounds 0..r) in round r and in each of the next `sustain - 1` logged rounds. The fall round is the
    first such r; a run with no such r (or whose last rounds cannot show `sustain` rounds) never fell.
    Defaults margin 0.03, sustain 2. Why 0.03: about 3 standard errors of a round-to-round change of `eval/gold` in the
    realistic preset (256 prompts x 8; the prompts are the same every round, so the error of a change is
    `eval/gold_delta_se`, ~0.010 on the realistic runs, not sqrt(2) x `eval/gold_se`), and above the 0.02 gold
    equivalence margin the project's studies declare, so every fall is a loss a study would call a difference. The
    running peak is a maximum over noisy rounds and sits above the truth by one to two of those errors; 0.03 and two
    rounds in a row keep a flat gold series read with that noise (sd 0.007-0.008 a round, 16 rounds) from being called
    a fall in more than a few % of runs (0.02 and two rounds: 19-33%), and find a real fall of 0.05 in ~95% (tested;
    the numbers in tests/diagnostics/test_alarm_detection.py). The rule
    reads only differences of gold, so it is invariant to a constant added to gold.

Per (run, alarm): the first round the alarm fired (`audit/alarm_{name}` == 1; alarms are logged from round 1, the
first reward model), and its lead = fall round - first alarm round (> 0: warned that many rounds ahead, 0: at the
fall, < 0: after it). Outcome: `hit` (gold fell, alarm at or before the fall round), `late` (fired only after it),
`missed` (never fired), `false_alarm` (gold never fell, the alarm fired), `quiet` (neither). An alarm whose column
the run did not log (NaN in every round: audits off, or no shifted set) is `unmeasured` and counted nowhere.

Per alarm: positives (runs whose gold fell), true positives (hits), false negatives (late + missed), negatives, false
alarms, detection rate = hits / positives, false-alarm rate = false alarms / negatives, discrimination = detection
rate - false-alarm rate (Youden's J: 0 for an alarm that fires regardless of gold, or never; 1 for a perfect one),
and the median (min, max) lead over the hits. Metric names and directions: docs/metrics.md ("Alarm detection").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from rlhfsim.diagnostics.audit import ALARMS

MARGIN = 0.03  # gold units below the running peak (module docstring: why)
SUSTAIN = 2  # consecutive logged rounds below it
GOLD = "eval/gold"
OUTCOMES = ("hit", "late", "missed", "false_alarm", "quiet", "unmeasured")
RUN_COLUMNS = ["alarm", "measured", "fell", "peak_gold", "fall_round", "first_alarm", "lead", "outcome"]
ALARM_COLUMNS = [
    "alarm",
    "runs",
    "positives",
    "true_positives",
    "late",
    "missed",
    "false_negatives",
    "negatives",
    "false_alarms",
    "detection_rate",
    "false_alarm_rate",
    "discrimination",
    "lead_median",
    "lead_min",
    "lead_max",
]


def gold_fall_round(
    rounds: Sequence[int], gold: Sequence[float], margin: float = MARGIN, sustain: int = SUSTAIN
) -> int | None:
    """The first round gold sits more than `margin` below its running peak for `sustain` logged rounds in a row; None
    when it never does. Rounds whose gold is missing (NaN) are skipped (module docstring)."""
    if sustain < 1 or margin < 0:
        raise ValueError(f"sustain must be >= 1 and margin >= 0 (got {sustain}, {margin})")
    g = np.asarray(gold, dtype=float)
    if len(g) != len(rounds):
        raise ValueError(f"{len(rounds)} rounds but {len(g)} gold values")
    ok = np.isfinite(g)
    rd, g = np.asarray(rounds)[ok], g[ok]
    if g.size == 0:
        return None
    below = g < np.maximum.accumulate(g) - margin  # the running peak includes this round; a fall cannot be a peak
    for i in range(len(g) - sustain + 1):
        if below[i : i + sustain].all():
            return int(rd[i])
    return None


def _first_fired(rounds: np.ndarray, fired: pd.Series) -> tuple[bool, int | None]:
    """(measured, first round fired) of one alarm column of one run."""
    v = pd.to_numeric(fired, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(v).any():
        return False, None
    on = rounds[v == 1.0]
    return True, (int(on.min()) if on.size else None)


def per_run(
    metrics: pd.DataFrame,
    keys: Sequence[str] = ("variant", "seed"),
    margin: float = MARGIN,
    sustain: int = SUSTAIN,
    alarms: Sequence[str] = ALARMS,
    gold: str = GOLD,
) -> pd.DataFrame:
    """One row per (run, alarm): the run's keys, alarm, measured, fell, peak_gold, fall_round, first_alarm, lead,
    outcome (module docstring). `metrics` has one row per (run, round): the keys, `round`, `gold` and
    `audit/alarm_{name}` columns (a missing column: that alarm unmeasured). Runs without any finite gold are left out."""
    keys = list(keys)
    cols = keys + RUN_COLUMNS
    if metrics.empty or gold not in metrics:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, run in metrics.sort_values(keys + ["round"]).groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rounds = run["round"].to_numpy()
        g = pd.to_numeric(run[gold], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(g).any():
            continue
        fall = gold_fall_round(rounds, g, margin, sustain)
        for a in alarms:
            col = f"audit/alarm_{a}"
            measured, first = _first_fired(rounds, run[col]) if col in run else (False, None)
            lead = None if fall is None or first is None else fall - first
            if not measured:
                outcome = "unmeasured"
            elif fall is None:
                outcome = "quiet" if first is None else "false_alarm"
            else:
                outcome = "missed" if first is None else ("hit" if lead >= 0 else "late")
            rows.append((*key, a, measured, fall is not None, float(np.nanmax(g)), fall, first, lead, outcome))
    out = pd.DataFrame(rows, columns=cols)
    for c in ("fall_round", "first_alarm", "lead"):
        out[c] = out[c].astype("Int64")  # rounds stay integers; a missing round is <NA>
    return out


def per_alarm(runs: pd.DataFrame, alarms: Sequence[str] = ALARMS) -> pd.DataFrame:
    """Per alarm over the measured runs of `per_run`'s table: counts, rates and lead (module docstring). Alarms measured
    in no run are left out; a rate with an empty denominator is NaN, as are the leads of an alarm with no hit."""
    out = []
    for a in alarms:
        d = runs[(runs["alarm"] == a) & runs["measured"].astype(bool)] if not runs.empty else runs
        if d.empty:
            continue
        n = d["outcome"].value_counts().reindex(OUTCOMES, fill_value=0)
        pos, neg = int(d["fell"].sum()), int((~d["fell"].astype(bool)).sum())
        lead = pd.to_numeric(d.loc[d["outcome"] == "hit", "lead"], errors="coerce").dropna()
        det = n["hit"] / pos if pos else np.nan
        far = n["false_alarm"] / neg if neg else np.nan
        out.append(
            {
                "alarm": a,
                "runs": len(d),
                "positives": pos,
                "true_positives": int(n["hit"]),
                "late": int(n["late"]),
                "missed": int(n["missed"]),
                "false_negatives": int(n["late"] + n["missed"]),
                "negatives": neg,
                "false_alarms": int(n["false_alarm"]),
                "detection_rate": det,
                "false_alarm_rate": far,
                "discrimination": det - far,
                "lead_median": float(lead.median()) if len(lead) else np.nan,
                "lead_min": float(lead.min()) if len(lead) else np.nan,
                "lead_max": float(lead.max()) if len(lead) else np.nan,
            }
        )
    return pd.DataFrame(out, columns=ALARM_COLUMNS)


def alarm_detection(
    metrics: pd.DataFrame,
    keys: Sequence[str] = ("variant", "seed"),
    margin: float = MARGIN,
    sustain: int = SUSTAIN,
    alarms: Sequence[str] = ALARMS,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_run table, per_alarm table) of `metrics` under the gold-fall rule (margin, sustain)."""
    runs = per_run(metrics, keys, margin, sustain, alarms)
    return runs, per_alarm(runs, alarms)
