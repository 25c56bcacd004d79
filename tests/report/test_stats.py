"""Paired statistics on constructed cases with known answers."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report.stats import censored_rows, compare, holm, paired_effect, verdict


def _series(vals):
    return pd.Series(vals, index=range(len(vals)))


def test_paired_interval_narrower_than_welch_when_seeds_share_a_large_effect():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 1.0, 8)            # large, shared by both arms of a seed
    base = seed_effect + rng.normal(0, 0.02, 8)
    var = seed_effect + 0.1 + rng.normal(0, 0.02, 8)
    p = paired_effect(_series(var), _series(base))
    from scipy import stats

    w = stats.ttest_ind(var, base, equal_var=False).confidence_interval(0.95)  # the table's old Welch interval
    assert p["diff"] == pytest.approx(var.mean() - base.mean())
    assert (p["hi"] - p["lo"]) < 0.1 * (w.high - w.low)
    assert p["lo"] > 0 and w.low < 0  # paired detects the +0.1 shift, Welch does not
    assert p["n"] == 8


def test_pairs_on_seeds_and_drops_missing():
    var = pd.Series({0: 1.0, 1: 2.0, 2: np.nan, 5: 9.0})
    base = pd.Series({0: 0.5, 1: 1.0, 2: 3.0, 3: 4.0})
    r = paired_effect(var, base)
    assert r["n"] == 2 and r["diff"] == pytest.approx(0.75)  # seeds 0 and 1 only
    one = paired_effect(pd.Series({0: 1.0}), pd.Series({0: 0.0}))
    assert one["n"] == 1 and one["diff"] == 1.0 and np.isnan(one["lo"])


def test_invariant_to_a_shift_shared_by_both_arms_and_equivariant_to_scale():
    rng = np.random.default_rng(1)
    b, v = rng.normal(size=6), rng.normal(size=6) + 0.3
    r0 = paired_effect(_series(v), _series(b))
    r1 = paired_effect(_series(v + 100), _series(b + 100))
    r2 = paired_effect(_series(3 * v), _series(3 * b))
    for k in ("diff", "lo", "hi", "p"):
        assert r1[k] == pytest.approx(r0[k])
    for k in ("diff", "lo", "hi"):
        assert r2[k] == pytest.approx(3 * r0[k])
    assert r2["p"] == pytest.approx(r0["p"])


def test_coverage_close_to_nominal_on_simulated_data():
    rng = np.random.default_rng(2)
    for n in (2, 3, 5, 10):  # t-interval below MIN_BOOT, expanded bootstrap from it
        hits, sims = 0, 300
        for _ in range(sims):
            shared = rng.normal(0, 1, n)
            d_true = 0.2
            r = paired_effect(_series(shared + d_true + rng.normal(0, 0.3, n)), _series(shared + rng.normal(0, 0.3, n)), n_boot=1000,
                              seed=int(rng.integers(1 << 30)))
            hits += r["lo"] <= d_true <= r["hi"]
        # binomial sd at 0.95 with 300 sims is 0.013: 0.90 is 4 sd below nominal (the plain percentile gives ~0.85 at n=5,
        # and 0.5 at n=2)
        assert hits / sims > 0.90, (n, hits / sims)


def test_holm_against_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max: 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.01]), [0.5, np.nan, 0.02])  # NaN not counted in m = 2
    assert holm([0.9, 0.8]).max() <= 1.0
    assert holm([0.02])[0] == 0.02


def test_censored_rows_and_labels():
    s = pd.DataFrame({"variant": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "rounds_completed": [4, 4, 4, 4],
                      "gold_peak_round": [4, 2, 4, 3], "gold_drop_after_peak": [0.0, 0.1, 0.0, 0.05],
                      "stagnation_round": [np.nan, 2, 3, 3]})
    assert censored_rows(s, "gold_drop_after_peak").tolist() == [True, False, True, False]
    assert censored_rows(s, "stagnation_round").tolist() == [True, False, False, False]
    assert not censored_rows(s, "gold_final").any()
    t = compare(s, ["a", "b"], "a", [{"endpoint": "gold_drop_after_peak", "better": "higher"}], "secondary")
    assert t["censored"].tolist() == [2] and "upper bound" in t["censored_why"].iloc[0]


def test_compare_families_and_verdict():
    rng = np.random.default_rng(3)
    rows = []
    for sd in range(6):
        shared = rng.normal(0, 1)
        rows += [{"variant": "base", "seed": sd, "g": shared, "h": shared},
                 {"variant": "up", "seed": sd, "g": shared + 0.5 + rng.normal(0, 0.05), "h": shared + rng.normal(0, 0.05)},
                 {"variant": "same", "seed": sd, "g": shared + rng.normal(0, 0.05), "h": shared + rng.normal(0, 0.05)}]
    s = pd.DataFrame(rows)
    t = compare(s, ["base", "up", "same"], "base", [{"endpoint": "g", "better": "higher"}, {"endpoint": "h", "better": "lower"}], "secondary")
    assert len(t) == 4 and set(t["family"]) == {"secondary"}
    np.testing.assert_allclose(t["p_holm"], holm(t["p"]))
    up = t[(t.variant == "up") & (t.endpoint == "g")].iloc[0]
    assert 0.3 < up["lo"] < 0.5 < up["hi"] < 0.7
    assert verdict(up, "base").startswith("up raises g by +0.4") and "better" in verdict(up, "base")
    same = t[(t.variant == "same") & (t.endpoint == "g")].iloc[0]
    assert verdict(same, "base").startswith("No difference detected")
