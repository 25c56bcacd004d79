"""Tests of the pure PPO math in rlhfsim.ppo.core (fast, CPU, float64 where exactness matters)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rlhfsim.ppo import core


def ragged_mask(lengths: list[int], T: int, left: bool = False) -> torch.Tensor:
    """[B, T] float mask with lengths[b] real tokens, right-padded (or left-padded)."""
    t = torch.arange(T)
    L = torch.tensor(lengths)[:, None]
    m = (t[None, :] >= T - L) if left else (t[None, :] < L)
    return m.double()


# ---------------------------------------------------------------------------- logits -> per-token


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_logprobs_from_logits_matches_log_softmax(dtype):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 11, generator=g) * 3).to(dtype)
    labels = torch.randint(0, 11, (3, 5), generator=g)
    got = core.logprobs_from_logits(logits, labels)
    want = F.log_softmax(logits.double(), -1).gather(-1, labels[..., None]).squeeze(-1)
    assert got.shape == (3, 5)
    tol = 5e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got.double(), want, atol=tol, rtol=0)


def test_entropy_from_logits():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 7, generator=g, dtype=torch.float64) * 2
    want = torch.distributions.Categorical(logits=logits).entropy()
    torch.testing.assert_close(core.entropy_from_logits(logits), want)
    # a uniform distribution has entropy log V; a near-one-hot one has entropy ~ 0 without nan
    assert core.entropy_from_logits(torch.zeros(1, 1, 7)).item() == pytest.approx(math.log(7), abs=1e-6)
    peaked = torch.tensor([[[0.0, -1e9, -1e9]]])
    assert core.entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------- masked statistics


def test_masked_stats_ignore_padding_even_if_junk():
    x = torch.tensor([[1.0, 2.0, 3.0, float("inf")], [4.0, float("nan"), 0.0, 0.0]])
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    assert core.masked_sum(x, m).item() == 10.0
    assert core.masked_mean(x, m).item() == 2.5
    torch.testing.assert_close(core.masked_mean(x, m, dim=-1), torch.tensor([2.0, 4.0]))
    assert core.masked_var(x, m, unbiased=False).item() == pytest.approx(1.25)
    assert core.masked_var(x, m).item() == pytest.approx(1.25 * 4 / 3)
    # empty rows / masks give 0 rather than nan
    assert core.masked_mean(x, torch.zeros_like(m)).item() == 0.0
    torch.testing.assert_close(core.masked_mean(x, m * torch.tensor([[1.0], [0.0]]), dim=-1), torch.tensor([2.0, 0.0]))


def test_whiten_mean_zero_std_one_over_mask_and_zero_outside():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 9, generator=g, dtype=torch.float64) * 5 + 3
    m = ragged_mask([9, 4, 1, 0, 7, 2], 9)
    x = torch.where(m.bool(), x, torch.full_like(x, 1e6))  # padding junk must not leak into the statistics
    w = core.whiten(x, m)
    sel = w[m.bool()]
    assert sel.mean().item() == pytest.approx(0.0, abs=1e-9)
    assert sel.std(unbiased=True).item() == pytest.approx(1.0, abs=1e-6)
    assert torch.all(w[~m.bool()] == 0)
    # without shifting, the mean is kept and only the scale changes
    w2 = core.whiten(x, m, shift_mean=False)
    assert w2[m.bool()].mean().item() == pytest.approx(x[m.bool()].mean().item(), abs=1e-9)
    assert w2[m.bool()].std().item() == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------- KL estimators


def test_kl_penalty_exact_values():
    logp = torch.tensor([[-1.0, -2.0, -0.5]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0, -0.5]], dtype=torch.float64)
    d = logp - ref  # [0.5, -1, 0]
    torch.testing.assert_close(core.kl_penalty(logp, ref, "k1"), d)
    torch.testing.assert_close(core.kl_penalty(logp, ref, "k2"), 0.5 * d**2)
    torch.testing.assert_close(core.kl_penalty(logp, ref, "k3"), torch.exp(-d) - 1 + d)


def test_kl_estimators_monte_carlo_match_analytic_kl():
    g = torch.Generator().manual_seed(3)
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    q = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=torch.float64)
    kl_true = (p * (p / q).log()).sum().item()  # KL(p || q) ~ 0.49 nats
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)[None, :]  # [1, N] tokens ~ p
    logp, ref = p.log()[x], q.log()[x]
    for est in ("k1", "k3"):
        k = core.kl_penalty(logp, ref, est)
        se = k.std().item() / math.sqrt(k.numel())
        assert abs(k.mean().item() - kl_true) < 5 * se, est
    k3 = core.kl_penalty(logp, ref, "k3")
    assert torch.all(k3 >= 0)
    assert torch.any(core.kl_penalty(logp, ref, "k1") < 0)  # k1 is unbiased but not pointwise >= 0
    # swapping the arguments estimates a different divergence: the test can tell them apart
    assert abs(core.kl_penalty(ref, logp, "k1").mean().item() - kl_true) > 0.5


def test_kl_penalty_unknown_estimator():
    with pytest.raises(ValueError, match="k1.*k2.*k3"):
        core.kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


# ---------------------------------------------------------------------------- rewards


def test_compute_rewards_score_on_last_real_token():
    logp = torch.tensor(
        [[-1.0, -1.0, -1.0, 0.0], [-2.0, -2.0, -2.0, -2.0], [0.0, 0.0, 0.0, 0.0], [0.0, -1.0, -1.0, 0.0]]
    )
    ref = torch.full_like(logp, -1.5)
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    scores = torch.tensor([10.0, 20.0, 30.0, 40.0])
    beta = 0.1
    rewards, kl, non_score = core.compute_rewards(scores, logp, ref, m, beta, "k1")
    want_kl = (logp - ref) * m
    torch.testing.assert_close(kl, want_kl)
    torch.testing.assert_close(non_score, -beta * want_kl)
    bonus = torch.zeros_like(logp)
    bonus[0, 2], bonus[1, 3], bonus[3, 2] = 10.0, 20.0, 40.0  # right-padded, full, (empty: dropped), left+right padded
    torch.testing.assert_close(rewards, -beta * want_kl + bonus)
    assert torch.all(rewards[m == 0] == 0)
    with pytest.raises(ValueError):
        core.compute_rewards(scores, logp, ref, m, beta, "nope")


# ---------------------------------------------------------------------------- GAE


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.99, 0.9), (0.5, 1.0), (1.0, 1.0), (0.9, 0.0), (0.0, 0.7)])
@pytest.mark.parametrize("left", [False, True])
def test_gae_vectorised_matches_loop(gamma, lam, left):
    g = torch.Generator().manual_seed(4)
    B, T = 7, 12
    lengths = [12, 1, 0, 5, 11, 3, 8]
    m = ragged_mask(lengths, T, left=left)
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    # junk on padding must change nothing
    rewards_j = torch.where(m.bool(), rewards, torch.full_like(rewards, float("nan")))
    values_j = torch.where(m.bool(), values, torch.full_like(values, float("inf")))
    adv, ret = core.compute_gae(rewards_j, values_j, m, gamma, lam)
    adv_ref, ret_ref = core.compute_gae_reference(rewards, values, m, gamma, lam)
    torch.testing.assert_close(adv, adv_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ret, ret_ref, atol=1e-10, rtol=1e-10)
    assert torch.all(adv[m == 0] == 0) and torch.all(ret[m == 0] == 0)
    torch.testing.assert_close(ret, (adv + values) * m)


def test_gae_reference_hand_computed():
    # one row, 3 real tokens then padding: gamma=0.5, lam=0.5
    r = torch.tensor([[1.0, 0.0, 2.0, 0.0]], dtype=torch.float64)
    v = torch.tensor([[0.5, 1.0, 1.5, 0.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    d2 = 2.0 - 1.5  # last real token: V after it is 0
    d1 = 0.0 + 0.5 * 1.5 - 1.0
    d0 = 1.0 + 0.5 * 1.0 - 0.5
    a2, a1 = d2, d1 + 0.25 * d2
    a0 = d0 + 0.25 * a1
    want = torch.tensor([[a0, a1, a2, 0.0]], dtype=torch.float64)
    for fn in (core.compute_gae, core.compute_gae_reference):
        adv, _ = fn(r, v, m, 0.5, 0.5)
        torch.testing.assert_close(adv, want)


def test_gae_lam0_is_one_step_td():
    g = torch.Generator().manual_seed(5)
    m = ragged_mask([6, 3, 1], 6)
    r, v = torch.randn(3, 6, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)
    gamma = 0.9
    adv, _ = core.compute_gae(r, v, m, gamma, 0.0)
    next_v = F.pad((v * m)[:, 1:], (0, 1))
    torch.testing.assert_close(adv, (r + gamma * next_v - v) * m)


def test_gae_lam1_gamma1_returns_are_reward_to_go():
    g = torch.Generator().manual_seed(6)
    m = ragged_mask([6, 3, 1, 0], 6)
    r, v = torch.randn(4, 6, generator=g, dtype=torch.float64), torch.randn(4, 6, generator=g, dtype=torch.float64)
    rm = r * m
    to_go = rm.flip(-1).cumsum(-1).flip(-1) * m  # sum_{k >= t} r_k over real tokens
    _, ret = core.compute_gae(r, v, m, 1.0, 1.0)
    torch.testing.assert_close(ret, to_go)


def test_gae_rejects_bad_gamma_lam():
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError):
        core.compute_gae(z, z, z + 1, 1.5, 0.9)
    with pytest.raises(ValueError):
        core.compute_gae(z, z, z + 1, 1.0, -0.1)


# ---------------------------------------------------------------------------- losses


def test_policy_loss_at_ratio_one():
    g = torch.Generator().manual_seed(7)
    old = -torch.rand(3, 5, generator=g)
    logp = old.clone().requires_grad_(True)
    adv = torch.randn(3, 5, generator=g)
    m = ragged_mask([5, 2, 4], 5).float()
    loss, stats = core.policy_loss(logp, old, adv, m, 0.2)
    assert stats["policy/clipfrac"] == 0.0
    assert stats["policy/approxkl"] == 0.0
    assert stats["val/ratio"] == pytest.approx(1.0)
    assert loss.item() == pytest.approx(-(adv * m).sum().item() / m.sum().item(), abs=1e-6)
    assert stats["loss/policy"] == pytest.approx(loss.item())
    assert set(stats) == {"loss/policy", "policy/approxkl", "policy/clipfrac", "val/ratio"}
    assert all(isinstance(v, float) for v in stats.values())
    loss.backward()
    # descending the loss raises logp where A > 0, lowers it where A < 0; padding gets no gradient
    real = m.bool()
    assert torch.all(torch.sign(-logp.grad[real]) == torch.sign(adv[real]))
    assert torch.all(logp.grad[~real] == 0)


def test_policy_loss_clipping():
    old = torch.zeros(1, 4)
    # ratios 1.5, 1.5, 0.5, 0.5 with A = +1, -1, +1, -1
    logp = torch.log(torch.tensor([[1.5, 1.5, 0.5, 0.5]])).requires_grad_(True)
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    m = torch.ones(1, 4)
    loss, stats = core.policy_loss(logp, old, adv, m, 0.2)
    # token 0: ratio above 1+eps with A>0 -> clipped (no gradient); token 3: below 1-eps with A<0 -> clipped
    # tokens 1, 2: the unclipped term is the pessimistic one -> gradient flows
    assert stats["policy/clipfrac"] == pytest.approx(0.5)
    want = (-1.2 + 1.5 - 0.5 + 0.8) / 4
    assert loss.item() == pytest.approx(want, abs=1e-6)
    loss.backward()
    assert logp.grad[0, 0] == 0 and logp.grad[0, 3] == 0
    assert logp.grad[0, 1] > 0 and logp.grad[0, 2] < 0
    assert stats["val/ratio"] == pytest.approx(1.0, abs=1e-6)
    assert stats["policy/approxkl"] == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2, abs=1e-6)


def test_value_loss_clipping_by_hand():
    old = torch.zeros(1, 4)
    R = torch.ones(1, 4)
    # v=0.1: inside the clip; v=0.5: moved past old+0.2 towards R -> clipped branch (0.2-1)^2 wins;
    # v=-0.5: moved away, unclipped error is larger; v=9: masked out
    v = torch.tensor([[0.1, 0.5, -0.5, 9.0]], requires_grad=True)
    m = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    loss, stats = core.value_loss(v, old, R, m, 0.2)
    per_tok = [0.81, 0.64, 2.25]
    assert loss.item() == pytest.approx(0.5 * sum(per_tok) / 3, abs=1e-6)
    assert stats["val/clipfrac"] == pytest.approx(1 / 3)
    assert stats["val/vpred"] == pytest.approx(0.1 / 3, abs=1e-6)
    assert stats["val/error"] == pytest.approx((0.81 + 0.25 + 2.25) / 3, abs=1e-6)
    assert stats["loss/value"] == pytest.approx(loss.item())
    loss.backward()
    assert v.grad[0, 1] == 0 and v.grad[0, 3] == 0
    assert v.grad[0, 0] < 0 and v.grad[0, 2] < 0  # both below R: descent pushes them up
    # without clipping it is plain 0.5 * MSE
    loss_nc, stats_nc = core.value_loss(v.detach(), old, R, m, None)
    assert loss_nc.item() == pytest.approx(0.5 * (0.81 + 0.25 + 2.25) / 3, abs=1e-6)
    assert stats_nc["val/clipfrac"] == 0.0


def test_value_clipfrac_counts_no_rounding_ties():
    """Values inside the clip range are never counted as clipped. With v_old + clip(v - v_old) the round trip
    differs from v in the last bit for some such tokens (~1% here), and the clipped branch then 'wins' by a rounding."""
    g = torch.Generator().manual_seed(3)
    old = 0.01 + 0.04 * torch.rand(64, 16, generator=g)  # small values, as early in a run
    v = old * (2 + torch.rand(64, 16, generator=g))  # v > 2 v_old: v - v_old is inexact; |v - v_old| < 0.1 < c
    R = 0.01 * torch.rand(64, 16, generator=g)
    m = torch.ones(64, 16)
    assert core.value_loss(v, old, R, m, 0.2)[1]["val/clipfrac"] == 0.0
    # where clipping bites (moved 0.3 towards R = v_old + 1) every token counts
    assert core.value_loss(old + 0.3, old, old + 1, m, 0.2)[1]["val/clipfrac"] == 1.0


def test_explained_variance():
    g = torch.Generator().manual_seed(8)
    m = ragged_mask([5, 3], 5)
    R = torch.randn(2, 5, generator=g, dtype=torch.float64)
    assert core.explained_variance(R, R, m) == pytest.approx(1.0)
    assert core.explained_variance(torch.zeros_like(R), R, m) == pytest.approx(0.0, abs=1e-12)
    assert core.explained_variance(-R, R, m) < 0
    assert math.isnan(core.explained_variance(R, torch.ones_like(R), m))
