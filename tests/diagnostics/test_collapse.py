import math

import numpy as np
import pytest
from scipy import stats

from rlhfsim.diagnostics.collapse import (
    collapse_metrics,
    gold_graphs,
    graph_optimum_dev,
    level_gap,
    mean_kendall_tau,
    mean_profile,
    pairwise_accuracy,
    profile_collapse,
    shape_dependence,
    sorted_profiles,
    standardised_profiles,
    to_unit_interval,
)
from rlhfsim.reward.utilities import get_utility


def test_sorted_profiles_descending_nan_last():
    R = np.array([[0.2, np.nan, 0.9, 0.5], [1.0, 0.0, 0.3, 0.3]])
    S = sorted_profiles(R)
    np.testing.assert_array_equal(S[0, :3], [0.9, 0.5, 0.2])
    assert np.isnan(S[0, 3])
    np.testing.assert_array_equal(S[1], [1.0, 0.3, 0.3, 0.0])


def test_mean_profile_and_missing_rows():
    R = np.array([[0.0, 1.0], [0.2, 0.4], [0.5, 0.5]])
    types = ["open", "open", "closed"]
    np.testing.assert_allclose(mean_profile(R, types, "open"), [0.7, 0.1])
    assert np.isnan(mean_profile(R, types, "absent")).all()
    # an incomplete row is resampled to k quantiles rather than shifting positions
    R2 = np.array([[0.8, np.nan, 0.2]])
    np.testing.assert_allclose(
        mean_profile(R2, ["open"], "open"), np.quantile([0.2, 0.8], [5 / 6, 0.5, 1 / 6], method="hazen")
    )


def _profiles_with_offsets(rng, shape, P, scales=True):
    """Every prompt gets the one sorted profile ``shape`` (shuffled), with a random per-prompt offset and scale."""
    rows = [rng.permutation(shape) * (rng.uniform(0.2, 5.0) if scales else 1.0) + rng.normal(0, 10) for _ in range(P)]
    return np.vstack(rows)


def _typed_gold(rng, P=40, k=5):
    """Gold with type-dependent profiles: closed 0/1 with at least one right and one wrong, open uniform."""
    types = ["open" if i % 2 else "closed" for i in range(P)]
    G = rng.uniform(size=(P, k))
    for i in range(0, P, 2):
        n_right = rng.integers(1, k)
        G[i] = rng.permutation(np.r_[np.ones(n_right), np.zeros(k - n_right)])
    return types, G


def test_one_profile_with_per_prompt_offsets_and_scales_is_maximally_collapsed():
    rng = np.random.default_rng(0)
    types, G = _typed_gold(rng)
    R = _profiles_with_offsets(rng, np.array([2.0, 1.5, 0.3, 0.1, 0.0]), len(types))
    m = profile_collapse(R, G, types)
    assert m["collapse/shape"] == pytest.approx(1.0, abs=1e-12)
    assert m["collapse/shape_rel"] == pytest.approx(1.0, abs=1e-12)
    assert m["collapse/shape_gold"] < 0.95  # gold's profiles do depend on the prompt
    assert shape_dependence(R) == pytest.approx(0.0, abs=1e-12)


def test_gold_scored_as_the_reward_gives_gold_value():
    rng = np.random.default_rng(1)
    types, G = _typed_gold(rng)
    m = profile_collapse(G, G, types)
    assert m["collapse/shape"] == m["collapse/shape_gold"] and m["collapse/shape_rel"] == pytest.approx(0.0)
    assert m["collapse/level_gap"] == m["collapse/level_gap_gold"] and m["collapse/level_rel"] == pytest.approx(0.0)


def test_per_prompt_constants_and_affine_maps_change_nothing():
    rng = np.random.default_rng(2)
    types, G = _typed_gold(rng)
    R = G + rng.normal(0, 0.3, G.shape)
    base = profile_collapse(R, G, types)
    shifted = profile_collapse(R + rng.normal(0, 50, (len(types), 1)), G, types)
    affine = profile_collapse(3.7 * R - 11.0, G, types)
    for key in ("collapse/shape", "collapse/shape_rel", "collapse/shape_gold"):
        assert shifted[key] == pytest.approx(base[key], abs=1e-9)
        assert affine[key] == pytest.approx(base[key], abs=1e-9)
    for key in ("collapse/level_gap", "collapse/level_rel"):  # the level is an offset: affine-invariant only
        assert affine[key] == pytest.approx(base[key], abs=1e-9)
    # completion order inside a prompt does not matter either
    idx = np.vstack([rng.permutation(G.shape[1]) for _ in types])
    Rp, Gp = np.take_along_axis(R, idx, 1), np.take_along_axis(G, idx, 1)
    assert profile_collapse(Rp, Gp, types)["collapse/shape"] == pytest.approx(base["collapse/shape"])


