import math

import numpy as np
import pytest
import torch

from rlhfsim.diagnostics.advantage import advantage_fidelity, kl_share, ppo_signal_metrics, signal_to_noise, within_prompt_rank_corr


def _batch(seed=0, B=32, T=12):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, T + 1, B)
    mask = (np.arange(T)[None, :] < lengths[:, None]).astype(float)
    adv = rng.normal(size=(B, T)) + rng.normal(size=(B, 1))
    return adv, mask, rng


def test_fidelity_perfect_when_equal():
    adv, mask, _ = _batch()
    m = advantage_fidelity(adv, adv, mask)
    assert m["adv/gold_corr"] == pytest.approx(1.0)
    assert m["adv/gold_corr_seq"] == pytest.approx(1.0)
    assert m["adv/sign_agree"] == 1.0 and m["adv/sign_agree_seq"] == 1.0


def test_fidelity_drops_with_noise_and_ignores_padding():
    adv, mask, rng = _batch(1)
    noisy = adv + rng.normal(0, 1.0, adv.shape)
    m = advantage_fidelity(noisy, adv, mask)
    assert 0.3 < m["adv/gold_corr"] < 0.95
    assert 0.5 < m["adv/sign_agree"] < 1.0
    very = advantage_fidelity(adv + rng.normal(0, 5.0, adv.shape), adv, mask)
    assert very["adv/gold_corr"] < m["adv/gold_corr"]
    # garbage in padded positions must not change anything
    junk = np.where(mask > 0, adv, 1e6)
    assert advantage_fidelity(junk, adv, mask)["adv/gold_corr"] == pytest.approx(1.0)
    assert advantage_fidelity(-adv, adv, mask)["adv/gold_corr"] == pytest.approx(-1.0)


def test_fidelity_torch_and_constant():
    adv, mask, _ = _batch(2)
    t = torch.tensor(adv, requires_grad=True)
    m = advantage_fidelity(t, torch.tensor(adv), torch.tensor(mask))
    assert m["adv/gold_corr"] == pytest.approx(1.0)
    c = advantage_fidelity(np.full_like(adv, 0.3), adv, np.ones_like(mask))  # equal lengths: constant sums
    assert math.isnan(c["adv/gold_corr"]) and math.isnan(c["adv/gold_corr_seq"])


def test_within_prompt_rank_corr():
    gold = np.array([[0.1, 0.5, 0.9], [3.0, 2.0, 1.0], [1.0, 1.0, 1.0]])
    proxy = np.array([[1.0, 2.0, 30.0], [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]])
    # row 0: rho 1; row 1: rho -1; row 2 constant gold: skipped
    assert within_prompt_rank_corr(proxy, gold) == pytest.approx(0.0)
    assert within_prompt_rank_corr(proxy[:1], gold[:1]) == pytest.approx(1.0)
    assert math.isnan(within_prompt_rank_corr(proxy[2:], gold[2:]))
    # hand value: proxy (1,3,2) vs gold (1,2,3): rho = 1 - 6*2/(3*8) = 0.5
    assert within_prompt_rank_corr([[1.0, 3.0, 2.0]], [[1.0, 2.0, 3.0]]) == pytest.approx(0.5)


def test_signal_to_noise():
    B, T = 8, 5
    mask = np.ones((B, T))
    seq = np.arange(B, dtype=float)[:, None] * np.ones((1, T))
    assert signal_to_noise(seq, mask) == math.inf  # pure per-sequence signal
    tok = np.tile(np.arange(T, dtype=float), (B, 1))
    assert signal_to_noise(tok, mask) == pytest.approx(0.0)  # same pattern in every sequence
    # hand example: s = (0.5, 2.5) -> Var_b = 1; residuals +-0.5 -> within = 0.25 -> SNR 4
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert signal_to_noise(a, np.ones((2, 2))) == pytest.approx(4.0)
    assert signal_to_noise(10 * a - 7, np.ones((2, 2))) == pytest.approx(4.0)  # scale-free
    assert math.isnan(signal_to_noise(np.zeros((2, 2)), np.ones((2, 2))))


def test_kl_share():
    score = np.array([1.0, -1.0])
    ns = np.array([[-0.5, -0.5, 9.0], [-1.0, 0.0, 9.0]])
    mask = np.array([[1, 1, 0], [1, 1, 0]])
    assert kl_share(score, ns, mask) == pytest.approx(2.0 / 4.0)
    assert kl_share(score, np.zeros_like(ns), mask) == 0.0
    assert math.isnan(kl_share(np.zeros(2), np.zeros_like(ns), mask))


def _rollout(seed=0, B=48, T=10):
    """A fake PPO batch: scores, policy/reference logprobs, values and a ragged response mask."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    logprobs = -torch.rand(B, T, generator=g) * mask
    ref = -torch.rand(B, T, generator=g) * mask
    values = 0.1 * torch.randn(B, T, generator=g) * mask
    gold = torch.rand(B, generator=g)
    return gold, logprobs, ref, values, mask, g


def _signal(score, gold, logprobs, ref, values, mask, beta=0.05):
    from rlhfsim.ppo import core

    rewards, _, _ = core.compute_rewards(score, logprobs, ref, mask, beta, "k1")
    adv, _ = core.compute_gae(rewards, values, mask, 1.0, 0.95)  # what PPO computes from the proxy
    return ppo_signal_metrics(adv, score, gold, logprobs, ref, values, mask, beta, "k1", 1.0, 0.95)


def test_ppo_fidelity_is_one_when_proxy_is_gold_and_falls_with_noise():
    gold, logprobs, ref, values, mask, g = _rollout()
    same = _signal(gold.clone(), gold, logprobs, ref, values, mask)
    assert same["adv/gold_corr"] == pytest.approx(1.0) and same["adv/sign_agree"] == 1.0
    assert same["adv/gold_corr_seq"] == pytest.approx(1.0)
    corr, sign = [same["adv/gold_corr"]], [same["adv/sign_agree"]]
    noise = torch.randn(gold.shape, generator=g)
    for sd in (0.1, 0.5, 3.0):  # proxy = gold + noise: the same noise draw, scaled up
        m = _signal(gold + sd * noise, gold, logprobs, ref, values, mask)
        corr.append(m["adv/gold_corr"])
        sign.append(m["adv/sign_agree"])
    assert all(a > b for a, b in zip(corr, corr[1:])), corr
    assert sign[-1] < 0.9 and corr[-1] < 0.6
    # a proxy that reverses gold reverses the advantages' score part: correlation turns negative
    assert _signal(1.0 - gold, gold, logprobs, ref, values, mask, beta=0.0)["adv/gold_corr"] < -0.5


def test_ppo_signal_metrics_scale_fields():
    gold, logprobs, ref, values, mask, _ = _rollout(1)
    m = _signal(gold, gold, logprobs, ref, values, mask, beta=0.0)
    assert m["adv/kl_share"] == 0.0  # no KL penalty: the score is the whole reward
    assert m["adv/std_raw"] > 0 and m["adv/snr"] > 0
    big = _signal(gold, gold, logprobs, ref, values, mask, beta=100.0)
    assert big["adv/kl_share"] > 0.9  # a huge beta: the KL penalty dominates the reward magnitude
