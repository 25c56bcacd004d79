import math

import numpy as np
import pytest
from scipy import stats

from rlhfsim.diagnostics.collapse import (
    collapse_index,
    collapse_metrics,
    mean_kendall_tau,
    mean_profile,
    pairwise_accuracy,
    sorted_profiles,
    to_unit_interval,
)


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
    np.testing.assert_allclose(mean_profile(R2, ["open"], "open"), np.quantile([0.2, 0.8], [5 / 6, 0.5, 1 / 6], method="hazen"))


def test_collapse_index_identical_is_zero():
    rng = np.random.default_rng(0)
    R = rng.uniform(size=(6, 5))
    R = np.vstack([R, R])
    types = ["open"] * 6 + ["closed"] * 6
    assert collapse_index(R, types) == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("k", [2, 4, 10])
def test_collapse_index_polarised_vs_uniform(k):
    polar = np.r_[np.ones(k // 2), np.zeros(k // 2)]
    grid = (np.arange(1, k + 1) - 0.5) / k
    rng = np.random.default_rng(k)
    # shuffled rows: the index must not depend on completion order
    R = np.vstack([rng.permutation(polar) for _ in range(3)] + [rng.permutation(grid) for _ in range(4)])
    types = ["closed"] * 3 + ["open"] * 4
    assert collapse_index(R, types) == pytest.approx(0.25)
    assert collapse_index(R, types, a="closed", b="open") == pytest.approx(0.25)


def test_collapse_index_nan_when_type_absent():
    assert math.isnan(collapse_index(np.ones((2, 3)) * 0.5, ["open", "open"]))


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
    theory = {"open": (np.arange(4) + 0.5) / 4, "closed": np.array([0.0, 0.0, 1.0, 1.0])}
    m = collapse_metrics(logits, types, bounded=True, gold=gold, theory=theory)
    for t in ("open", "closed"):
        for s in ("mean", "std", "q10", "q50", "q90"):
            assert 0 <= m[f"reward/{t}_{s}"] <= 1
        for key in ("within_std", "theory_maxdev", "theory_meandev"):
            assert 0 <= m[f"collapse/{t}_{key}"] <= 1
        assert 0.5 < m[f"rm/{t}_pairwise_acc"] <= 1
        assert 0 < m[f"rm/{t}_kendall_tau"] <= 1
        assert m[f"collapse/{t}_theory_meandev"] <= m[f"collapse/{t}_theory_maxdev"]
    assert 0 <= m["collapse/index"] <= 1 and 0 <= m["collapse/saturation"] <= 1
    assert m["collapse/index_gap"] == pytest.approx(m["collapse/index_gold"] - m["collapse/index"])
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
    m = collapse_metrics(logits, types, bounded=True, gold=gold, theory={"open": [0, 0, 1, 1]})
    assert m["collapse/index"] == pytest.approx(0.0, abs=1e-12)
    assert m["collapse/index_gap"] > 0  # gold separates the types, the proxy does not
    assert m["collapse/saturation"] == 1.0
    assert m["collapse/open_theory_maxdev"] < 1e-3
    assert "collapse/closed_theory_maxdev" not in m
    # unbounded: saturation counts |logit| above the threshold
    m2 = collapse_metrics(logits, types, bounded=False, logit_thr=5.0)
    assert m2["collapse/saturation"] == 1.0
    assert collapse_metrics(logits, types, bounded=False, logit_thr=9.0)["collapse/saturation"] == 0.0
    assert math.isnan(m2["rm/pairwise_acc"]) and math.isnan(m2["collapse/index_gold"])
    assert m2["reward/open_mean"] == pytest.approx(0.0)  # raw logit scale when unbounded


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
