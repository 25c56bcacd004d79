import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from rlhfsim.diagnostics.stagnation import detect_stagnation, lagged_correlations


def test_rising_then_flat_with_moving_policy():
    gold = [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4]
    move = [np.nan, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    out = detect_stagnation(gold, move, gold_se=[1e-3] * 7)  # (nearly) noiseless gold
    assert out["stagnation_round"] == 4  # window (4, 5, 6) is the first flat one
    assert out["peak_round"] == 4 and out["peak_gold"] == 0.4 and out["final_gold"] == 0.4
    # caller's round numbers (round 0 = SFT evaluation) are honoured
    out0 = detect_stagnation(gold, move, rounds=np.arange(7), gold_se=[1e-3] * 7)
    assert out0["stagnation_round"] == 3 and out0["peak_round"] == 3


def test_flat_without_policy_movement_is_not_stagnation():
    out = detect_stagnation([0.3] * 6, [np.nan, 0.0, 1e-5, 0.0, 0.0, 0.0])
    assert out["stagnation_round"] is None
    assert detect_stagnation([0.3] * 4, [np.nan] * 4)["stagnation_round"] is None


def test_rising_is_not_stagnation_and_decline_is_overoptimisation():
    move, se = [0.1] * 6, [0.01] * 6
    up = detect_stagnation([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], move, gold_se=se)
    assert up["stagnation_round"] is None and up["overopt_round"] is None and up["final_state"] == "rising"
    out = detect_stagnation([0.2, 0.5, 0.6, 0.5, 0.3, 0.2], move, gold_se=se)
    # (0.5, 0.6, 0.5) is flat; then gold falls: over-optimisation, a state of its own
    assert out["first_flat_round"] == 2 and out["overopt_round"] == 3 and out["final_state"] == "falling"
    assert out["peak_round"] == 3 and out["peak_gold"] == 0.6 and out["final_gold"] == 0.2
    down = detect_stagnation([0.6, 0.5, 0.4, 0.3], [0.1] * 4, gold_se=[0.01] * 4)
    assert down["stagnation_round"] is None and down["overopt_round"] == 1


def test_window_slope_standard_error_known_values():
    from rlhfsim.diagnostics.stagnation import window_slope

    slope, sd, dof = window_slope([1, 2, 3], [0.1, 0.3, 0.2], se=[0.02, 0.02, 0.02])
    assert slope == pytest.approx(0.05) and sd == pytest.approx(0.02 / np.sqrt(2)) and dof > 1e6
    slope, sd, dof = window_slope([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4])  # OLS: SE from residuals, dof n - 2
    res = stats.linregress([1, 2, 3, 4], [0.1, 0.3, 0.2, 0.4])
    assert slope == pytest.approx(res.slope) and sd == pytest.approx(res.stderr) and dof == 2


def test_bootstrap_se_matches_the_analytic_standard_error():
    from rlhfsim.diagnostics.stagnation import bootstrap_se

    x = np.random.default_rng(0).uniform(size=200)
    assert bootstrap_se(x, n_boot=4000) == pytest.approx(x.std() / np.sqrt(x.size), rel=0.05)
    assert bootstrap_se(x) == bootstrap_se(x)  # fixed seed: reproducible
    assert math.isnan(bootstrap_se([0.3]))


def test_noise_alone_is_rarely_called_a_trend_while_the_old_threshold_was():
    # a truly flat gold (0.4) read with the eval set's noise (se 0.02, as the issue measured): windows of 3 rounds
    rng, se = np.random.default_rng(1), 0.02
    calls, old_rising = [], 0
    for _ in range(1000):
        g = 0.4 + rng.normal(0, se, 3)
        out = detect_stagnation(g, [np.nan, 0.1, 0.1], gold_se=[se] * 3)
        calls.append(out["final_state"])
        old_rising += np.polyfit([1, 2, 3], g, 1)[0] >= 0.005  # the old rule: rising at slope >= 0.005
    calls = np.array(calls)
    assert np.mean(calls == "flat") > 0.9  # the 95 % interval: about 5 % false trends
    assert np.mean(calls == "rising") < 0.05 and old_rising / 1000 > 0.3
    # a real rise of 3 standard errors per round is called rising
    strong = [
        detect_stagnation(0.1 + 0.06 * np.arange(3) + rng.normal(0, se, 3), [np.nan, 0.1, 0.1], gold_se=[se] * 3)[
            "final_state"
        ]
        for _ in range(200)
    ]
    assert np.mean(np.array(strong) == "rising") > 0.9


def test_window_and_nan_handling():
    gold = [0.1, 0.2, np.nan, 0.3, 0.3, 0.3]
    out = detect_stagnation(gold, [0.1] * 6, window=3)
    assert out["stagnation_round"] == 4
    assert out["final_gold"] == 0.3
    with pytest.raises(ValueError):
        detect_stagnation([0.1, 0.2], [0.1], window=2)
    assert detect_stagnation([np.nan, np.nan], [0.1, 0.1], window=2)["peak_round"] is None


def test_lagged_correlations():
    rounds = np.arange(1, 9)
    x = np.array([0.9, 0.8, 0.85, 0.6, 0.7, 0.5, 0.55, 0.4])
    y = np.r_[np.nan, 2 * x[:-1] + 1]  # y(r + 1) is an exact linear function of x(r)
    df = pd.DataFrame({"round": rounds, "acc": x, "dgold": y})
    out = lagged_correlations(df, ["acc"], ["dgold"], lags=(0, 1))
    lag1 = out["corr/acc->dgold@lag1"]
    assert lag1["value"] == pytest.approx(1.0) and lag1["n"] == 7
    lag0 = out["corr/acc->dgold@lag0"]
    assert lag0["n"] == 7 and lag0["value"] == pytest.approx(np.corrcoef(x[1:], y[1:])[0, 1])
    assert lag0["value"] < 0.99


def test_lagged_correlations_matches_round_numbers_and_small_n():
    # round 3 missing: lag-1 pairs must match by round number, not by row position
    df = pd.DataFrame({"round": [1, 2, 4, 5, 6], "x": [1.0, 2.0, 4.0, 3.0, 5.0], "y": [0.0, 10.0, 20.0, 40.0, 30.0]})
    out = lagged_correlations(df, ["x"], ["y"], lags=[1])
    v = out["corr/x->y@lag1"]
    assert v["n"] == 3  # pairs (1->2), (4->5), (5->6)
    assert v["value"] == pytest.approx(np.corrcoef([1.0, 4.0, 3.0], [10.0, 40.0, 30.0])[0, 1])
    small = lagged_correlations(df.iloc[:3], ["x"], ["y"], lags=[1])["corr/x->y@lag1"]
    assert small["n"] == 1 and math.isnan(small["value"])
    with pytest.raises(ValueError):
        lagged_correlations(pd.concat([df, df]), ["x"], ["y"])


def test_transient_dip_is_not_stagnation():
    # gold dips for a window, then rises again to the end: not stagnation, but a first flat window
    gold = [0.1, 0.2, 0.3, 0.25, 0.3, 0.4, 0.5, 0.6]
    out = detect_stagnation(gold, [0.05] * 8, gold_se=[1e-3] * 8)
    assert out["stagnation_round"] is None
    assert out["first_flat_round"] == 3  # window (3, 4, 5): 0.3, 0.25, 0.3 -> slope 0
    # same dip, then a plateau: stagnation starts at the plateau, after the last rising window
    gold2 = [0.1, 0.2, 0.3, 0.25, 0.3, 0.4, 0.4, 0.4, 0.4]
    out2 = detect_stagnation(gold2, [0.05] * 9, gold_se=[1e-3] * 9)
    assert out2["stagnation_round"] == 6 and out2["first_flat_round"] == out["first_flat_round"]


def test_stagnation_from_the_sft_round():
    # round 0 = SFT evaluation (no move into it): the policy moves but gold never rises -> round 0
    rounds = np.arange(6)
    gold = [0.40, 0.39, 0.40, 0.39, 0.40, 0.39]
    move = [np.nan, 0.2, 0.3, 0.3, 0.4, 0.4]
    out = detect_stagnation(gold, move, rounds=rounds, gold_se=[0.01] * 6)
    assert out["stagnation_round"] == 0 and out["peak_round"] == 0 and out["overopt_round"] is None


def test_only_moves_inside_the_window_count():
    # the policy moved into round 3 but not within rounds 3..5: that window is not "moving"
    gold = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]
    move = [np.nan, 0.1, 0.1, 0.0, 0.0, 0.1, 0.1]
    out = detect_stagnation(gold, move, gold_se=[1e-3] * 7)
    assert out["stagnation_round"] == 4  # window (4, 5, 6) has moves (0.0, 0.1) inside: mean 0.05
    # window (3, 4, 5) only has the 0.0 moves into rounds 4 and 5 inside
    still = detect_stagnation(gold[:5], move[:5], gold_se=[1e-3] * 5)
    assert still["stagnation_round"] is None


def test_a_noisy_kl_estimate_is_not_read_as_movement():
    gold, se = [0.4, 0.4, 0.4, 0.4], [0.005] * 4
    move = [np.nan, 0.02, 0.03, 0.02]  # mean move 0.025 nats
    assert detect_stagnation(gold, move, gold_se=se)["stagnation_round"] == 1
    # the same moves with a standard error of 0.03 each: indistinguishable from a policy that stood still
    noisy = detect_stagnation(gold, move, gold_se=se, move_se=[np.nan, 0.03, 0.03, 0.03])
    assert noisy["stagnation_round"] is None and noisy["first_flat_round"] is None
    # precise moves: moving
    assert detect_stagnation(gold, move, gold_se=se, move_se=[np.nan, 0.002, 0.002, 0.002])["stagnation_round"] == 1
