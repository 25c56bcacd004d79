"""Reward-profile surgery: ranking kept exactly, target reached at dial 1, own values at dial 0, scale matched."""

import numpy as np
import pytest

from rlhfsim.config import ConfigError, load_config
from rlhfsim.reward.surgery import SurgeryConfig, apply, group_runs, profile_surgery
from rlhfsim.theory import optimal_rewards
from rlhfsim.world.base import Prompt

K, G = 6, 8  # completions per prompt, prompts per batch


def batch(seed=0, ties=False):
    """[G*K] proxy with per-prompt offsets and prompt-dependent spreads; [G*K] gold; groups."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(G, K)) * rng.uniform(0.2, 3.0, size=(G, 1)) + rng.normal(0, 5, size=(G, 1))
    if ties:
        x[:, 1] = x[:, 0]  # two tied rows in every group
        x[2] = 1.5  # a fully tied group
    gold = rng.uniform(size=(G, K)) ** rng.uniform(0.3, 3, size=(G, 1))
    return x.ravel(), gold.ravel(), np.repeat(np.arange(G), K)


def stable_rank(v, groups):
    """Per group, its rows in ascending order of v (stable)."""
    return [tuple(np.flatnonzero(groups == g)[np.argsort(v[groups == g], kind="stable")]) for g in np.unique(groups)]


def centred(v, groups):
    return np.concatenate([np.sort(v[groups == g]) - v[groups == g].mean() for g in np.unique(groups)]).reshape(-1, K)


def optimum(k):
    return optimal_rewards("inv", k)


def run(x, gold, groups, dial, profile, match_scale=True):
    return profile_surgery(x, groups, dial, profile, gold=gold, optimum=optimum, match_scale=match_scale)


def test_group_runs_are_runs_of_equal_keys():
    assert group_runs(list("aabbbac")).tolist() == [0, 0, 1, 1, 1, 2, 3]  # a prompt seen again later is a new group
    assert group_runs([]).size == 0


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
@pytest.mark.parametrize("dial", [0.0, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_ranking_preserved_exactly(profile, dial, ties):
    x, gold, groups = batch(1, ties)
    out = run(x, gold, groups, dial, profile)
    for g in range(G):
        rows = np.flatnonzero(groups == g)
        order = rows[np.argsort(x[rows], kind="stable")]
        assert np.all(np.diff(out[order]) >= -1e-12)  # never reversed along the proxy's ranking
        strict = np.diff(x[order]) > 0
        if dial < 1:
            assert np.all(np.diff(out[order])[strict] > 0)  # and strict where the proxy is strict
    if dial < 1 and not ties:
        assert stable_rank(out, groups) == stable_rank(x, groups)
    # ties are broken by row order: the same input always gives the same output
    assert np.array_equal(out, run(x, gold, groups, dial, profile))


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
def test_dial_zero_is_the_model_own_values(profile):
    x, gold, groups = batch(2)
    assert np.allclose(run(x, gold, groups, 0.0, profile), x, atol=1e-12)
    assert np.array_equal(run(x, gold, groups, 0.7, "none"), x)


def test_dial_one_is_the_target_up_to_one_batch_scale():
    x, gold, groups = batch(3)
    own = centred(x, groups)
    targets = {"pooled": np.tile(own.mean(0), (G, 1)), "optimum": np.tile(optimum(K) - optimum(K).mean(), (G, 1)),
               "gold": centred(gold, groups)}
    for profile, t in targets.items():
        out = run(x, gold, groups, 1.0, profile)
        got = centred(out, groups)
        c = np.sqrt((own**2).sum() / (t**2).sum())
        assert np.allclose(got, c * t, atol=1e-9), profile
        assert np.allclose(run(x, gold, groups, 1.0, profile, match_scale=False).reshape(G, K).mean(1), x.reshape(G, K).mean(1))
        assert np.allclose(centred(run(x, gold, groups, 1.0, profile, match_scale=False), groups), t, atol=1e-9)
    # gold-shaped: the gold values land on the proxy's ranking (rank j of the proxy gets the j-th smallest gold)
    out = run(x, gold, groups, 1.0, "gold", match_scale=False)
    for g in range(G):
        rows = np.flatnonzero(groups == g)
        order = rows[np.argsort(x[rows], kind="stable")]
        assert np.allclose(out[order] - out[rows].mean(), np.sort(gold[rows]) - gold[rows].mean())


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
@pytest.mark.parametrize("dial", [0.25, 0.5, 1.0])
def test_scale_matched_and_prompt_levels_kept(profile, dial):
    x, gold, groups = batch(4)
    out = run(x, gold, groups, dial, profile)
    assert np.isclose(out.std(), x.std())  # same per-batch std
    assert np.isclose(((centred(out, groups)) ** 2).sum(), (centred(x, groups) ** 2).sum())  # same pooled within-prompt var
    assert np.allclose(out.reshape(G, K).mean(1), x.reshape(G, K).mean(1))  # each prompt keeps the proxy's level
    unmatched = run(x, gold, groups, dial, profile, match_scale=False)
    if profile != "pooled":
        assert not np.isclose(unmatched.std(), x.std())  # the matching is doing something


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
def test_monotone_in_the_dial(profile):
    """The (scale-free) distance of the output's profiles to the target shrinks, and to the model's own grows."""
    x, gold, groups = batch(5)
    own = centred(x, groups)
    target = centred(run(x, gold, groups, 1.0, profile), groups)

    def dist(a, b):
        return np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b))

    dials = np.linspace(0, 1, 11)
    to_target = [dist(centred(run(x, gold, groups, d, profile), groups), target) for d in dials]
    to_own = [dist(centred(run(x, gold, groups, d, profile), groups), own) for d in dials]
    assert np.all(np.diff(to_target) < 0) and to_target[-1] < 1e-9
    assert np.all(np.diff(to_own) > 0) and to_own[0] < 1e-9


def test_singletons_keep_their_value_and_all_singletons_are_refused():
    x, gold, groups = batch(6)
    groups2 = np.concatenate([groups, [G]])  # one extra singleton group
    out = profile_surgery(np.append(x, 42.0), groups2, 1.0, "pooled")
    assert out[-1] == 42.0
    with pytest.raises(ValueError, match="group_size >= 2"):
        profile_surgery(x, np.arange(x.size), 0.5, "pooled")
    with pytest.raises(ValueError, match="valid"):
        profile_surgery(x, groups, 0.5, "flat")


def test_apply_finds_groups_from_prompt_rows():
    x, gold, groups = batch(7)
    prompts = [Prompt(int(g), "add", "closed", f"add {g} 1 =") for g in groups]
    cfg = SurgeryConfig(profile="gold", dial=0.6)
    calls = []
    out = apply(cfg, prompts, x, lambda: calls.append(1) or gold)
    assert calls == [1] and np.allclose(out, run(x, gold, groups, 0.6, "gold"))
    assert np.array_equal(apply(SurgeryConfig(), prompts, x, lambda: calls.append(2)), x) and calls == [1]  # off: gold never asked
    opt = apply(SurgeryConfig(profile="optimum"), prompts, x, utility="inv")
    assert np.allclose(opt, run(x, gold, groups, 1.0, "optimum"))


def test_config_section_checks():
    assert load_config(None).surgery.profile == "none"  # identity by default
    with pytest.raises(ConfigError, match="surgery.dial"):
        load_config(None, ["surgery.dial=1.5"])
    with pytest.raises(ConfigError, match="reward_source"):
        load_config(None, ["surgery.profile=pooled", "loop.reward_source=gold"])
    with pytest.raises(ConfigError, match="prompt_aware"):
        load_config(None, ["surgery.profile=optimum", "reward.prompt_aware={open: inv, closed: linear}"])


def test_simulation_score_fn_applies_the_configured_surgery():
    """The wiring in Simulation.score_fn: proxy -> recalibration (none) -> surgery, gold only for profile gold."""
    from types import SimpleNamespace

    from rlhfsim.loop import Simulation

    x, gold, groups = batch(8)
    prompts = [Prompt(int(g), "add", "closed", f"add {g} 1 =") for g in groups]
    texts = [str(i) for i in range(x.size)]
    for overrides, want in ((["surgery.profile=gold", "surgery.dial=0.5"], run(x, gold, groups, 0.5, "gold")), ([], x)):
        sim = SimpleNamespace(cfg=load_config(None, overrides), recal=None, proxy=lambda p, t: (x.copy(), x[None]),
                              world=SimpleNamespace(gold=lambda p, t: gold))
        assert np.allclose(Simulation.score_fn(sim, prompts, texts), want)


def test_shape_dependence_of_the_output():
    """Read by the collapse instrument (per-prompt shape dependence D, invariant to prompt offset and scale):
    dial 0 keeps the model's D, a collapsed target at dial 1 leaves none, gold-shaped at dial 1 has gold's."""
    from rlhfsim.diagnostics.collapse import shape_dependence

    x, gold, groups = batch(9)
    D = lambda v: shape_dependence(v.reshape(G, K))  # noqa: E731
    assert D(x) > 0.05 and np.isclose(D(run(x, gold, groups, 0.0, "pooled")), D(x))
    for profile in ("pooled", "optimum"):
        assert D(run(x, gold, groups, 1.0, profile)) < 1e-12
        assert 0 < D(run(x, gold, groups, 0.5, profile)) < D(x)
    assert np.isclose(D(run(x, gold, groups, 1.0, "gold")), D(gold))
