import numpy as np
import pytest
import torch

from rlhfsim.reward.ensemble import AGGREGATORS, aggregate, disagreement


@pytest.fixture
def members():
    return torch.randn(5, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def test_formulas_torch(members):
    R = members
    torch.testing.assert_close(aggregate(R, "mean"), R.mean(0))
    torch.testing.assert_close(aggregate(R, "wco"), R.min(0).values)
    var_pop = ((R - R.mean(0)) ** 2).mean(0)
    torch.testing.assert_close(aggregate(R, "uwo", lam=0.3), R.mean(0) - 0.3 * var_pop)
    torch.testing.assert_close(aggregate(R, "uwo"), R.mean(0) - 0.1 * var_pop)  # default lam
    torch.testing.assert_close(aggregate(R, "median"), torch.from_numpy(np.median(R.numpy(), axis=0)))
    torch.testing.assert_close(disagreement(R), var_pop.sqrt())


def test_formulas_numpy_even_members():
    R = np.random.default_rng(1).normal(size=(4, 9))
    for method, ref in [
        ("mean", R.mean(0)),
        ("wco", R.min(0)),
        ("uwo", R.mean(0) - 0.1 * R.var(0, ddof=0)),
        ("median", np.median(R, axis=0)),  # even M: mean of the two middle members
    ]:
        out = aggregate(R, method, lam=0.1)
        assert isinstance(out, np.ndarray) and out.shape == (9,)
        np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_allclose(disagreement(R), R.std(0, ddof=0))


@pytest.mark.parametrize("method", sorted(AGGREGATORS))
def test_single_member_reduces_to_member(method):
    r = torch.randn(1, 11)
    torch.testing.assert_close(aggregate(r, method, lam=0.5), r[0])
    np.testing.assert_allclose(aggregate(r.numpy(), method, lam=0.5), r[0].numpy())
    assert torch.all(disagreement(r) == 0)


def test_registry_errors_and_grad():
    assert set(AGGREGATORS) == {"mean", "wco", "uwo", "median"}
    with pytest.raises(ValueError, match="median"):
        aggregate(torch.zeros(2, 3), "max")
    with pytest.raises(ValueError):
        aggregate(torch.zeros(3), "mean")
    with pytest.raises(ValueError):
        aggregate(torch.zeros(2, 3), "uwo", lam=-1.0)
    R = torch.randn(3, 4, requires_grad=True)
    aggregate(R, "uwo").sum().backward()
    assert R.grad is not None and R.grad.shape == (3, 4)
    # integer input is promoted, not truncated
    np.testing.assert_allclose(aggregate(np.array([[1, 2], [2, 4]]), "mean"), [1.5, 3.0])


def test_ensemble_metrics_disagreement_predicts_error():
    from rlhfsim.reward.ensemble import ensemble_diagnostics, ensemble_metrics

    rng = np.random.default_rng(0)
    N = 200
    gold = rng.uniform(size=N)
    types = np.where(np.arange(N) % 2 == 0, "open", "closed")
    noise = rng.uniform(0.0, 1.0, size=N)  # per-completion uncertainty: members scatter AND the mean errs by it
    sign = rng.choice([-1.0, 1.0], size=N)  # the direction the members' mean errs in
    members = gold[None, :] + noise[None, :] * (sign[None, :] + 0.5 * rng.normal(size=(5, N)))
    m = ensemble_metrics(members, gold, types)
    np.testing.assert_allclose(m["rm/ens_std"], members.std(0).mean())
    np.testing.assert_allclose(m["rm/ens_std_open"], members[:, types == "open"].std(0).mean())
    assert m["rm/ens_err_corr"] > 0.5 and m["rm/ens_err_corr_open"] > 0.5 and m["rm/ens_err_corr_closed"] > 0.5
    # disagreement unrelated to the error: no correlation to speak of
    unrelated = (
        gold[None, :] + rng.normal(size=(1, N)) * 0.3 + rng.uniform(size=N)[None, :] * rng.normal(size=(5, N)) * 0.01
    )
    assert abs(ensemble_metrics(unrelated, gold, types)["rm/ens_err_corr"]) < 0.25
    # one member: no disagreement, the correlations are undefined (NaN, never 0)
    one = ensemble_metrics(members[:1], gold, types)
    assert one["rm/ens_std"] == 0 and np.isnan(one["rm/ens_err_corr"])
    # logits -> bounded rewards, aggregated as PPO sees them
    d = ensemble_diagnostics(members, gold, types, bounded=True, method="wco", lam=0.1)
    R = 1 / (1 + np.exp(-members))
    np.testing.assert_allclose(d["rm/ens_std"], R.std(0).mean())
    with pytest.raises(ValueError, match="N must agree"):
        ensemble_metrics(members, gold[:-1], types)


def test_standardised_wco_uwo_ignore_member_offsets_and_scales():
    from rlhfsim.reward.ensemble import member_scale

    rng = np.random.default_rng(0)
    base = rng.normal(size=(3, 50))  # three members that agree up to noise
    ref = rng.normal(size=(3, 40))
    a, c = np.array([1.0, 4.0, 0.25]), np.array([0.0, -30.0, 12.0])  # arbitrary member scales and offsets
    moved, moved_ref = a[:, None] * base + c[:, None], a[:, None] * ref + c[:, None]
    for method in ("wco", "uwo"):
        s0, s1 = member_scale(ref), member_scale(moved_ref)
        y0 = (aggregate(base, method, 0.1, s0) - s0[0].mean()) / s0[1].mean()
        y1 = (aggregate(moved, method, 0.1, s1) - s1[0].mean()) / s1[1].mean()
        np.testing.assert_allclose(y0, y1, atol=1e-10)  # the same aggregate on the standardised scale
    # raw WCO is decided by the offsets: the member shifted by -30 is always the minimum
    np.testing.assert_array_equal(aggregate(moved, "wco", 0.1), moved[1])


def test_standardised_uwo_lambda_is_in_standardised_units():
    from rlhfsim.reward.ensemble import member_scale

    R = np.array([[0.0, 1.0, 2.0, 3.0], [10.0, 30.0, 50.0, 70.0]])  # member 2 = 10 + 20 * member 1
    mu, sd = member_scale(R)
    z = (R - mu[:, None]) / sd[:, None]
    expect = sd.mean() * (z.mean(0) - 0.5 * z.var(0)) + mu.mean()
    np.testing.assert_allclose(aggregate(R, "uwo", 0.5, (mu, sd)), expect)
    np.testing.assert_allclose(z[0], z[1])  # the members agree after standardisation: no variance penalty at all
    np.testing.assert_allclose(aggregate(R, "uwo", 0.5, (mu, sd)), sd.mean() * z[0] + mu.mean())
    # mean and median ignore the scale; one member is returned as it is
    np.testing.assert_allclose(aggregate(R, "mean", 0.5, (mu, sd)), R.mean(0))
    np.testing.assert_allclose(aggregate(R[:1], "wco", 0.5, member_scale(R[:1])), R[0])
    with pytest.raises(ValueError, match="members"):
        aggregate(R, "wco", 0.1, (mu[:1], sd[:1]))
