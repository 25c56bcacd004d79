"""Gold at matched KL on constructed trajectories with a known answer."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report.matched import matched_kl_section, matched_kl_table
from rlhfsim.report.rundir import RunData
from tests.fixtures.memory import mem_run, mem_study


def _run(variant: str, seed: int, kl_per_round: float, offset: float) -> RunData:
    rounds = np.arange(6)
    kl = kl_per_round * rounds
    gold = 0.3 + 0.5 * kl - 0.4 * kl**2 + offset  # one gold-vs-KL curve for every arm (plus the offset)
    m = pd.DataFrame({"round": rounds, "eval/kl": kl, "eval/gold": gold})
    return mem_run(variant, seed, m, summary={"rounds_completed": 5}, configured_rounds=5)


def test_an_arm_that_only_goes_further_has_no_gold_difference_at_matched_kl():
    runs = [_run("base", s, 0.1, 0.01 * s) for s in range(4)]
    runs += [_run("far", s, 0.25, 0.01 * s) for s in range(4)]  # the same curve, 2.5x as far (KL* = 0.5 is its round 2)
    runs += [
        _run("better", s, 0.1, 0.01 * s + 0.03 * (1 + (s % 2))) for s in range(4)
    ]  # +0.03 or +0.06 at every KL after round 0
    st = mem_study(runs)
    tab = matched_kl_table(st).set_index("variant")
    assert tab.loc["far", "kl_star"] == pytest.approx(0.5) and tab.loc["far", "diff"] == pytest.approx(0.0, abs=1e-12)
    assert (
        tab.loc["better", "diff"] == pytest.approx(0.045) and tab.loc["better", "lo"] < 0.045 < tab.loc["better", "hi"]
    )
    final_far = runs[4].metrics["eval/gold"].iloc[-1] - runs[0].metrics["eval/gold"].iloc[-1]
    assert abs(final_far) > 0.1  # the final gold alone would have read it as a large effect
    sec = matched_kl_section(st)
    assert sec.title == "Gold at matched KL against base" and sec.rows[0][0] == "far" and sec.rows[0][1] == "4"
