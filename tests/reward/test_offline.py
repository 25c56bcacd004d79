"""The realistic reward model's parts: the SFT-backbone init and the offline preference set (reward.offline)."""

import json

import numpy as np
import pytest
import torch

from rlhfsim.config import ConfigError, load_config
from rlhfsim.loop import run
from rlhfsim.models.policy import build_policy
from rlhfsim.reward.buffer import Group, PreferenceBuffer
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.offline import mix
from rlhfsim.world.base import Prompt
from rlhfsim.world.synthetic import SyntheticWorld

OFFLINE = ["reward.offline.comparisons=150", "reward.offline.epochs=2"]


def group(i, n_pairs=1):
    p = Prompt(id=i, family="add", type="closed", text=f"add {i} 1 =", answer=str(i + 1))
    prefs = np.zeros((3, 3), dtype=bool)
    prefs[0, 1 : 1 + n_pairs] = True
    return Group(p, ["1", "2", "3"], np.array([1.0, 0.0, 0.0]), prefs, 0, [False] * 3)


def test_backbone_copies_the_policy_trunk_and_only_the_first_blocks():
    world = SyntheticWorld()
    pcfg = load_config("configs/tiny.yaml", ["policy.n_layer=2"]).policy
    policy = build_policy(world.tokenizer, pcfg, 40)
    rcfg = load_config("configs/tiny.yaml", ["policy.n_layer=2", "reward.n_embd=32", "reward.backbone=policy"]).reward
    rm = RewardModels(world.tokenizer, rcfg, "cpu", 0, backbone=policy).members[0]
    src, dst = policy.transformer.state_dict(), rm.transformer.state_dict()
    assert set(dst) == {k for k in src if not k.startswith("h.1.")}  # one block of the policy's two
    for k, v in dst.items():
        assert torch.equal(v, src[k]), k
    rand = RewardModels(world.tokenizer, rcfg.model_copy(update={"backbone": "random"}), "cpu", 0).members[0]
    assert not torch.equal(rand.transformer.wte.weight[:, :32], src["wte.weight"])


def test_backbone_shape_mismatch_is_a_config_error():
    with pytest.raises(ConfigError, match="reward.n_embd = policy.n_embd"):
        load_config("configs/tiny.yaml", ["reward.backbone=policy"])  # tiny's reward is 16 wide, its policy 32
    with pytest.raises(ConfigError, match="offline.mix"):
        load_config("configs/tiny.yaml", ["reward.offline.mix=-1"])


def test_mix_draws_a_seeded_share_without_replacement():
    offline = [group(i) for i in range(50)] + [group(99, n_pairs=0)]  # a group of ties is never mixed in
    a = mix(offline, 20, 0.5, seed=3, round_=4)
    assert len(a) == 10 and len({g.prompt.id for g in a}) == 10
    assert [g.prompt.id for g in a] == [g.prompt.id for g in mix(offline, 20, 0.5, seed=3, round_=4)]
    assert [g.prompt.id for g in a] != [g.prompt.id for g in mix(offline, 20, 0.5, seed=3, round_=5)]
    assert mix(offline, 20, 0, 3, 4) == [] and len(mix(offline, 20, "all", 3, 4)) == 50
    assert len(mix(offline, 1000, 2.0, 3, 4)) == 50  # at most the whole set


def test_buffer_mixes_the_offline_set_into_the_latest_round():
    b = PreferenceBuffer("window", window=2)
    b.set_offline([group(100 + i) for i in range(30)], 1.0, seed=0)
    assert b.training_groups() == []  # nothing before round 1
    b.add(1, [group(i) for i in range(4)])
    got = b.training_groups()
    assert len(got) == 8 and {g.prompt.id for g in got[:4]} == {0, 1, 2, 3}
    assert all(g.prompt.id >= 100 for g in got[4:])


def metrics(path):
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for line in open(path / "metrics.jsonl")
    ]


