import math

import numpy as np
import pytest
import torch

from rlhfsim.diagnostics.advantage import (
    advantage_fidelity,
    fidelity_metrics,
    gold_token_advantages,
    group_mean,
    kl_share,
    pair_fidelity,
    pg_cosine,
    signal_to_noise,
    within_prompt_rank_corr,
)


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


def _ppo_fidelity(score, gold, logprobs, ref, mask, ids, values=None, beta=0.05, gamma=1.0, lam=0.95):
    """What PPO applies (whitened GAE from the proxy) against the gold advantage (no critic), as the trainer does."""
    from rlhfsim.ppo import core

    rewards, _, non_score = core.compute_rewards(score, logprobs, ref, mask, beta, "k1")
    values = torch.zeros_like(mask) if values is None else values
    adv, _ = core.compute_gae(rewards, values, mask, gamma, lam)
    adv = core.whiten(adv, mask)
    gold_adv = gold_token_advantages(gold, non_score, mask, gamma, ids)
    return fidelity_metrics(adv, gold_adv, mask, score, non_score, ids)


def plain_gold_advantages(gold, non_score, mask, gamma, ids):
    B, T = mask.shape
    ret = np.zeros((B, T))
    for b in range(B):
        idx = [t for t in range(T) if mask[b, t] > 0]
        acc = 0.0
        for t in reversed(idx):
            acc = float(non_score[b, t]) + (float(gold[b]) if t == idx[-1] else 0.0) + gamma * acc
            ret[b, t] = acc
    first = [ret[b, [t for t in range(T) if mask[b, t] > 0][0]] for b in range(B)]
    base = [np.mean([first[j] for j in range(B) if ids[j] == ids[b]]) for b in range(B)]
    return np.array([[ret[b, t] - base[b] if mask[b, t] > 0 else 0.0 for t in range(T)] for b in range(B)])


def test_gold_token_advantages_match_a_plain_loop():
    gold, logprobs, ref, _, mask, g = _rollout(2)
    non_score = -0.1 * (logprobs - ref) * mask
    ids = np.arange(gold.shape[0]) // 4
    for gamma in (1.0, 0.9):
        got = gold_token_advantages(gold, non_score, mask, gamma, ids)
        assert np.allclose(got, plain_gold_advantages(gold, non_score, mask, gamma, ids), atol=1e-6)
    assert np.allclose(group_mean([1.0, 3.0, 5.0, 7.0], [0, 0, 1, 1]), [2.0, 2.0, 6.0, 6.0])


def test_ppo_fidelity_is_one_for_an_affine_proxy_with_a_matching_critic_and_falls_with_noise():
    gold, logprobs, ref, _, mask, g = _rollout()
    ids = np.arange(gold.shape[0]) // 4  # groups of 4 completions per prompt
    # lam 1, no KL term, a critic equal to the proxy's group mean: A = proxy - group mean, whitened
    proxy = 3.0 * gold + 7.0
    crit = torch.as_tensor(group_mean(proxy, ids), dtype=torch.float32)[:, None] * mask
    same = _ppo_fidelity(proxy, gold, logprobs, ref, mask, ids, values=crit, beta=0.0, lam=1.0)
    assert same["adv/gold_corr"] == pytest.approx(1.0, abs=1e-6) and same["adv/sign_agree"] == 1.0
    assert same["adv/gold_corr_seq"] == pytest.approx(1.0, abs=1e-3)  # sums weigh by length: close, not exact
    corr = [same["adv/gold_corr"]]
    noise = torch.randn(gold.shape, generator=g)
    for sd in (0.1, 0.5, 3.0):  # proxy = gold + noise: the same noise draw, scaled up
        corr.append(_ppo_fidelity(gold + sd * noise, gold, logprobs, ref, mask, ids)["adv/gold_corr"])
    assert all(a > b for a, b in zip(corr, corr[1:])), corr
    # a proxy that reverses gold reverses the advantages: correlation turns negative
    assert _ppo_fidelity(1.0 - gold, gold, logprobs, ref, mask, ids, beta=0.0)["adv/gold_corr"] < -0.5


def test_kl_share_is_on_the_centred_score():
    gold, logprobs, ref, _, mask, _ = _rollout(1)
    ids = np.zeros(gold.shape[0], dtype=int)  # one baseline group (PPO, one prompt type)
    m0 = _ppo_fidelity(gold, gold, logprobs, ref, mask, ids, beta=0.0)
    assert m0["adv/kl_share"] == 0.0  # no KL penalty
    a = _ppo_fidelity(gold, gold, logprobs, ref, mask, ids, beta=0.5)["adv/kl_share"]
    b = _ppo_fidelity(gold + 100.0, gold, logprobs, ref, mask, ids, beta=0.5)["adv/kl_share"]
    assert a == pytest.approx(b)  # an offset of the score does not hide the KL term (it did uncentred)
    assert _ppo_fidelity(gold, gold, logprobs, ref, mask, ids, beta=100.0)["adv/kl_share"] > 0.9


