import itertools
import math

import numpy as np
import pytest

from rlhfsim.diagnostics.overopt import best_of_n, best_of_n_curve, bon_kl, fit_gao, gao_bon, gao_rl


def test_forms_and_bon_kl():
    d = np.array([0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(
        gao_rl(d, 1.0, 0.5), [0.0, 0.5 * (1 - 0.5 * np.log(0.5)), 1.0, 2 * (1 - 0.5 * np.log(2))]
    )
    np.testing.assert_allclose(gao_bon(d, 1.0, 0.5), [0.0, 0.375, 0.5, 0.0])
    assert bon_kl(1) == 0.0
    assert bon_kl(4) == pytest.approx(np.log(4) - 0.75)


@pytest.mark.parametrize("form, f", [("rl", gao_rl), ("bon", gao_bon)])
def test_fit_recovers_parameters(form, f):
    alpha, beta = 0.8, 0.3
    d = np.linspace(0.0, 6.0, 25)
    fit = fit_gao(d, f(d, alpha, beta), form=form)
    assert fit["alpha"] == pytest.approx(alpha, abs=1e-9)
    assert fit["beta"] == pytest.approx(beta, abs=1e-9)
    assert fit["r2"] == pytest.approx(1.0, abs=1e-12)
    assert fit["n"] == 25
    # the reported peak is the maximum of the fitted curve
    dd = np.linspace(1e-6, 20, 200001)
    i = np.argmax(f(dd, alpha, beta))
    assert fit["d_peak"] == pytest.approx(dd[i], abs=1e-3)
    assert fit["r_peak"] == pytest.approx(f(dd, alpha, beta)[i], abs=1e-6)


def test_fit_noisy_and_degenerate():
    rng = np.random.default_rng(0)
    d = np.linspace(0.1, 5, 40)
    y = gao_rl(d, 1.0, 0.4) + rng.normal(0, 0.05, d.size)
    fit = fit_gao(np.r_[d, np.nan, -1.0], np.r_[y, 1.0, 1.0], "rl")
    assert fit["n"] == 40 and 0.9 < fit["r2"] < 1.0
    assert fit["alpha"] == pytest.approx(1.0, abs=0.1)
    # a curve that only rises: no finite peak
    up = fit_gao(d, gao_bon(d, 1.0, -0.2), "bon")
    assert up["beta"] < 0 and up["d_peak"] == math.inf
    assert math.isnan(fit_gao([1.0], [1.0], "rl")["alpha"])
    with pytest.raises(ValueError):
        fit_gao(d, y, "linear")


def _brute(proxy, gold, n):
    """Average over all n-subsets of the proxy max and the gold at np.argmax(proxy)."""
    pm, gm = [], []
    for prow, grow in zip(proxy, gold):
        ps, gs = [], []
        for sub in itertools.combinations(range(proxy.shape[1]), n):
            sub = list(sub)
            j = sub[int(np.argmax(prow[sub]))]
            ps.append(prow[j])
            gs.append(grow[j])
        pm.append(np.mean(ps))
        gm.append(np.mean(gs))
    return np.mean(pm), np.mean(gm)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_best_of_n_matches_enumeration(n):
    rng = np.random.default_rng(n)
    proxy = rng.normal(size=(6, 5))
    proxy[0] = [0.3, 0.3, 0.1, 0.3, -1.0]  # ties resolved like np.argmax
    gold = rng.normal(size=(6, 5))
    est = best_of_n(proxy, gold, n)
    np.testing.assert_allclose(est, _brute(proxy, gold, n), rtol=1e-12)


def test_best_of_n_endpoints():
    rng = np.random.default_rng(7)
    proxy, gold = rng.normal(size=(10, 6)), rng.normal(size=(10, 6))
    p1, g1 = best_of_n(proxy, gold, 1)
    assert p1 == pytest.approx(proxy.mean()) and g1 == pytest.approx(gold.mean())
    pN, gN = best_of_n(proxy, gold, 6)
    assert pN == pytest.approx(proxy.max(1).mean())
    assert gN == pytest.approx(gold[np.arange(10), proxy.argmax(1)].mean())
    assert all(math.isnan(v) for v in best_of_n(proxy, gold, 7))


def test_best_of_n_curve():
    rng = np.random.default_rng(3)
    gold = rng.normal(size=(50, 16))
    proxy = gold + rng.normal(size=gold.shape)
    df = best_of_n_curve(proxy, gold, [1, 2, 4, 8, 16])
    assert list(df.columns) == ["n", "kl", "d", "proxy", "gold"]
    np.testing.assert_allclose(df["d"] ** 2, bon_kl(df["n"].to_numpy()))
    assert (np.diff(df["proxy"]) > 0).all()  # expected proxy max rises with n
    assert df["gold"].iloc[-1] > df["gold"].iloc[0]  # correlated proxy: selection helps gold


def test_standardised_w1_is_zero_up_to_a_positive_affine_map_and_measures_shape():
    from rlhfsim.diagnostics.overopt import standardised_w1

    g = np.array([0.1, 0.5, 0.2, 0.9, 0.4])
    assert standardised_w1(3.0 * g - 7.0, g) == pytest.approx(0.0, abs=1e-12)
    # two atoms (z = -1, +1) against three points (z = -sqrt(1.5), 0, sqrt(1.5)): W1 = mean |quantile difference|
    two, three = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0]), np.array([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])
    s = np.sqrt(1.5)
    assert standardised_w1(two, three) == pytest.approx((2 * abs(-1 + s) + 2 * 1 + 2 * abs(1 - s)) / 6)
    assert standardised_w1(np.ones(4), np.zeros(4)) == 0.0  # constants z-score to 0


def test_proxy_gold_gap_in_reference_standard_units():
    from rlhfsim.diagnostics.overopt import proxy_gold_gap

    ref_p, ref_g = np.array([0.0, 2.0]), np.array([10.0, 14.0])  # mean 1 sd 1; mean 12 sd 2
    assert proxy_gold_gap([3.0, 3.0], [14.0, 14.0], ref_p, ref_g) == pytest.approx(2.0 - 1.0)
    assert proxy_gold_gap([1.0], [12.0], ref_p, ref_g) == 0.0  # neither moved
