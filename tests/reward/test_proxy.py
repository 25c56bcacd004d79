"""The Proxy (rlhfsim.reward.proxy): the optimiser's reward as one object, and the noisy_gold source."""

from types import SimpleNamespace

import numpy as np
import pytest

from rlhfsim.config import ConfigError, load_config
from rlhfsim.reward import recalibrate, surgery
from rlhfsim.reward.ensemble import aggregate, member_scale
from rlhfsim.reward.proxy import Proxy, calibrate_noisy_gold, calibrate_sigma, expected_rank_corr, hashed_normal
from rlhfsim.world.base import Prompt

P, K, M = 6, 4, 3


class FakeMembers:
    """M reward-model members whose logits are a fixed function of the completion text (what a frozen model is)."""

    def __init__(self, m=M, bounded=True):
        self.n_members, self.bounded, self.calls = m, bounded, 0

    def logits(self, prompts, texts):
        self.calls += 1
        return np.array(
            [
                [np.sin(7.0 * (j + 1) + 0.37 * len(t) + hash(t) % 97 / 13.0) * (j + 1) for t in texts]
                for j in range(self.n_members)
            ]
        )

    def rewards(self, prompts, texts):
        z = self.logits(prompts, texts)
        return 1.0 / (1.0 + np.exp(-z)) if self.bounded else z


def rows(p=P, k=K):
    prompts = [
        Prompt(i, "open" if i % 2 else "add", "open" if i % 2 else "closed", f"q{i}")
        for i in range(p)
        for _ in range(k)
    ]
    texts = [f"answer {i} {'x' * i}" for i in range(p * k)]
    gold = np.random.default_rng(0).uniform(size=p * k)
    return prompts, texts, gold


def cfg(*overrides):
    return load_config(None, list(overrides))


def old_score_fn(c, members_fn, world_gold, recal, scale, prompts, texts):
    """Simulation.score_fn as it was before the Proxy (commit c77ef03)."""
    if c.loop.reward_source == "gold":
        return world_gold(prompts, texts)
    members = members_fn([p.text for p in prompts], texts)
    agg = np.asarray(aggregate(members, c.reward.aggregation, c.reward.uwo_lambda, scale))
    scores = recalibrate.apply(recal, agg, [p.type for p in prompts])
    return surgery.apply(c.surgery, prompts, scores, lambda: world_gold(prompts, texts), c.reward.utility)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["surgery.profile=pooled", "surgery.dial=0.6"],
        ["surgery.profile=gold", "surgery.dial=1"],
        ["reward.ensemble_size=3", "reward.aggregation=wco"],
        ["reward.ensemble_size=3", "reward.aggregation=uwo", "surgery.profile=pooled"],
        ["loop.reward_source=gold"],
    ],
)
def test_score_equals_the_old_score_fn_path(overrides):
    prompts, texts, gold = rows()
    c = cfg(*overrides)
    rms = FakeMembers()
    proxy = Proxy(c, rms, lambda p, t: gold)
    scale = member_scale(rms.rewards(None, texts))
    recal = (
        recalibrate.standardise_params(np.linspace(0, 1, 10), ["open", "closed"] * 5)
        if c.loop.reward_source != "gold"
        else None
    )
    proxy.set_member_scale(scale)
    proxy.set_recalibration(recal)
    want = old_score_fn(c, rms.rewards, lambda p, t: gold, recal, scale, prompts, texts)
    assert np.array_equal(proxy.score(prompts, texts), want)
    agg, members = proxy.values(prompts, texts)
    assert np.array_equal(members, rms.rewards(None, texts))
    assert np.array_equal(agg, np.asarray(aggregate(members, c.reward.aggregation, c.reward.uwo_lambda, scale)))


def test_fit_member_scale_computes_only_and_matches_the_probe_rule():
    prompts, texts, _ = rows()
    rms = FakeMembers()
    proxy = Proxy(cfg("reward.ensemble_size=3", "reward.aggregation=wco"), rms, None)
    scale = proxy.fit_member_scale(prompts, texts)
    z = rms.logits(None, texts)
    mu, sd = member_scale(1 / (1 + np.exp(-z)))  # the old probe_collapse rule, bounded members
    assert np.array_equal(scale[0], mu) and np.array_equal(scale[1], sd)
    assert proxy.member_scale is None  # nothing set until the loop sets it
    assert Proxy(cfg("reward.standardise_members=false"), rms, None).fit_member_scale(prompts, texts) is None
    assert Proxy(cfg(), FakeMembers(1), None).fit_member_scale(prompts, texts) is None


