"""Recalibration maps on hand values."""

import numpy as np
import pytest

from rlhfsim.reward.recalibrate import ALL, apply, as_metrics, gold_fit_params, standardise_params


def test_standardise_gives_mean_0_std_1_per_type():
    proxy = np.array([1.0, 3.0, 10.0, 10.0, 12.0])
    types = ["open", "open", "closed", "closed", "closed"]
    p = standardise_params(proxy, types)
    assert p["open"] == pytest.approx((1.0, -2.0))  # mean 2, std 1
    z = apply(p, proxy, types)
    for t in ("open", "closed"):
        sel = np.array(types) == t
        assert z[sel].mean() == pytest.approx(0.0) and z[sel].std() == pytest.approx(1.0)
    glob = standardise_params(proxy, types, per_type=False)
    assert set(glob) == {ALL} and apply(glob, proxy, types).std() == pytest.approx(1.0)
    assert standardise_params([4.0, 4.0])[ALL] == (1.0, -4.0)  # constant: shift only


def test_gold_fit_is_least_squares_with_a_floored_slope():
    proxy = np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    gold = np.array([0.1, 0.3, 0.5, 1.0, 0.5, 0.0])
    types = ["open"] * 3 + ["closed"] * 3
    p = gold_fit_params(proxy, gold, types)
    assert p["open"] == pytest.approx((0.2, 0.1))
    assert p["closed"] == pytest.approx((0.0, 0.5))  # slope -0.5 floored at 0: flat at the mean gold
    assert gold_fit_params(proxy, gold, types, min_slope=-1.0)["closed"] == pytest.approx((-0.5, 1.0))
    np.testing.assert_allclose(apply(p, proxy, types), [0.1, 0.3, 0.5, 0.5, 0.5, 0.5])


def test_apply_falls_back_to_the_all_map_and_identity():
    p = {ALL: (2.0, 1.0), "open": (1.0, 0.0)}
    np.testing.assert_allclose(apply(p, [1.0, 1.0], ["open", "closed"]), [1.0, 3.0])
    np.testing.assert_allclose(apply(None, [1.0, 5.0], ["open", "closed"]), [1.0, 5.0])
    assert as_metrics(p) == {
        "recal/all_scale": 2.0,
        "recal/all_shift": 1.0,
        "recal/open_scale": 1.0,
        "recal/open_shift": 0.0,
    }
    with pytest.raises(ValueError, match="types"):
        apply(p, [1.0], ["open", "open"])
