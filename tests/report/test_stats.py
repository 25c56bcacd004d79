"""Paired statistics on constructed cases with known answers."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report.stats import censored_rows, compare, holm, paired_effect, verdict


def _series(vals):
    return pd.Series(vals, index=range(len(vals)))


def test_paired_interval_narrower_than_welch_when_seeds_share_a_large_effect():
    rng = np.random.default_rng(0)
    seed_effect = rng.normal(0, 1.0, 8)  # large, shared by both arms of a seed
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
            r = paired_effect(
                _series(shared + d_true + rng.normal(0, 0.3, n)),
                _series(shared + rng.normal(0, 0.3, n)),
                n_boot=1000,
                seed=int(rng.integers(1 << 30)),
            )
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
    s = pd.DataFrame(
        {
            "variant": ["a", "a", "b", "b"],
            "seed": [0, 1, 0, 1],
            "rounds_completed": [4, 4, 4, 4],
            "gold_peak_round": [4, 2, 4, 3],
            "gold_drop_after_peak": [0.0, 0.1, 0.0, 0.05],
            "stagnation_round": [np.nan, 2, 3, 3],
        }
    )
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
        rows += [
            {"variant": "base", "seed": sd, "g": shared, "h": shared},
            {"variant": "up", "seed": sd, "g": shared + 0.5 + rng.normal(0, 0.05), "h": shared + rng.normal(0, 0.05)},
            {"variant": "same", "seed": sd, "g": shared + rng.normal(0, 0.05), "h": shared + rng.normal(0, 0.05)},
        ]
    s = pd.DataFrame(rows)
    t = compare(
        s,
        ["base", "up", "same"],
        "base",
        [{"endpoint": "g", "better": "higher"}, {"endpoint": "h", "better": "lower"}],
        "secondary",
    )
    assert len(t) == 4 and set(t["family"]) == {"secondary"}
    np.testing.assert_allclose(t["p_holm"], holm(t["p"]))
    up = t[(t.variant == "up") & (t.endpoint == "g")].iloc[0]
    assert 0.3 < up["lo"] < 0.5 < up["hi"] < 0.7
    assert verdict(up, "base").startswith("up raises g by +0.4") and "better" in verdict(up, "base")
    same = t[(t.variant == "same") & (t.endpoint == "g")].iloc[0]
    assert verdict(same, "base").startswith("No effect detected") and "not evidence of no effect" in verdict(
        same, "base"
    )


# ------------------------------------------------------------------ equivalence (TOST) and one correction per verdict


def test_tost_passes_a_tight_null_inside_a_wide_margin():
    """Differences tightly around 0 with a margin far outside their spread: both one-sided tests reject."""
    from rlhfsim.report.stats import tost

    d = np.random.default_rng(0).normal(0.0, 0.005, size=10)
    r = tost(d, 0.05)
    assert r["equivalent"] and r["p"] < 1e-6 and r["p"] == max(r["p_lower"], r["p_upper"])
    assert -0.05 < r["lo"] < r["hi"] < 0.05


def test_tost_fails_at_the_margin_and_with_a_wide_spread():
    from rlhfsim.report.stats import tost

    rng = np.random.default_rng(1)
    at = 0.02 + rng.normal(0, 0.002, size=10)
    at = at - at.mean() + 0.02  # mean exactly at the margin: p_upper = 0.5
    r = tost(at, 0.02)
    assert not r["equivalent"] and r["p_upper"] == pytest.approx(0.5) and r["p"] >= 0.5
    wide = rng.normal(0.0, 0.1, size=10)
    assert not tost(wide, 0.02)["equivalent"]


def test_tost_interval_is_the_90_percent_t_interval():
    from scipy import stats

    from rlhfsim.report.stats import tost

    d = np.random.default_rng(2).normal(0.01, 0.02, size=8)
    r = tost(d, 0.03)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.90)
    assert (r["lo"], r["hi"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    # equivalence at alpha is exactly that interval lying inside the margin
    for m in (0.005, 0.02, 0.03, 0.05):
        e = tost(d, m)
        assert e["equivalent"] == (-m < e["lo"] and e["hi"] < m)


def test_tost_rejects_a_bad_margin():
    from rlhfsim.report.stats import tost

    for bad in (0, -0.1, None, "0.1"):
        with pytest.raises(ValueError, match="positive number"):
            tost(np.zeros(3), bad)


def _two_arm_summary(diff_sd: float, shift: float, n: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for sd in range(n):
        shared = rng.normal(0, 1)
        rows += [
            {"variant": "base", "seed": sd, "g": shared},
            {"variant": "v", "seed": sd, "g": shared + shift + rng.normal(0, diff_sd)},
        ]
    return pd.DataFrame(rows)


def test_verdict_with_a_declared_margin_says_equivalent_or_inconclusive():
    eq = compare(
        _two_arm_summary(0.005, 0.0),
        ["base", "v"],
        "base",
        [{"endpoint": "g", "better": "higher", "margin": 0.05}],
        "primary",
    )
    r = eq.iloc[0]
    assert bool(r["equivalent"]) and verdict(r, "base").startswith("Equivalent within ±0.05")
    wide = compare(
        _two_arm_summary(0.2, 0.0),
        ["base", "v"],
        "base",
        [{"endpoint": "g", "better": "higher", "margin": 0.05}],
        "primary",
    )
    assert not bool(wide.iloc[0]["equivalent"]) and verdict(wide.iloc[0], "base").startswith("Inconclusive")
    none = compare(
        _two_arm_summary(0.005, 0.0), ["base", "v"], "base", [{"endpoint": "g", "better": "higher"}], "primary"
    )
    text = verdict(none.iloc[0], "base")
    assert text.startswith("No effect detected") and "clean null" not in text and "equivalent" not in text.lower()


def test_the_interval_beside_a_holm_verdict_is_at_its_holm_step_level():
    """Three variants: the smallest p is judged at alpha/3, so its printed interval is the 98.3% one; a single comparison
    keeps 95%. For the paired t (below 6 seeds) the Holm verdict and the printed interval then agree exactly."""
    from scipy import stats

    rng = np.random.default_rng(3)
    rows = []
    for sd in range(5):
        shared = rng.normal(0, 1)
        rows.append({"variant": "base", "seed": sd, "g": shared})
        for v, shift in (("a", 0.5), ("b", 0.1), ("c", 0.0)):
            rows.append({"variant": v, "seed": sd, "g": shared + shift + rng.normal(0, 0.1)})
    s = pd.DataFrame(rows)
    t = compare(s, ["base", "a", "b", "c"], "base", [{"endpoint": "g", "better": "higher"}], "primary")
    assert sorted(np.round(t["level_adj"], 4)) == [0.95, 0.975, round(1 - 0.05 / 3, 4)]
    for _, r in t.iterrows():
        v = r["variant"]
        d = s[s.variant == v]["g"].to_numpy() - s[s.variant == "base"]["g"].to_numpy()
        ci = stats.ttest_1samp(d, 0).confidence_interval(r["level_adj"])
        assert (r["lo_adj"], r["hi_adj"]) == pytest.approx((ci.low, ci.high))
        excludes = r["lo_adj"] > 0 or r["hi_adj"] < 0
        assert excludes == (
            r["p"] < 1 - r["level_adj"]
        )  # the t interval at the step level excludes 0 iff p beats that step
        if r["p_holm"] < 0.05:
            assert excludes
        if r["level_adj"] > 0.95:
            assert f"{r['level_adj']:.1%} Holm-step paired t interval" in verdict(r, "base")


# ------------------------------------------------------------------ issue 30: verdicts the data allow


def test_a_verdict_never_says_no_effect_beside_an_interval_that_excludes_0():
    """The optimizers page's case: a (bootstrap) interval excluding 0 while the Holm-adjusted t p is 0.07."""
    row = {
        "variant": "online_dpo",
        "endpoint": "gold_gain",
        "better": "higher",
        "diff": -0.133,
        "lo": -0.228,
        "hi": -0.037,
        "lo_adj": -0.228,
        "hi_adj": -0.037,
        "level_adj": 0.95,
        "p": 0.02,
        "p_holm": 0.07,
        "n": 8,
        "method": "paired bootstrap",
    }
    text = verdict(row, "ppo")
    assert text.startswith("Not called") and "no effect" not in text.lower() and "[-0.228, -0.037]" in text
    rng = np.random.default_rng(5)  # and over many constructed comparisons: "No effect detected" only where 0 is inside
    for trial in range(30):
        s = _two_arm_summary(0.08, rng.uniform(-0.1, 0.1), n=int(rng.integers(3, 9)), seed=trial)
        r = compare(s, ["base", "v"], "base", [{"endpoint": "g", "better": "higher"}], "primary").iloc[0]
        if verdict(r, "base").startswith("No effect detected"):
            assert r["lo_adj"] <= 0 <= r["hi_adj"]