def test_a_frozen_proxy_scores_the_same_text_identically_and_diagnostics_do_not_move_it():
    """Scoring is a function of (prompt, completion): repeated, reordered or in another batch, the same value; the
    read-only views never change the state score reads."""
    from rlhfsim.loop_phases import diagnose_reward_model, probe_collapse

    prompts, texts, gold = rows()
    for source in (
        ["reward.ensemble_size=3", "reward.aggregation=uwo"],
        ["loop.reward_source=noisy_gold", "loop.noisy_gold.sigma=0.2"],
    ):
        c = cfg(*source)
        gold_fn = lambda p, t: np.array([float(len(x) % 5) / 4 for x in t])  # noqa: E731 (a function of the text)
        proxy = Proxy(c, FakeMembers(), gold_fn)
        proxy.set_member_scale(proxy.fit_member_scale(prompts, texts))
        first = proxy.score(prompts, texts)
        assert np.array_equal(proxy.score(prompts, texts), first)
        perm = np.random.default_rng(1).permutation(len(texts))
        if c.loop.reward_source == "noisy_gold":  # no aggregation across rows: any order, any batch
            again = proxy.score([prompts[i] for i in perm], [texts[i] for i in perm])
            assert np.array_equal(again, first[perm])
        state = (proxy.member_scale, proxy.recal, proxy.sigma)
        ev = SimpleNamespace(
            prompts=prompts[::K],
            k=K,
            texts=texts,
            gold=gold_fn(None, texts).reshape(P, K),
            types=[p.type for p in prompts[::K]],
            flat_prompts=lambda: prompts,
        )
        sim = SimpleNamespace(proxy=proxy, probe_set=lambda: ev, theory=None, cfg=c)  # noqa: B023 - called within this iteration
        diagnose_reward_model(sim, ev)
        probe_collapse(sim)
        proxy.values(prompts, texts), proxy.diagnostic_scores(prompts, texts)
        assert (proxy.member_scale, proxy.recal, proxy.sigma) == state
        assert np.array_equal(proxy.score(prompts, texts), first)


def test_setters_refuse_what_does_not_belong_to_the_source():
    gold_proxy = Proxy(cfg("loop.reward_source=gold"), FakeMembers(), None)
    with pytest.raises(ValueError, match="not recalibrated"):
        gold_proxy.set_recalibration({"all": (2.0, 0.0)})
    with pytest.raises(ValueError, match="noisy_gold"):
        gold_proxy.set_noise_sigma(0.1)
    noisy = Proxy(
        cfg("loop.reward_source=noisy_gold", "loop.noisy_gold.rho=0.5"), FakeMembers(), lambda p, t: np.zeros(len(t))
    )
    prompts, texts, _ = rows()
    with pytest.raises(RuntimeError, match="no sigma yet"):
        noisy.score(prompts, texts)
    with pytest.raises(ValueError, match=">= 0"):
        noisy.set_noise_sigma(-1.0)


# ------------------------------------------------------------------ noisy gold


def test_hashed_noise_is_a_fixed_function_of_seed_prompt_and_text():
    names, texts = ["a", "a", "b", "a"], ["x", "y", "x", "x"]
    z = hashed_normal(0, names, texts)
    assert np.array_equal(z, hashed_normal(0, names, texts)) and z[0] == z[3] and len(set(z[:3])) == 3
    assert not np.array_equal(z, hashed_normal(1, names, texts))  # another run seed, another proxy
    assert not np.array_equal(z, hashed_normal(0, names, texts, draw=1))
    assert hashed_normal(0, ["ab"], ["c"])[0] != hashed_normal(0, ["a"], ["bc"])[0]  # no separator collision
    big = hashed_normal(3, ["p"] * 20000, [str(i) for i in range(20000)])
    assert abs(big.mean()) < 0.03 and abs(big.std() - 1) < 0.03 and np.isfinite(big).all()


def test_sigma_zero_is_gold_and_the_source_does_not_train_or_read_the_reward_model():
    prompts, texts, gold = rows()
    rms = FakeMembers()
    proxy = Proxy(cfg("loop.reward_source=noisy_gold", "loop.noisy_gold.sigma=0"), rms, lambda p, t: gold)
    assert np.array_equal(proxy.score(prompts, texts), gold)
    proxy.set_noise_sigma(0.5)
    want = gold + 0.5 * hashed_normal(0, [p.text for p in prompts], texts)
    assert np.array_equal(proxy.score(prompts, texts), want)
    assert np.array_equal(proxy.diagnostic_scores(prompts, texts), want) and not proxy.diagnostic_bounded
    assert rms.calls == 0