@pytest.mark.slow
def test_offline_run_is_cached_and_the_cache_changes_no_metric(tmp_path, sft_cache):
    over = [f"policy.cache_dir={tmp_path / 'cache'}", *OFFLINE]
    run(load_config("configs/tiny.yaml", over), out=tmp_path / "first")
    assert len(list((tmp_path / "cache").glob("offline-rm-*"))) == 1
    run(load_config("configs/tiny.yaml", over), out=tmp_path / "cached")
    first, cached = metrics(tmp_path / "first"), metrics(tmp_path / "cached")
    assert first == cached  # the cached start leaves the run's streams where the uncached one did
    assert first[0]["offline/pairs"] >= 150 and first[0]["offline/groups"] > 0
    assert "offline/cached" not in first[0]  # bookkeeping, not a metric


@pytest.mark.slow
def test_offline_pretraining_moves_the_reward_model_and_resume_matches(tmp_path, sft_cache):
    base = [f"policy.cache_dir={sft_cache}"]
    run(load_config("configs/tiny.yaml", base + OFFLINE), out=tmp_path / "off")
    run(load_config("configs/tiny.yaml", base), out=tmp_path / "none")
    off, none = metrics(tmp_path / "off"), metrics(tmp_path / "none")
    assert off[1]["rm/pairs"] > none[1]["rm/pairs"]  # the round trains on its own groups plus the mixed-in offline ones
    assert off[0]["eval/gold"] == none[0]["eval/gold"]  # round 0 is the same SFT policy on the same eval stream
    run(load_config("configs/tiny.yaml", base + OFFLINE + ["loop.rounds=1"]), out=tmp_path / "r")
    run(load_config("configs/tiny.yaml", base + OFFLINE), out=tmp_path / "r", resume=True)
    assert metrics(tmp_path / "r") == off


def test_fresh_reinit_copies_the_frozen_sft_trunk_not_the_trained_policy(tmp_path, sft_cache):
    from rlhfsim.loop import Simulation
    from rlhfsim.tracking import RunDir

    cfg = load_config(
        "configs/tiny.yaml",
        [f"policy.cache_dir={sft_cache}", "reward.n_embd=32", "reward.backbone=policy", "reward.init=fresh"],
    )
    sim = Simulation(cfg, RunDir.for_config(cfg, tmp_path / "r"))
    with torch.no_grad():
        sim.policy.transformer.wte.weight.add_(1.0)  # as if PPO had moved the policy
    sim.proxy.rms.reinit(cfg.seed * 7919 + 1)
    trunk = sim.proxy.rms.members[0].transformer.wte.weight
    assert torch.equal(trunk, sim.ref.transformer.wte.weight) and not torch.equal(
        trunk, sim.policy.transformer.wte.weight
    )


def test_cache_key_ignores_what_acts_after_pretraining():
    """reward.across_rounds (issue 36) and offline.mix change nothing the offline set or its pre-training depend on:
    every arm of a study shares one cache entry, and caches written before the field existed stay valid."""
    from rlhfsim.reward.offline import cache_key

    keys = {
        cache_key(load_config("configs/realistic.yaml", over), ["a", "b"], "cpu")
        for over in ([], ["reward.across_rounds=mean"], ["reward.across_rounds=weight_average", "reward.offline.mix=0"])
    }
    assert len(keys) == 1
    assert cache_key(load_config("configs/realistic.yaml", ["reward.lr=0.01"]), ["a", "b"], "cpu") not in keys


def test_cache_key_ignores_how_members_are_aggregated():
    """Aggregation (and UWO's lambda, member standardisation) only combine the members' scores: the mean, WCO and UWO
    arms of one ensemble pre-train the same members, so they share one entry; the members themselves do not."""
    from rlhfsim.reward.offline import cache_key

    base = ["reward.ensemble_size=3"]
    keys = {
        cache_key(load_config("configs/realistic.yaml", base + over), ["a", "b"], "cpu")
        for over in (
            [],
            ["reward.aggregation=wco"],
            ["reward.aggregation=uwo", "reward.uwo_lambda=0.5"],
            ["reward.aggregation=wco", "reward.standardise_members=false"],
        )
    }
    assert len(keys) == 1
    one = cache_key(load_config("configs/realistic.yaml"), ["a", "b"], "cpu")
    assert one not in keys  # another number of members is another pre-training
    assert (
        cache_key(load_config("configs/realistic.yaml", base + ["reward.ensemble_kind=heads"]), ["a", "b"], "cpu")
        not in keys
    )