@pytest.mark.parametrize("rule", ["grpo", "dr_grpo", "rloo"])
def test_group_fidelity_is_one_for_an_affine_proxy(rule):
    from rlhfsim.optim.core import group_advantages

    gold, _, _, _, mask, g = _rollout(4)
    ids = np.arange(gold.shape[0]) // 4
    gold_adv = group_advantages(gold, 4, rule)[:, None] * mask
    for a, b in ((2.0, -1.0), (0.5, 3.0)):
        adv = group_advantages(a * gold + b, 4, rule)[:, None] * mask
        m = fidelity_metrics(adv, gold_adv, mask, a * gold + b, torch.zeros_like(mask), ids)
        assert m["adv/gold_corr"] == pytest.approx(1.0, abs=1e-4) and m["adv/sign_agree"] == 1.0
    rev = group_advantages(-gold, 4, rule)[:, None] * mask
    assert fidelity_metrics(rev, gold_adv, mask, -gold, torch.zeros_like(mask), ids)["adv/gold_corr"] == pytest.approx(
        -1.0, abs=1e-4
    )


def test_pg_cosine_on_a_linear_policy():
    g = torch.Generator().manual_seed(0)
    B, T, V, H = 6, 4, 5, 3
    x = torch.randn(B, T, H, generator=g)
    w = torch.randn(H, V, generator=g, requires_grad=True)
    y = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T)
    mask[0, 2:] = 0
    logprobs = torch.log_softmax(x @ w, -1).gather(-1, y[..., None]).squeeze(-1)
    a, b = torch.randn(B, T, generator=g), torch.randn(B, T, generator=g)
    assert pg_cosine(logprobs, a, 3.0 * a, mask, [w]) == pytest.approx(1.0)
    assert pg_cosine(logprobs, a, -a, mask, [w]) == pytest.approx(-1.0)
    # against explicit gradients of each objective
    ga = torch.autograd.grad((logprobs * a * mask).sum(), w, retain_graph=True)[0].ravel()
    gb = torch.autograd.grad((logprobs * b * mask).sum(), w, retain_graph=True)[0].ravel()
    assert pg_cosine(logprobs, a, b, mask, [w]) == pytest.approx(float(ga @ gb / (ga.norm() * gb.norm())), rel=1e-5)
    assert np.isnan(pg_cosine(logprobs, a, torch.zeros_like(a), mask, [w]))
    assert w.grad is None  # the optimiser's gradient buffers are untouched


def test_pair_fidelity():
    m = pair_fidelity(np.array([1.0, 0.8, 0.0, 0.5]), np.array([0.0, 0.9, 0.0, 0.1]), np.array([3.0, 1.0, 1.0, 0.0]))
    assert m["adv/pair_agree"] == 0.5 and m["adv/pair_gold_tie"] == 0.25
    assert m["adv/pair_agree_margin"] == pytest.approx(3.0 / 5.0)
    scaled = pair_fidelity(
        np.array([1.0, 0.8, 0.0, 0.5]), np.array([0.0, 0.9, 0.0, 0.1]), 7 * np.array([3.0, 1.0, 1.0, 0.0])
    )
    assert scaled == m  # a positive scale of the proxy margins changes nothing
    assert np.isnan(pair_fidelity(np.array([]), np.array([]), np.array([]))["adv/pair_agree"])


def test_score_only_fidelity_ignores_a_large_kl_term_both_sides_share():
    """RLOO with the KL penalty in the shaped score: the applied and the gold advantage share -beta * KL, so an
    independent-noise proxy still 'agrees' with gold when the KL term is large. With the KL part removed from both
    (advantages from the scores alone), fidelity is 1 for proxy = gold and about 0 (sign agreement ~0.5) for noise."""
    import torch

    from rlhfsim.diagnostics.advantage import advantage_fidelity, score_fidelity
    from rlhfsim.optim.core import group_advantages

    rng = np.random.default_rng(0)
    G, g, T = 512, 4, 6
    B = G * g
    gold = torch.tensor(rng.uniform(0, 1, B))
    kl = torch.tensor(rng.gamma(2.0, 2.0, B))  # sequence KL, spread far wider than the scores
    beta = 0.5
    mask = torch.ones(B, T)
    tok = lambda a: a[:, None] * mask  # noqa: E731  every token carries its row's advantage
    for proxy, want in ((gold.clone(), 1.0), (torch.tensor(rng.uniform(0, 1, B)), 0.0)):
        applied = advantage_fidelity(
            tok(group_advantages(proxy - beta * kl, g, "rloo")),
            tok(group_advantages(gold - beta * kl, g, "rloo")),
            mask,
        )
        score = score_fidelity(tok(group_advantages(proxy, g, "rloo")), tok(group_advantages(gold, g, "rloo")), mask)
        assert score["adv/gold_corr_score"] == pytest.approx(want, abs=0.06)
        assert score["adv/sign_agree_score"] == pytest.approx(0.5 + want / 2, abs=0.04)
        assert applied["adv/gold_corr"] > 0.9  # inflated by the shared KL term, even for pure noise
