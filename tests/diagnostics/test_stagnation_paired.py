"""The stagnation detector on the same held-out prompts every round: the paired window-slope SE (issue 29).

Simulated eval gold y[r, p] = mu_r + a_p + e_rp: a prompt effect a_p shared by every round (the prompts are fixed) and
sampling noise e. The old SE (each round's SE over prompts, rounds independent) counts a_p as noise in every round and
misses a real rise; the paired SE (each prompt's own window slope, over prompts) is exact and calibrated.
"""

import numpy as np
import pytest

from rlhfsim.diagnostics.policy_eval import paired_round_metrics
from rlhfsim.diagnostics.stagnation import MAX_LAG, bootstrap_se, detect_stagnation, window_cov, window_slope
from rlhfsim.diagnostics.summary import gold_cov_matrix, late_gain

P, PROMPT_SD, NOISE_SD = 256, 0.25, 0.03


def simulate(mu: np.ndarray, rng) -> np.ndarray:
    """[R, P] per-prompt mean gold: round means mu [R] + a prompt effect shared by all rounds + per-round noise."""
    a = rng.normal(0, PROMPT_SD, size=P)
    return mu[:, None] + a[None, :] + rng.normal(0, NOISE_SD, size=(mu.size, P))


def rows_of(Y: np.ndarray) -> list[dict]:
    """The metrics rows a run logs for these per-prompt means (eval/gold, eval/gold_se as policy_eval's bootstrap over
    prompts, eval/gold_cov_lag*)."""
    rows = []
    for r in range(Y.shape[0]):
        prior = {lag: Y[r - lag] for lag in range(1, MAX_LAG + 1) if r - lag >= 0}
        rows.append(
            {
                "round": r,
                "eval/gold": float(Y[r].mean()),
                "eval/gold_se": bootstrap_se(Y[r], n_boot=300),
                "eval/policy_move": 0.1 if r else None,
                **paired_round_metrics(Y[r], prior),
            }
        )
    return rows


def decide(Y: np.ndarray, paired: bool) -> str:
    rows = rows_of(Y)
    g = np.array([x["eval/gold"] for x in rows])
    se = np.array([x["eval/gold_se"] for x in rows])
    st = detect_stagnation(
        g, np.full(g.size, 0.1), window=Y.shape[0], gold_se=se, gold_cov=gold_cov_matrix(rows) if paired else None
    )
    assert st["se_method"] == ("paired" if paired else "independent")
    return st["final_state"]


def test_the_paired_window_slope_se_is_the_se_over_prompts_of_each_prompts_own_slope():
    rng = np.random.default_rng(0)
    Y = simulate(np.array([0.40, 0.41, 0.43, 0.42]), rng)  # [R=4, P]
    rows = rows_of(Y)
    r = np.arange(4.0)
    K = window_cov(gold_cov_matrix(rows), r, 0, 4)
    slope, se, _ = window_slope(r, Y.mean(1), cov=K)
    c = (r - r.mean()) / ((r - r.mean()) ** 2).sum()
    b = c @ Y  # [P] each prompt's own slope
    assert slope == pytest.approx(b.mean(), abs=1e-14) and se == pytest.approx(b.std(ddof=1) / np.sqrt(P), rel=1e-10)
    # the logged change SE is the paired one
    assert rows[2]["eval/gold_delta_se"] == pytest.approx((Y[2] - Y[1]).std(ddof=1) / np.sqrt(P), rel=1e-12)
    # a window over a gap in the rounds, or longer than the logged lags, has no paired covariance
    assert window_cov(gold_cov_matrix(rows), np.array([0.0, 1, 3, 4]), 0, 3) is None
    assert window_cov(gold_cov_matrix(rows), r, 0, MAX_LAG + 2) is None


def test_flat_series_rise_at_the_nominal_rate_and_rising_ones_are_found_where_the_old_se_misses_them():
    """400 flat 3-round windows: the paired interval (two-sided 95%) calls 'rising' in about 2.5% and 'falling' in about
    2.5%; a true rise of 0.006 gold per round (PPO's average here is 0.0025, the ceiling arm's 0.0076) is found in most
    windows by the paired SE and in few by the old independent-rounds SE, whose slope SE is ~10x too wide."""
    rng = np.random.default_rng(1)
    n = 400
    flat = [decide(simulate(np.full(3, 0.45), rng), paired=True) for _ in range(n)]
    rise, fall = flat.count("rising") / n, flat.count("falling") / n
    assert 0.005 <= rise <= 0.055 and 0.005 <= fall <= 0.055, (rise, fall)  # 0.025 +- 4 binomial SDs
    assert 0.03 <= rise + fall <= 0.08
    slope = 0.006
    up = [simulate(0.45 + slope * np.arange(3.0), rng) for _ in range(200)]
    paired = np.mean([decide(Y, paired=True) == "rising" for Y in up])
    old = np.mean([decide(Y, paired=False) == "rising" for Y in up])
    assert paired > 0.9 and old < 0.2, (paired, old)
    # the old SE's flat false-rise rate is far below nominal: it is too wide, not calibrated
    old_flat = [decide(simulate(np.full(3, 0.45), rng), paired=False) for _ in range(200)]
    assert old_flat.count("rising") + old_flat.count("falling") <= 2


def test_the_minimal_detectable_slope_is_stated_and_far_smaller_with_pairing():
    rng = np.random.default_rng(2)
    Y = simulate(0.45 + 0.002 * np.arange(8.0), rng)
    rows = rows_of(Y)
    g = np.array([x["eval/gold"] for x in rows])
    se = np.array([x["eval/gold_se"] for x in rows])
    new = detect_stagnation(g, np.full(8, 0.1), window=3, gold_se=se, gold_cov=gold_cov_matrix(rows))
    old = detect_stagnation(g, np.full(8, 0.1), window=3, gold_se=se)
    expected = 2.8 * NOISE_SD * np.sqrt(2 / P) / 2  # (z_0.975 + z_0.8) x the slope SE of (y3 - y1) / 2
    assert new["mds"] == pytest.approx(expected, rel=0.15) and old["mds"] > 5 * new["mds"]


def test_late_gain_averages_the_last_two_thirds_of_the_rounds():
    rounds = np.arange(16)
    gold = np.r_[0.4, np.linspace(0.41, 0.55, 15)]
    assert late_gain(rounds, gold) == pytest.approx(gold[6:].mean() - 0.4)  # rounds 6..15: the last 10 of 15
    assert late_gain(np.arange(3), np.array([0.4, 0.5, 0.6])) == pytest.approx(0.15)  # R = 2: both rounds
    assert np.isnan(late_gain(np.array([0]), np.array([0.4])))