def test_a_three_seed_study_prints_no_p_value():
    from rlhfsim.report.stats import SMALL_NOTE

    for shift in (0.0, 0.5):  # detected or not: the interval, no p
        r = compare(
            _two_arm_summary(0.02, shift, n=3),
            ["base", "v"],
            "base",
            [{"endpoint": "g", "better": "higher"}],
            "primary",
        ).iloc[0]
        text = verdict(r, "base")
        assert "p =" not in text and SMALL_NOTE in text and "3 seeds" in text
    eq = compare(
        _two_arm_summary(0.001, 0.0, n=3), ["base", "v"], "base", [{"endpoint": "g", "margin": 0.05}], "primary"
    ).iloc[0]
    assert "p =" not in verdict(eq, "base") and verdict(eq, "base").startswith("Equivalent within ±0.05")


def test_censored_endpoints_leave_the_paired_test_and_are_never_read_as_0():
    """gold_drop_after_peak is 0 whenever gold peaks in the last round (a bound): that seed leaves the test."""
    rows = []
    for sd, (b, v) in enumerate([(-0.10, -0.02), (-0.12, -0.03), (0.0, -0.05), (-0.08, -0.01)]):
        base_censored = b == 0.0
        rows += [
            {
                "variant": "base",
                "seed": sd,
                "gold_drop_after_peak": b,
                "gold_peak_round": 4 if base_censored else 2,
                "rounds_completed": 4,
            },
            {"variant": "v", "seed": sd, "gold_drop_after_peak": v, "gold_peak_round": 2, "rounds_completed": 4},
        ]
    r = compare(
        pd.DataFrame(rows), ["base", "v"], "base", [{"endpoint": "gold_drop_after_peak", "better": "higher"}], "primary"
    ).iloc[0]
    assert r["n"] == 3 and r["censored"] == 1
    assert r["diff"] == pytest.approx(np.mean([0.08, 0.09, 0.07]))  # seed 2 (baseline censored at 0) is out, not -0.05
    assert "left out of the test" in verdict(r, "base")


