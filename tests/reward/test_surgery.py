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
    assert np.array_equal(out, run(x, gold, groups, dial, profile))  # deterministic


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
def test_dial_zero_is_the_model_own_values(profile):
    x, gold, groups = batch(2)
    assert np.allclose(run(x, gold, groups, 0.0, profile), x, atol=1e-12)
    assert np.array_equal(run(x, gold, groups, 0.7, "none"), x)


def test_dial_one_is_the_target_up_to_one_batch_scale():
    x, gold, groups = batch(3)
    own = centred(x, groups)
    targets = {
        "pooled": np.tile(own.mean(0), (G, 1)),
        "optimum": np.tile(optimum(K) - optimum(K).mean(), (G, 1)),
        "gold": centred(gold, groups),
    }
    for profile, t in targets.items():
        out = run(x, gold, groups, 1.0, profile)
        got = centred(out, groups)
        c = np.sqrt((own**2).sum() / (t**2).sum())
        assert np.allclose(got, c * t, atol=1e-9), profile
        assert np.allclose(
            run(x, gold, groups, 1.0, profile, match_scale=False).reshape(G, K).mean(1), x.reshape(G, K).mean(1)
        )
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
    assert np.isclose(
        ((centred(out, groups)) ** 2).sum(), (centred(x, groups) ** 2).sum()
    )  # same pooled within-prompt var
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
    assert np.array_equal(apply(SurgeryConfig(), prompts, x, lambda: calls.append(2)), x) and calls == [
        1
    ]  # off: gold never asked
    opt = apply(SurgeryConfig(profile="optimum"), prompts, x, utility="inv")
    assert np.allclose(opt, run(x, gold, groups, 1.0, "optimum"))


def test_config_section_checks():
    assert load_config(None).surgery.profile == "none"  # identity by default
    with pytest.raises(ConfigError, match="surgery.dial"):
        load_config(None, ["surgery.dial=1.5"])
    for source in ("gold", "noisy_gold"):  # surgery acts on any source (it keeps the source's ties: see below)
        extra = ["loop.noisy_gold.sigma=0.1"] if source == "noisy_gold" else []
        assert load_config(None, ["surgery.profile=pooled", f"loop.reward_source={source}", *extra]).surgery.dial == 1.0
    with pytest.raises(ConfigError, match="prompt_aware"):
        load_config(None, ["surgery.profile=optimum", "reward.prompt_aware={open: inv, closed: linear}"])


def test_proxy_score_applies_the_configured_surgery():
    """The wiring in Proxy.score: source -> recalibration (none) -> surgery, gold only for profile gold."""
    from types import SimpleNamespace

    from rlhfsim.reward.proxy import Proxy

    x, gold, groups = batch(8)
    prompts = [Prompt(int(g), "add", "closed", f"add {g} 1 =") for g in groups]
    texts = [str(i) for i in range(x.size)]
    rms = SimpleNamespace(rewards=lambda p, t: x[None].copy(), bounded=False, n_members=1)
    calls = []
    for overrides, want in ((["surgery.profile=gold", "surgery.dial=0.5"], run(x, gold, groups, 0.5, "gold")), ([], x)):
        proxy = Proxy(load_config(None, overrides), rms, lambda p, t: calls.append(1) or gold)
        assert np.allclose(proxy.score(prompts, texts), want)
    assert calls == [1]  # gold asked once, by the gold profile only
    cfg = load_config(None, ["loop.reward_source=gold", "surgery.profile=pooled", "surgery.dial=0.5"])
    assert np.array_equal(
        Proxy(cfg, rms, lambda p, t: gold).score(prompts, texts), run(gold, gold, groups, 0.5, "pooled")
    )


