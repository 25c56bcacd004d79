import math

import numpy as np
import pytest
import torch

from rlhfsim.reward.utilities import (
    DEFAULT_EPS,
    UTILITIES,
    Utility,
    get_utility,
    utility_from_spec,
)

# one instance of every family, with the aliases the paper's code uses
SPECS = [
    ("logsigmoid", {}),
    ("logsigmoid", {"scale": 4}),
    ("linear", {}),
    ("x", {}),
    ("power", {"g": 0.5}),
    ("power", {"g": 2.0}),
    ("log", {}),
    ("log", {"eps": 0.01}),
    ("neg_power", {"g": 0.5}),
    ("neg_power", {"g": 2.0}),
    ("inv", {}),
    ("-1/x", {}),
]
IDS = [f"{n}-{p}" for n, p in SPECS]


@pytest.mark.parametrize("name,params", SPECS, ids=IDS)
def test_increasing_with_positive_slope_on_both_sides(name, params):
    u = get_utility(name, **params)
    assert u(-0.5) < u(0.0) < u(0.5)
    d = np.array([-1.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 1.0])
    slopes = u.grad(d)
    assert np.all(slopes > 0), slopes
    assert np.all(np.diff(u(d)) > 0)


@pytest.mark.parametrize("name,params", SPECS, ids=IDS)
def test_torch_autograd_matches_analytic_grad(name, params):
    u = get_utility(name, **params)
    d = torch.tensor([-0.9, -0.3, -1e-4, 0.0, 1e-4, 0.2, 0.7, 1.0], dtype=torch.float64, requires_grad=True)
    out = u(d)
    assert out.dtype == torch.float64 and out.shape == d.shape
    out.sum().backward()
    np.testing.assert_allclose(d.grad.numpy(), u.grad(d.detach().numpy()), rtol=1e-10, atol=1e-12)
    # numpy and torch give the same values
    np.testing.assert_allclose(out.detach().numpy(), u(d.detach().numpy()), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,params", SPECS, ids=IDS)
def test_grad_and_hess_match_finite_differences(name, params):
    u = get_utility(name, **params)
    d = np.array([-0.7, -0.2, 0.05, 0.3, 0.9])
    h = 1e-6
    np.testing.assert_allclose(u.grad(d), (u(d + h) - u(d - h)) / (2 * h), rtol=1e-6)
    np.testing.assert_allclose(u.hess(d), (u.grad(d + h) - u.grad(d - h)) / (2 * h), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name,params", [s for s in SPECS if s[0] not in ("logsigmoid",)], ids=lambda x: str(x))
def test_bounded_utilities_are_c1_at_zero_and_vanish_there(name, params):
    u = get_utility(name, **params)
    assert u.needs_bounded
    assert u(0.0) == 0.0
    left, right = u.grad(-1e-12), u.grad(1e-12)
    assert right == pytest.approx(left, rel=1e-9)
    assert u.slope_at_zero == pytest.approx(right, rel=1e-9)


@pytest.mark.parametrize("name,params", [s for s in SPECS if s != ("power", {"g": 2.0})], ids=lambda x: str(x))
def test_concave_on_reachable_range(name, params):
    u = get_utility(name, **params)
    assert u.concave
    d = np.linspace(-1.0, 1.0, 2001)
    slopes = u.grad(d)
    assert np.all(np.diff(slopes) <= 1e-12)
    # midpoint concavity on random pairs
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (2, 500))
    assert np.all(u((a + b) / 2) >= (u(a) + u(b)) / 2 - 1e-12)


def test_hand_values():
    eps = DEFAULT_EPS
    log = get_utility("log")
    assert log(0.5) == pytest.approx(math.log(0.5 + eps) - math.log(eps))
    assert log(-0.5) == pytest.approx(-0.5 / eps)  # linear continuation with slope 1/eps
    assert log.grad(-0.5) == pytest.approx(1 / eps)
    inv = get_utility("-1/x")
    assert inv(0.4) == pytest.approx(1 / eps - 1 / (0.4 + eps))
    assert inv(-0.2) == pytest.approx(-0.2 / eps**2)
    assert inv.grad(0.4) == pytest.approx(1 / (0.4 + eps) ** 2)
    p = get_utility("power", g=0.5, eps=0.01)
    assert p(0.25) == pytest.approx(math.sqrt(0.26) - math.sqrt(0.01))
    assert p(-0.25) == pytest.approx(-0.25 * 0.5 / math.sqrt(0.01))
    npow = get_utility("neg_power", g=0.5)
    assert npow(0.5) == pytest.approx(eps**-0.5 - (0.5 + eps) ** -0.5)
    assert npow.grad(-1.0) == pytest.approx(0.5 * eps**-1.5)
    lin = get_utility("x")
    assert lin(-0.3) == -0.3 and lin.grad(0.7) == 1.0
    # scalar in, float out; arrays keep their shape
    assert isinstance(log(0.3), float)
    assert log(np.zeros((2, 3))).shape == (2, 3)
    assert log(np.array([0, 1])).dtype == np.float64  # integer arrays are promoted


def test_logsigmoid_numerics():
    u = get_utility("logsigmoid")
    assert u(0.0) == pytest.approx(-math.log(2))
    assert u.grad(0.0) == pytest.approx(0.5)
    assert not u.needs_bounded
    big = np.array([-1000.0, -50.0, 50.0, 1000.0])
    vals = u(big)
    assert np.all(np.isfinite(vals))
    np.testing.assert_allclose(vals, [-1000.0, -50.0, -math.exp(-50), 0.0], rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(u.grad(big), [1.0, 1.0, math.exp(-50), 0.0], rtol=1e-9, atol=1e-300)
    s4 = get_utility("logsigmoid", scale=4)
    assert s4(0.25) == pytest.approx(-math.log1p(math.exp(-1.0)))
    t = torch.tensor([-1000.0, 0.0, 1000.0], requires_grad=True)
    s4(t).sum().backward()
    assert torch.all(torch.isfinite(t.grad))
    assert t.grad.tolist() == pytest.approx([4.0, 2.0, 0.0])


def test_torch_keeps_dtype_and_has_no_nan_gradients_below_zero():
    for name, params in SPECS:
        u = get_utility(name, **params)
        t = torch.linspace(-1.0, 1.0, 11, dtype=torch.float32, requires_grad=True)
        out = u(t)
        assert out.dtype == torch.float32
        out.sum().backward()
        assert torch.all(torch.isfinite(t.grad)) and torch.all(t.grad > 0), (name, t.grad)


def test_aliases_resolve_to_canonical_families():
    assert get_utility("-1/x") == get_utility("neg_power", g=1)
    assert get_utility("inv") == get_utility("x_inv") == get_utility("neg_power", g=1.0, eps=DEFAULT_EPS)
    assert get_utility("x") == get_utility("linear")
    assert get_utility("x2") == get_utility("power", g=2)
    assert get_utility(" LOG ").name == "log"
    inv = get_utility("inv")
    assert inv.name == "neg_power" and inv.params == {"g": 1.0, "eps": DEFAULT_EPS}
    assert get_utility(inv.name, **inv.params) == inv
    assert hash(inv) == hash(get_utility("-1/x"))
    assert set(UTILITIES) >= {"logsigmoid", "linear", "x", "power", "log", "neg_power", "inv", "-1/x"}


def test_power_above_one_is_flagged_convex():
    u = get_utility("power", g=2)
    assert not u.concave
    assert get_utility("power", g=1).concave


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match="Did you mean 'logsigmoid'") as exc:
        get_utility("logsigmod")
    assert "neg_power" in str(exc.value)  # lists the valid names
    with pytest.raises(ValueError, match="unknown utility"):
        get_utility("cubic")


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("power", {}, "needs parameter 'g'"),
        ("power", {"g": 0}, "finite number > 0"),
        ("power", {"g": -1}, "finite number > 0"),
        ("neg_power", {"g": float("nan")}, "finite number > 0"),
        ("log", {"eps": 0.0}, "finite number > 0"),
        ("log", {"eps": "0.1"}, "finite number > 0"),
        ("logsigmoid", {"scale": True}, "finite number > 0"),
        ("log", {"g": 1}, "no parameter 'g'"),
        ("linear", {"eps": 0.1}, "no parameter 'eps'"),
        ("inv", {"g": 2}, "fixes g=1"),
    ],
)
def test_bad_parameters(name, params, match):
    with pytest.raises(ValueError, match=match):
        get_utility(name, **params)


