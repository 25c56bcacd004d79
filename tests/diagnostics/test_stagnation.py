import math

import numpy as np
import pandas as pd
import pytest

from rlhfsim.diagnostics.stagnation import detect_stagnation, lagged_correlations


def test_rising_then_flat_with_moving_policy():
    gold = [0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4]
    move = [np.nan, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
    out = detect_stagnation(gold, move)
    assert out["stagnation_round"] == 4  # window (4, 5, 6) is the first flat one
    assert out["peak_round"] == 4 and out["peak_gold"] == 0.4 and out["final_gold"] == 0.4
    # caller's round numbers (round 0 = SFT evaluation) are honoured
    out0 = detect_stagnation(gold, move, rounds=np.arange(7))
    assert out0["stagnation_round"] == 3 and out0["peak_round"] == 3


def test_flat_without_policy_movement_is_not_stagnation():
    out = detect_stagnation([0.3] * 6, [np.nan, 0.0, 1e-5, 0.0, 0.0, 0.0])
    assert out["stagnation_round"] is None
    assert detect_stagnation([0.3] * 4, [np.nan] * 4)["stagnation_round"] is None


def test_rising_is_not_stagnation_and_decline_is():
    move = [0.1] * 6
    assert detect_stagnation([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], move)["stagnation_round"] is None
    out = detect_stagnation([0.2, 0.5, 0.6, 0.5, 0.3, 0.2], move)
    assert out["stagnation_round"] == 2  # slope over (0.5, 0.6, 0.5) is 0
    assert out["peak_round"] == 3 and out["peak_gold"] == 0.6 and out["final_gold"] == 0.2


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
    out = detect_stagnation(gold, [0.05] * 8)
    assert out["stagnation_round"] is None
    assert out["first_flat_round"] == 3  # window (3, 4, 5): 0.3, 0.25, 0.3 -> slope 0
    # same dip, then a plateau: stagnation starts at the plateau, after the last rising window
    gold2 = [0.1, 0.2, 0.3, 0.25, 0.3, 0.4, 0.4, 0.4, 0.4]
    out2 = detect_stagnation(gold2, [0.05] * 9)
    assert out2["stagnation_round"] == 6 and out2["first_flat_round"] == out["first_flat_round"]


def test_stagnation_from_the_sft_round():
    # round 0 = SFT evaluation (no move into it): the policy moves but gold never rises -> round 0
    rounds = np.arange(6)
    gold = [0.40, 0.39, 0.40, 0.38, 0.37, 0.35]
    move = [np.nan, 0.2, 0.3, 0.3, 0.4, 0.4]
    out = detect_stagnation(gold, move, rounds=rounds)
    assert out["stagnation_round"] == 0 and out["peak_round"] == 0


def test_only_moves_inside_the_window_count():
    # the policy moved into round 3 but not within rounds 3..5: that window is not "moving"
    gold = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]
    move = [np.nan, 0.1, 0.1, 0.0, 0.0, 0.1, 0.1]
    out = detect_stagnation(gold, move)
    assert out["stagnation_round"] == 4  # window (4, 5, 6) has moves (0.0, 0.1) inside: mean 0.05
    # window (3, 4, 5) only has the 0.0 moves into rounds 4 and 5 inside
    still = detect_stagnation(gold[:5], move[:5])
    assert still["stagnation_round"] is None