def old_profile_surgery(scores, groups, dial, profile, *, gold=None, optimum=None, match_scale=True):
    """profile_surgery as it was before ties were kept (commit c77ef03): the reference for tie-free batches."""
    x = np.asarray(scores, dtype=np.float64)
    if profile == "none" or dial == 0.0 or x.size == 0:
        return x.copy()
    orders = []
    for g in range(int(groups.max()) + 1):
        rows = np.flatnonzero(groups == g)
        orders.append(rows[np.argsort(x[rows], kind="stable")])
    orders = [o for o in orders if o.size > 1]
    own = [x[o] - x[o].mean() for o in orders]
    if profile == "pooled":
        by_k = {}
        for o in own:
            by_k.setdefault(o.size, []).append(o)
        pooled = {k: np.mean(np.stack(v), axis=0) for k, v in by_k.items()}
        targets = [pooled[o.size] for o in orders]
    elif profile == "optimum":
        targets = [np.sort(np.asarray(optimum(o.size), dtype=np.float64)) for o in orders]
    else:
        targets = [np.sort(np.asarray(gold, dtype=np.float64)[o]) for o in orders]
    targets = [t - t.mean() for t in targets]
    blend = [(1.0 - dial) * o + dial * t for o, t in zip(own, targets)]
    c = 1.0
    if match_scale:
        num, den = sum(float(o @ o) for o in own), sum(float(b @ b) for b in blend)
        c = float(np.sqrt(num / den)) if den > 0 else 1.0
    out = x.copy()
    for o, b in zip(orders, blend):
        out[o] = x[o].mean() + c * b
    return out


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
@pytest.mark.parametrize("dial", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("match_scale", [True, False])
def test_tie_free_batches_are_bit_identical_to_the_old_implementation(profile, dial, match_scale):
    """Continuous learned scores have no exact ties: the committed studies' surgery must not move by one bit."""
    for seed in range(3):
        x, gold, groups = batch(20 + seed)
        old = old_profile_surgery(x, groups, dial, profile, gold=gold, optimum=optimum, match_scale=match_scale)
        assert np.array_equal(run(x, gold, groups, dial, profile, match_scale), old)


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
@pytest.mark.parametrize("dial", [0.3, 1.0])
def test_tied_rows_stay_tied_and_an_all_tied_group_keeps_its_values(profile, dial):
    x, gold, groups = batch(11, ties=True)  # rows 0 and 1 of every group tied; group 2 all tied at 1.5
    out = run(x, gold, groups, dial, profile)
    rows = x.reshape(G, K)
    got = out.reshape(G, K)
    assert np.all(got[:, 0] == got[:, 1])  # exactly equal, not just close
    assert np.all(got[2] == 1.5)  # no profile pushed onto a group with no ranking
    assert np.allclose(got.mean(1), rows.mean(1))  # levels kept
    # match_scale still holds: pooled within-prompt variance (and batch std) as the source's
    assert np.isclose(
        ((got - got.mean(1, keepdims=True)) ** 2).sum(), ((rows - rows.mean(1, keepdims=True)) ** 2).sum()
    )
    assert np.isclose(out.std(), x.std())


def test_ties_known_answer():
    """By hand: x = [1, 1, 3], gold-shaped at dial 1 with gold [0, 0.3, 0.9]: the centred sorted gold is
    [-0.4, -0.1, 0.5]; the tied pair shares -0.25; the level 5/3 is kept. A gold batch of closed prompts (all wrong
    or all right) is returned as it is."""
    x, gold, groups = np.array([1.0, 1.0, 3.0]), np.array([0.0, 0.3, 0.9]), np.zeros(3, dtype=int)
    out = profile_surgery(x, groups, 1.0, "gold", gold=gold, match_scale=False)
    assert np.allclose(out, 5 / 3 + np.array([-0.25, -0.25, 0.5]))
    closed = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    assert np.array_equal(profile_surgery(closed, np.repeat([0, 1], 4), 1.0, "pooled"), closed)
    with pytest.raises(ValueError, match="group_size >= 2"):  # the layout check still comes first
        profile_surgery(closed, np.arange(8), 1.0, "pooled")
    # a pooled profile on a gold batch: [0, 0, 1] and [0, 1, 1] pool to the mean of their centred profiles,
    # averaged again over each group's tied positions
    g2 = np.array([0.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    out = profile_surgery(g2, np.repeat([0, 1], 3), 1.0, "pooled", match_scale=False)
    pooled = (np.array([-1, -1, 2]) / 3 + np.array([-2, 1, 1]) / 3) / 2  # [-0.5, 0, 0.5]
    assert np.allclose(out[:3], 1 / 3 + np.array([-0.25, -0.25, 0.5])) and np.allclose(
        out[3:], 2 / 3 + np.array([-0.5, 0.25, 0.25])
    )
    assert np.allclose(pooled, [-0.5, 0, 0.5])


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


@pytest.mark.parametrize("profile", ["pooled", "optimum", "gold"])
def test_row_order_ties_reproduce_the_old_implementation_on_tied_batches(profile):
    """surgery.ties: row_order is the behaviour before issue 29, ties and all-tied groups included."""
    x, gold, groups = batch(12, ties=True)
    for dial in (0.4, 1.0):
        old = old_profile_surgery(x, groups, dial, profile, gold=gold, optimum=optimum)
        new = profile_surgery(x, groups, dial, profile, gold=gold, optimum=optimum, ties="row_order")
        assert np.array_equal(new, old)
        assert not np.array_equal(run(x, gold, groups, dial, profile), old)  # keep differs where there are ties
    with pytest.raises(ValueError, match="row_order"):
        profile_surgery(x, groups, 0.5, profile, ties="random")
    assert load_config(None, ["surgery.ties=row_order"]).surgery.ties == "row_order"
    with pytest.raises(ConfigError, match="surgery.ties"):
        load_config(None, ["surgery.ties=random"])
