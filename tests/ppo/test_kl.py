"""Tests of the KL controllers in rlhfsim.ppo.kl."""

from __future__ import annotations

import pytest

from rlhfsim.ppo.kl import KL_CONTROLLERS, AdaptiveKLController, FixedKLController, get_kl_controller


def test_fixed_controller_never_moves():
    c = FixedKLController(0.05)
    for kl in (0.0, 1.0, 100.0):
        c.update(kl, 64)
    assert c.value == 0.05


def test_adaptive_controller_step_by_hand():
    c = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10000)
    beta = 0.1
    # (measured KL, n_steps, expected clipped error)
    for kl, n, e in [(9.0, 256, 0.2), (6.6, 256, 0.1), (6.0, 128, 0.0), (5.4, 64, -0.1), (1.0, 512, -0.2)]:
        c.update(kl, n)
        beta *= 1 + e * n / 10000
        assert c.value == pytest.approx(beta, rel=1e-12)
    assert c.value != pytest.approx(0.1)


def test_adaptive_controller_direction():
    up, down = AdaptiveKLController(0.1, 1.0, 100), AdaptiveKLController(0.1, 1.0, 100)
    up.update(5.0, 10)
    down.update(0.1, 10)
    assert up.value == pytest.approx(0.1 * 1.02) and down.value == pytest.approx(0.1 * 0.98)


def test_state_dict_round_trip():
    a = AdaptiveKLController(0.1, 6.0, 10000)
    a.update(9.0, 1000)
    b = AdaptiveKLController(0.5, 1.0, 10)
    b.load_state_dict(a.state_dict())
    assert (b.value, b.target, b.horizon) == (a.value, a.target, a.horizon)
    a.update(3.0, 100)
    b.update(3.0, 100)
    assert b.value == a.value
    f = FixedKLController(0.2)
    g = FixedKLController(0.0)
    g.load_state_dict(f.state_dict())
    assert g.value == 0.2


def test_registry_and_errors():
    assert set(KL_CONTROLLERS) == {"fixed", "adaptive"}
    assert isinstance(get_kl_controller("fixed", beta=0.1), FixedKLController)
    c = get_kl_controller("adaptive", init_beta=0.1, target=6.0, horizon=10000)
    assert isinstance(c, AdaptiveKLController) and c.value == 0.1
    with pytest.raises(ValueError, match="adaptive.*fixed"):
        get_kl_controller("pid", beta=0.1)
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, 0.0, 100)
    with pytest.raises(ValueError):
        AdaptiveKLController(0.1, 1.0, 100).update(float("nan"), 10)