def constructed_gold(p=200, k=8, seed=0):
    """Continuous gold (no ties) on p prompts: the expected rho of gold + sigma z is smooth in sigma."""
    return np.random.default_rng(seed).uniform(size=(p, k))


def test_calibrated_sigma_hits_the_target_rho_and_falls_as_rho_rises():
    G = constructed_gold()
    names = [f"q{i}" for i in range(G.shape[0]) for _ in range(G.shape[1])]
    texts = [f"t{j}" for j in range(G.size)]
    noise = np.stack([hashed_normal(0, names, texts, draw=d).reshape(G.shape) for d in range(4)])
    sigmas = []
    for target in (0.3, 0.6, 0.9):
        sigma, rho, reached = calibrate_sigma(G, noise, target)
        assert reached and abs(rho - target) < 0.01, (target, rho)
        assert abs(expected_rank_corr(G, noise, sigma) - target) < 0.01
        sigmas.append(sigma)
    assert sigmas[0] > sigmas[1] > sigmas[2] > 0
    # uniform gold in [0, 1] with Gaussian noise: rho 0.6 needs noise of about the gold's own spread (sd 0.29)
    assert 0.15 < sigmas[1] < 0.5


def test_gold_ties_cap_the_reachable_rho():
    """One right answer in 4 (gold [1, 0, 0, 0]): any noise orders the three tied wrong answers at random, so
    Spearman is at most 3 / sqrt(15) = 0.775 (average ranks on gold's side): a target above it is clamped and
    flagged, one below it is reached."""
    G = np.tile([1.0, 0.0, 0.0, 0.0], (300, 1))
    noise = np.random.default_rng(0).standard_normal((4, *G.shape))
    assert np.isclose(expected_rank_corr(G, noise, 1e-6), 3 / np.sqrt(15), atol=0.01)
    sigma, rho, reached = calibrate_sigma(G, noise, 0.9)
    assert not reached and np.isclose(rho, 3 / np.sqrt(15), atol=0.01) and sigma < 1e-3
    sigma, rho, reached = calibrate_sigma(G, noise, 0.5)
    assert reached and abs(rho - 0.5) < 0.01
    with pytest.raises(ValueError, match="constant"):
        calibrate_sigma(np.zeros((5, 4)), noise[:, :5], 0.5)


def test_calibrate_noisy_gold_reports_sigma_and_the_proxy_own_rho():
    G = constructed_gold(60, 4)
    prompts = [Prompt(i, "open", "open", f"q{i}") for i in range(60) for _ in range(4)]
    texts = [f"t{j}" for j in range(G.size)]
    proxy = Proxy(
        cfg("loop.reward_source=noisy_gold", "loop.noisy_gold.rho=0.6"), FakeMembers(), lambda p, t: G.ravel()
    )
    sigma, out = calibrate_noisy_gold(proxy, prompts, texts, G, 0.6, draws=8)
    assert proxy.sigma is None  # computes only
    assert out["proxy/noisy_gold_sigma"] == sigma and abs(out["proxy/noisy_gold_rho_expected"] - 0.6) < 0.01
    from rlhfsim.diagnostics.advantage import within_prompt_rank_corr

    proxy.set_noise_sigma(sigma)
    own = proxy.score(prompts, texts).reshape(G.shape)
    assert out["proxy/noisy_gold_rho_sft"] == within_prompt_rank_corr(own, G)  # the proxy's own values, measured
    assert abs(out["proxy/noisy_gold_rho_sft"] - 0.6) < 0.1  # one draw scatters around the expected value
    fixed = Proxy(cfg("loop.reward_source=noisy_gold", "loop.noisy_gold.sigma=0.2"), FakeMembers(), None)
    s, out = calibrate_noisy_gold(fixed, prompts, texts, G, None, draws=2)
    assert s == 0.2 and "proxy/noisy_gold_rho_expected" not in out


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["loop.reward_source=noisy_gold"], "exactly one"),
        (["loop.reward_source=noisy_gold", "loop.noisy_gold.rho=0.5", "loop.noisy_gold.sigma=0.1"], "exactly one"),
        (["loop.reward_source=noisy_gold", "loop.noisy_gold.rho=1.0"], "rho"),
        (["loop.reward_source=noisy_gold", "loop.noisy_gold.sigma=-0.1"], "sigma"),
        (["loop.noisy_gold.rho=0.5"], "drop loop.noisy_gold"),
        (["loop.reward_source=noisy"], "reward_source"),
    ],
)
def test_bad_noisy_gold_configs_are_clear_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(None, overrides)