def test_dial_from_type_dependent_to_shared_profiles_is_monotone():
    rng = np.random.default_rng(3)
    types, G = _typed_gold(rng)
    shared = np.array([1.0, 0.8, 0.5, 0.2, 0.0])
    # every prompt's own gold profile, blended towards one shared profile (in the prompt's own rank order)
    ranks = np.argsort(np.argsort(-G, axis=1, kind="stable"), axis=1)
    own = (G - G.mean(1, keepdims=True)) / G.std(1, keepdims=True)
    common = ((shared - shared.mean()) / shared.std())[ranks]
    vals = [
        profile_collapse(rng.normal(0, 5, (len(types), 1)) + (1 - a) * own + a * common, G, types)["collapse/shape_rel"]
        for a in np.linspace(0, 1, 11)
    ]
    assert vals[0] == pytest.approx(0.0, abs=1e-9) and vals[-1] == pytest.approx(1.0, abs=1e-9)
    assert np.all(np.diff(vals) > 0)


def test_collapse_within_a_type_that_type_averages_miss():
    # both types hold the same MIX of two profiles: type-averaged profiles coincide, yet each prompt differs
    P, a, b = 40, np.array([1.0, 0.0, 0.0, 0.0]), np.array([1.0, 1.0, 1.0, 0.0])
    R = np.vstack([a if i % 4 < 2 else b for i in range(P)])
    types = ["open" if i % 2 else "closed" for i in range(P)]
    assert np.allclose(mean_profile(R, types, "open"), mean_profile(R, types, "closed"))
    assert shape_dependence(R) > 0.2  # the prompt-level measure sees the dependence


def test_frozen_model_on_a_fixed_probe_does_not_move_while_sample_measure_may():
    rng = np.random.default_rng(5)
    types, G_probe = _typed_gold(rng)
    w = np.array([1.0, -0.3])  # a frozen "reward model": a fixed function of the completion features
    feats = lambda g: np.stack([g, np.sin(7 * g)], -1)  # noqa: E731
    rm = lambda g: feats(g) @ w  # noqa: E731
    probe = [profile_collapse(rm(G_probe), G_probe, types)["collapse/shape"] for _ in range(3)]
    assert probe[0] == probe[1] == probe[2]
    # new samples (a sharper policy: gold concentrated near the top) move the sample-based measure
    G_new = np.clip(G_probe**0.2, 0, 1)
    assert profile_collapse(rm(G_new), G_new, types)["collapse/shape"] != pytest.approx(probe[0])


def test_standardised_profiles_skip_constant_rows_and_k2_has_no_shape():
    Z, ok = standardised_profiles(np.array([[1.0, 1.0, 1.0], [3.0, 1.0, 2.0], [np.nan, 1.0, np.nan]]))
    assert ok.tolist() == [False, True, False]
    np.testing.assert_allclose(Z[1], [np.sqrt(1.5), 0.0, -np.sqrt(1.5)])
    assert shape_dependence(np.random.default_rng(0).normal(size=(30, 2))) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(shape_dependence(np.ones((3, 4))))


def test_level_gap_known_value():
    # open prompts sit 2.5 within-prompt SDs (s = 1) above closed ones
    R = np.array([[2.0, 4.0], [2.5, 4.5], [0.0, 2.0], [-0.5, 1.5]])
    types = ["open", "open", "closed", "closed"]
    assert level_gap(R, types) == pytest.approx((3.25 - 0.75) / 1.0)
    assert math.isnan(level_gap(R, ["open"] * 4))


