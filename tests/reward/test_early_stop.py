"""Reward-model early stopping, held-out split, bootstrap resamples and member data orders."""

import numpy as np
import pytest

from rlhfsim.reward.buffer import Group
from rlhfsim.reward.early_stop import EarlyStopper, bootstrap_indices, holdout_mask, member_orders
from rlhfsim.world.base import Prompt


def _curve(n=12, turn=5):
    """Held-out loss that falls until `turn` then rises (accuracy: the mirror image)."""
    e = np.arange(1, n + 1)
    return 0.7 - 0.05 * np.minimum(e, turn) + 0.04 * np.maximum(e - turn, 0)


@pytest.mark.parametrize("patience", [1, 2, 3])
def test_patience_stops_after_the_turn_and_keeps_the_best(patience):
    loss = _curve()
    st = EarlyStopper("patience", "loss", patience=patience, max_epochs=12)
    stopped = next(e for e, v in enumerate(loss, 1) if st.update(e, {"loss": v, "accuracy": 1 - v}))
    assert stopped == 5 + patience and st.reason == "patience"
    assert st.keep_epoch == int(np.argmin(loss)) + 1 == 5


def test_accuracy_monitor_and_min_delta():
    acc = 1 - _curve()
    st = EarlyStopper("patience", "accuracy", patience=1, max_epochs=12)
    stopped = next(e for e, v in enumerate(acc, 1) if st.update(e, {"loss": np.nan, "accuracy": v}))
    assert (stopped, st.keep_epoch) == (6, 5)
    # improvements of 0.05 per epoch do not beat min_delta 0.1: stops after the first epoch's patience
    st = EarlyStopper("patience", "accuracy", patience=1, min_delta=0.1, max_epochs=12)
    stopped = next(e for e, v in enumerate(acc, 1) if st.update(e, {"loss": np.nan, "accuracy": v}))
    assert (stopped, st.keep_epoch) == (2, 1)


def test_min_and_max_epochs():
    st = EarlyStopper("patience", "loss", patience=1, min_epochs=8, max_epochs=12)
    stopped = next(e for e, v in enumerate(_curve(), 1) if st.update(e, {"loss": v}))
    assert stopped == 8 and st.keep_epoch == 5
    flat = EarlyStopper("none", max_epochs=3)
    assert [flat.update(e, {}) for e in (1, 2, 3)] == [False, False, True]
    assert flat.reason == "max_epochs" and flat.keep_epoch == 3
    falling = EarlyStopper("patience", "loss", patience=2, max_epochs=4)
    assert [falling.update(e, {"loss": 1.0 / e}) for e in (1, 2, 3, 4)] == [False, False, False, True]
    assert falling.reason == "max_epochs" and falling.keep_epoch == 4


def test_collapse_aware_keeps_last_epoch_before_crossing():
    index = [0.30, 0.25, 0.2, 0.12, 0.05]  # the held-out collapse index shrinks as the model trains
    st = EarlyStopper("collapse", min_shape_dep=0.15, max_epochs=5)
    stopped = next(e for e, v in enumerate(index, 1) if st.update(e, {"shape_dep": v, "saturation": 0.0}))
    assert (stopped, st.keep_epoch, st.reason) == (4, 3, "shape_dep")
    st = EarlyStopper("collapse", max_saturation=0.5, max_epochs=5)
    stopped = next(e for e, v in enumerate([0.1, 0.6, 0.9], 1) if st.update(e, {"shape_dep": np.nan, "saturation": v}))
    assert (stopped, st.keep_epoch, st.reason) == (2, 1, "saturation")


def _groups(n, round_=1):
    return [
        Group(
            Prompt(i, "add", "closed", f"add {i} 1 ="),
            ["a", "b"],
            np.array([1.0, 0.0]),
            np.array([[False, True], [False, False]]),
            round_,
        )
        for i in range(n)
    ]


def test_holdout_is_stable_reproducible_and_about_the_share():
    g = _groups(400)
    m = holdout_mask(g, 0.2, seed=0)
    assert 0.14 < m.mean() < 0.26
    np.testing.assert_array_equal(m, holdout_mask(g, 0.2, seed=0))
    assert (m != holdout_mask(g, 0.2, seed=1)).any()
    # a later round's buffer holds the same groups plus new ones: the old ones keep their side
    later = g + _groups(50, round_=2)
    np.testing.assert_array_equal(holdout_mask(later, 0.2, seed=0)[:400], m)
    assert not holdout_mask(g, 0.0, seed=0).any()


def test_bootstrap_resamples_differ_by_seed_and_are_reproducible():
    a = bootstrap_indices(50, 3, np.random.default_rng(0))
    b = bootstrap_indices(50, 3, np.random.default_rng(0))
    c = bootstrap_indices(50, 3, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert a.shape == (3, 50) and a.min() >= 0 and a.max() < 50
    assert (a[0] != a[1]).any()  # members get different resamples
    assert all(len(np.unique(r)) < 50 for r in a)  # with replacement: some groups repeat, some are left out


def test_member_orders():
    own = member_orders(20, 3, 2, "own_order", np.random.default_rng(0))
    assert own.shape == (3, 2, 20)
    assert all(sorted(own[m, e]) == list(range(20)) for m in range(3) for e in range(2))  # permutations
    assert (own[0, 0] != own[1, 0]).any()
    same = member_orders(20, 3, 2, "same_order", np.random.default_rng(0))
    assert (same[0] == same[1]).all() and (same[:, 0] != same[:, 1]).any()
    boot = member_orders(20, 3, 2, "bootstrap", np.random.default_rng(0))
    assert sorted(boot[0, 0]) == sorted(boot[0, 1])  # one resample per round, reshuffled per epoch
    assert sorted(boot[0, 0]) != sorted(boot[1, 0])
    # one member, own order: one permutation per epoch, exactly as a single model trains
    rng = np.random.default_rng(7)
    ref = [rng.permutation(20) for _ in range(2)]
    np.testing.assert_array_equal(member_orders(20, 1, 2, "own_order", np.random.default_rng(7))[0], ref)