def test_shape_rel_is_closer_to_0_is_better_not_lower():
    """collapse_utilities' case: x's shape_rel -0.8 against the baseline's 0.1 is further from gold's 0, not 'better'."""
    from rlhfsim.experiment.ids import documented_target

    assert (
        documented_target("collapse_shape_rel_final") == 0.0
        and documented_target("final/collapse/probe_shape_rel") == 0.0
    )
    assert documented_target("gold_gain") is None
    rows = []
    for sd in range(6):
        rows += [
            {"variant": "base", "seed": sd, "collapse_shape_rel_final": 0.1 + 0.01 * sd},
            {"variant": "x", "seed": sd, "collapse_shape_rel_final": -0.8 + 0.013 * sd},
            {"variant": "y", "seed": sd, "collapse_shape_rel_final": 0.02 + 0.012 * sd},
        ]
    t = compare(
        pd.DataFrame(rows),
        ["base", "x", "y"],
        "base",
        [{"endpoint": "collapse_shape_rel_final", "better": "lower"}],
        "primary",
    )
    x, y = (t[t.variant == v].iloc[0] for v in ("x", "y"))
    assert x["better"] == "closer" and x["diff"] == pytest.approx(
        np.mean([0.8 - 0.013 * s - 0.1 - 0.01 * s for s in range(6)])
    )
    assert verdict(x, "base").startswith(
        "x raises the distance of collapse_shape_rel_final from its target 0"
    ) and ": worse" in verdict(x, "base")
    assert ": better" in verdict(y, "base")


def test_an_experiment_may_declare_closer_only_where_a_target_is_documented():
    from rlhfsim.experiment.spec import Endpoint

    assert Endpoint(endpoint="collapse_shape_rel_final", better="closer").better == "closer"
    assert Endpoint(endpoint="collapse_shape_rel_final", better="lower").better == "lower"  # read as closer to 0
    with pytest.raises(ValueError, match="needs a documented target"):
        Endpoint(endpoint="gold_gain", better="closer")
    with pytest.raises(ValueError, match="higher is better by definition"):
        Endpoint(endpoint="gold_gain", better="lower")


def test_a_long_verdict_list_gets_a_summary_sentence_first():
    from rlhfsim.report.answer import summary_sentence

    rng = np.random.default_rng(1)
    rows = []
    for sd in range(6):
        shared = rng.normal(0, 1)
        rows.append({"variant": "base", "seed": sd, "g": shared})
        for v, shift in (("a", 0.5), ("b", 0.4), ("c", -0.5), ("d", 0.0), ("e", 0.0)):
            rows.append({"variant": v, "seed": sd, "g": shared + shift + rng.normal(0, 0.02)})
    t = compare(pd.DataFrame(rows), ["base", *"abcde"], "base", [{"endpoint": "g", "better": "higher"}], "primary")
    lines = [verdict(r, "base") for _, r in t.iterrows()]
    text = summary_sentence(lines, "base")
    assert text.startswith(
        "In summary, 5 arms against base: 2 better, 1 worse, "
    )  # d and e: 0 shift, classed as their own sentences say
    rest = {k: sum(x.startswith(k) for x in lines) for k in ("No effect detected", "Not called")}
    assert sum(rest.values()) == 2 and all(f"{n} {k.lower()}" in text for k, n in rest.items() if n)