def test_utility_from_spec():
    assert utility_from_spec("log") == get_utility("log")
    assert utility_from_spec({"name": "power", "g": 0.5}) == get_utility("power", g=0.5)
    assert utility_from_spec({"name": "power", "params": {"g": 0.5, "eps": 0.01}}) == get_utility(
        "power", g=0.5, eps=0.01
    )
    u = get_utility("inv")
    assert utility_from_spec(u) is u
    assert utility_from_spec(u.spec()) == u
    with pytest.raises(ValueError, match="'name'"):
        utility_from_spec({"g": 0.5})
    with pytest.raises(ValueError):
        utility_from_spec({"name": "power", "g": 0.5, "params": {"g": 0.5}})
    with pytest.raises(ValueError):
        utility_from_spec(3)
    assert isinstance(repr(u), str) and "neg_power" in repr(u)
    assert isinstance(u, Utility)


@pytest.mark.parametrize("name,params", SPECS, ids=IDS)
def test_misordered_pair_is_pushed_the_right_way(name, params):
    # a mis-ordered pair (the preferred completion scores lower) on the bounded reward scale the model trains on:
    # one gradient step on -U(sigmoid(z_better) - sigmoid(z_worse)) raises z_better and lowers z_worse
    u = get_utility(name, **params)
    z = torch.tensor([-1.0, 1.5], dtype=torch.float64, requires_grad=True)  # [better, worse]
    r = torch.sigmoid(z)
    assert (r[0] - r[1]).item() < 0
    (-u(r[0] - r[1])).backward()
    assert z.grad[0] < 0 < z.grad[1]