def test_to_unit_interval():
    x = np.array([[-2.0, 0.0, 2.0]])
    np.testing.assert_allclose(to_unit_interval(x, True), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(to_unit_interval(x, False), [[0.0, 0.5, 1.0]])
    np.testing.assert_allclose(to_unit_interval(np.full((2, 2), 3.0), False), 0.5)
    y = to_unit_interval(np.array([1.0, np.nan, 3.0]), False)
    assert np.isnan(y[1]) and y[0] == 0 and y[2] == 1


def test_pairwise_accuracy_perfect_reversed_and_ties():
    G = np.array([[1.0, 0.0, 0.5], [0.1, 0.2, 0.3]])
    assert pairwise_accuracy(G * 3 - 1, G) == 1.0
    assert pairwise_accuracy(-G, G) == 0.0
    # proxy tie on a gold-differing pair: half credit
    assert pairwise_accuracy(np.array([[0.4, 0.4]]), np.array([[1.0, 0.0]])) == 0.5
    # gold ties are excluded: only the (0,1) pair of row 0 counts, and it is right
    assert pairwise_accuracy(np.array([[2.0, 1.0, 3.0]]), np.array([[1.0, 0.0, 0.0]])) == 0.5


def test_pairwise_accuracy_nan_without_gold_differing_pair():
    R = np.array([[0.3, 0.9, 0.1], [0.2, 0.5, 0.7]])
    G = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    assert math.isnan(pairwise_accuracy(R, G))


def test_pairwise_accuracy_skips_missing():
    R = np.array([[np.nan, 0.0, 1.0]])
    G = np.array([[0.0, 1.0, 0.5]])  # pairs with the NaN entry are ignored; (1,2) is wrong
    assert pairwise_accuracy(R, G) == 0.0


def test_kendall_tau_hand_example():
    # row 0: proxy order (a,b,c,d) vs gold (a,c,b,d): one discordant pair of 6 -> tau = (5-1)/6
    R = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0], [0.5, 0.6, 0.7, 0.8]])
    G = np.array([[4.0, 2.0, 3.0, 1.0], [1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    # row 2 has constant gold (tau undefined) and is skipped
    assert mean_kendall_tau(R, G) == pytest.approx(((5 - 1) / 6 + 1.0) / 2)
    assert stats.kendalltau(R[0], G[0]).statistic == pytest.approx(4 / 6)
    assert math.isnan(mean_kendall_tau(R[2:], G[2:]))


def _world(rng, P=40, k=4):
    types = ["open" if i % 2 else "closed" for i in range(P)]
    gold = np.where(np.array(types)[:, None] == "closed", rng.integers(0, 2, (P, k)), rng.uniform(size=(P, k)))
    return types, gold.astype(float)


def test_collapse_metrics_keys_and_ranges():
    rng = np.random.default_rng(1)
    types, gold = _world(rng)
    logits = 4 * (gold - 0.5) + rng.normal(0, 0.5, gold.shape)
    theory = {"open": get_utility("-1/x"), "closed": get_utility("linear")}
    m = collapse_metrics(logits, types, bounded=True, gold=gold, theory=theory)
    for t in ("open", "closed"):
        for s in ("mean", "std", "q10", "q50", "q90"):
            assert 0 <= m[f"reward/{t}_{s}"] <= 1
        for key in ("within_std", "graph_dev_mean", "graph_dev_max"):
            assert 0 <= m[f"collapse/{t}_{key}"] <= 1
        assert 0.5 < m[f"rm/{t}_pairwise_acc"] <= 1
        assert 0 < m[f"rm/{t}_kendall_tau"] <= 1
        assert m[f"collapse/{t}_graph_dev_mean"] <= m[f"collapse/{t}_graph_dev_max"]
    assert 0 <= m["collapse/shape"] <= 1 and 0 <= m["collapse/saturation"] <= 1
    assert m["collapse/shape"] == pytest.approx(
        profile_collapse(1 / (1 + np.exp(-logits)), gold, types)["collapse/shape"]
    )
    assert m["collapse/logit_absmax"] == pytest.approx(np.abs(logits).max())
    assert m["collapse/logit_abs_p99"] <= m["collapse/logit_absmax"]
    assert m["rm/pairwise_acc"] == pytest.approx(pairwise_accuracy(logits, gold))
    assert all(isinstance(v, float) for v in m.values())


def test_collapse_metrics_collapsed_model_and_saturation():
    rng = np.random.default_rng(2)
    types, gold = _world(rng)
    # every prompt gets the same polarised profile: full collapse, everything saturated
    row = np.array([8.0, 8.0, -8.0, -8.0])
    logits = np.vstack([rng.permutation(row) for _ in types])
    m = collapse_metrics(logits, types, bounded=True, gold=gold, theory={"open": get_utility("linear")})
    assert m["collapse/shape"] == pytest.approx(1.0, abs=1e-12)
    assert m["collapse/shape_rel"] == pytest.approx(1.0, abs=1e-12)
    assert m["collapse/saturation"] == 1.0
    assert "collapse/closed_graph_dev_mean" not in m
    # unbounded: saturation counts within-prompt logit gaps above the threshold (here 16 or 0)
    m2 = collapse_metrics(logits, types, bounded=False, logit_thr=5.0)
    assert m2["collapse/saturation"] == pytest.approx(4 / 6)
    assert m2["collapse/gap_abs_p99"] == pytest.approx(16.0)
    assert (
        collapse_metrics(logits + 100.0, types, bounded=False, logit_thr=5.0)["collapse/saturation"]
        == m2["collapse/saturation"]
    )
    assert math.isnan(m2["rm/pairwise_acc"]) and "collapse/shape" not in m2
    assert m2["reward/open_mean"] == pytest.approx(0.0)  # raw logit scale when unbounded


def test_graph_deviation_zero_at_the_graph_optimum():
    # closed prompts with one right answer: the graph optimum under any increasing bounded utility is (1, 0, 0, 0)
    gold = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    R = gold.copy()
    dev = graph_optimum_dev(R, gold_graphs(gold), get_utility("-1/x"))
    np.testing.assert_allclose(dev, 0.0, atol=1e-9)
    # the total-order optimum placed by rank would have called these profiles wrong
    assert graph_optimum_dev(np.array([[0.8, 0.3, 0.2, 0.1]]), gold_graphs(gold[:1]), get_utility("-1/x"))[0] > 0.1


def test_collapse_metrics_closed_all_wrong_gives_nan_accuracy():
    types = ["closed", "closed", "open"]
    gold = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.1, 0.5, 0.9]])
    logits = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 2.0], [-1.0, 0.0, 1.0]])
    m = collapse_metrics(logits, types, bounded=True, gold=gold)
    assert math.isnan(m["rm/closed_pairwise_acc"]) and math.isnan(m["rm/closed_kendall_tau"])
    assert m["rm/open_pairwise_acc"] == 1.0 and m["rm/pairwise_acc"] == 1.0
    assert m["rm/gold_pairs"] == 3.0


def test_saturation_and_explosion_per_type():
    # closed prompts saturate and explode, open prompts stay in the middle
    types = ["closed", "open", "closed", "open"]
    logits = np.array([[12.0, -12.0, 30.0], [0.1, -0.2, 0.3], [-15.0, 11.0, 12.0], [0.5, 0.0, -0.5]])
    m = collapse_metrics(logits, types, bounded=True)
    assert m["collapse/closed_saturation"] == 1.0 and m["collapse/open_saturation"] == 0.0
    assert m["collapse/saturation"] == pytest.approx(0.5)
    assert m["collapse/closed_logit_absmax"] == 30.0 and m["collapse/open_logit_absmax"] == 0.5
    assert m["collapse/closed_logit_abs_p99"] <= 30.0 and m["collapse/logit_absmax"] == 30.0
    mu = collapse_metrics(logits, types, bounded=False, logit_thr=11.5)
    assert mu["collapse/closed_saturation"] == pytest.approx(5 / 6) and mu["collapse/open_saturation"] == 0.0


def test_shape_dependence_equals_half_the_mean_pairwise_w2_and_the_closed_form():
    rng = np.random.default_rng(6)
    R = rng.gamma(2.0, size=(25, 6)) + rng.normal(0, 3, (25, 1))
    Z, ok = standardised_profiles(R)
    d = shape_dependence(R)
    # independent route: squared W2 between equal-size 1-D empirical laws = mean squared gap of sorted values
    w2 = [np.mean((np.sort(Z[i]) - np.sort(Z[j])) ** 2) for i in range(25) for j in range(25)]
    assert d == pytest.approx(0.5 * np.mean(w2), rel=1e-12)
    assert d == pytest.approx(1 - np.sum(Z.mean(0) ** 2) / R.shape[1], rel=1e-12)
