"""Every policy optimiser on a toy task: it learns, its state round-trips, and the registry matches the config."""

import copy
import typing

import numpy as np
import pytest
import torch

from rlhfsim.config import Config, OptimizerConfig
from rlhfsim.models.policy import build_policy
from rlhfsim.optim import REGISTRY, optimizer_class
from rlhfsim.optim.config import DrGRPOConfig, GRPOConfig, OnlineDPOConfig, RLOOConfig
from rlhfsim.world.base import Prompt
from rlhfsim.world.tokenizer import build_word_tokenizer

CONFIGS = {"grpo": GRPOConfig, "dr_grpo": DrGRPOConfig, "rloo": RLOOConfig, "online_dpo": OnlineDPOConfig}


class P:
    n_layer, n_embd, n_head = 1, 32, 2


def toy(name: str, seed: int = 0, **kw):
    tok = build_word_tokenizer([f"w{i}" for i in range(12)])
    torch.manual_seed(seed)
    policy = build_policy(tok, P, n_positions=32).eval()
    ref = copy.deepcopy(policy).requires_grad_(False)
    defaults = {"batch_size": 32, "group_size": 4, "lr": 3e-3, **({"kl_coef": 0.0} if name != "online_dpo" else {})}
    cfg = CONFIGS[name](**{**defaults, **kw})
    opt = optimizer_class(name)(policy, ref, tok, cfg, 1.0, 4, torch.device("cpu"))
    groups = [Prompt(i, "toy", "open" if i % 2 else "closed", "w1 w2") for i in range(cfg.batch_size // cfg.group_size)]
    return opt, [p for p in groups for _ in range(cfg.group_size)]


def share_of_w3(prompts, texts) -> np.ndarray:  # the toy reward: how often the completion says w3
    return np.array([t.split().count("w3") / 4 for t in texts])


def test_registry_matches_the_config_union():
    from rlhfsim.optim.base import PolicyOptimizer

    names = {m.model_fields["name"].default for m in typing.get_args(OptimizerConfig)}
    assert names == set(REGISTRY) == {"ppo", "grpo", "dr_grpo", "rloo", "online_dpo"}
    for name in names:  # every section's `impl` is a PolicyOptimizer that can build itself from a run config
        cls = optimizer_class(name)
        assert issubclass(cls, PolicyOptimizer) and callable(cls.from_config) and cls.watched, name
    assert Config().optimizer.name == "ppo" and Config().optimizer.group_size == 1  # PPO's flat layout by default
    with pytest.raises(ValueError, match="valid: dr_grpo, grpo, online_dpo, ppo, rloo"):
        optimizer_class("trpo")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_optimizer_learns_toy_reward_and_emits_what_it_watches(name):
    opt, prompts = toy(name)
    gen = torch.Generator().manual_seed(0)
    first = [opt.iteration(prompts, share_of_w3, share_of_w3, gen) for _ in range(3)]
    for _ in range(22):
        last = opt.iteration(prompts, share_of_w3, share_of_w3, gen)
    assert set(opt.watched) <= set(last) and all(np.isfinite(last[k]) for k in opt.watched)
    assert last["objective/scores"] > np.mean([s["objective/scores"] for s in first]) + 0.15, name
    # the proxy here IS gold: the fidelity reads perfect
    key = "adv/pair_agree" if name == "online_dpo" else "adv/gold_corr"
    assert last[key] == pytest.approx(1.0), name


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_state_dict_round_trip_continues_identically(name):
    """Two iterations, save; a fresh optimiser loaded from that state and the saved weights goes on exactly as the original."""
    kw = {"kl_coef": 0.1} if name != "online_dpo" else {}
    a, prompts = toy(name, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        a.iteration(prompts, share_of_w3, share_of_w3, gen)
    state, weights, gen_state = copy.deepcopy(a.state_dict()), copy.deepcopy(a.policy.state_dict()), gen.get_state()
    nxt = a.iteration(prompts, share_of_w3, share_of_w3, gen)
    b, _ = toy(name, **kw)  # the same frozen reference (the loop's SFT copy, not optimiser state) ...
    b.iteration(
        prompts, share_of_w3, share_of_w3, torch.Generator().manual_seed(9)
    )  # ... other weights and Adam moments
    b.policy.load_state_dict(weights)
    b.load_state_dict(state)
    gen.set_state(gen_state)
    again = b.iteration(prompts, share_of_w3, share_of_w3, gen)
    assert again == nxt
    assert all(torch.equal(x, y) for x, y in zip(a.policy.state_dict().values(), b.policy.state_dict().values()))


def test_grpo_kl_modes_differ_and_both_anchor():
    """kl_mode loss puts beta k3 in the loss; kl_mode reward moves the advantages; both pull towards the reference."""
    stats = {}
    for mode in ("loss", "reward"):
        opt, prompts = toy("grpo", kl_coef=2.0, kl_mode=mode)
        gen = torch.Generator().manual_seed(0)
        stats[mode] = [opt.iteration(prompts, share_of_w3, share_of_w3, gen) for _ in range(8)][-1]
    free, prompts = toy("grpo", kl_coef=0.0)
    gen = torch.Generator().manual_seed(0)
    stats["free"] = [free.iteration(prompts, share_of_w3, share_of_w3, gen) for _ in range(8)][-1]
    assert stats["loss"]["objective/kl"] < stats["free"]["objective/kl"]
    assert stats["reward"]["objective/kl"] < stats["free"]["objective/kl"]
    assert stats["reward"]["adv/kl_share"] > 0 and stats["free"]["adv/kl_share"] == 0


def test_ppo_takes_the_grouped_layout_and_compares_with_gold_group_baselines():
    """PPO with group_size 4: the fidelity's gold advantage uses each prompt's gold group mean (no critic); with the
    proxy equal to gold, the applied (whitened GAE) and gold advantages agree far above chance."""
    from rlhfsim.models.policy import build_value_model
    from rlhfsim.optim.config import PPOConfig
    from rlhfsim.ppo.kl import FixedKLController
    from rlhfsim.ppo.trainer import PPOTrainer

    opt, prompts = toy("grpo")
    value = build_value_model(opt.policy, "policy", "separate")
    cfg = PPOConfig(batch_size=32, group_size=4, epochs=1, minibatches=1, kl_coef=0.0, lam=1.0, pg_cos_every=1)
    ppo = PPOTrainer(opt.policy, opt.ref, value, opt.tok, cfg, FixedKLController(0.0), 1.0, 4, torch.device("cpu"))
    stats = ppo.iteration(prompts, share_of_w3, share_of_w3, torch.Generator().manual_seed(0))
    assert set(ppo.watched) <= set(stats) and ppo.models().keys() == {"policy", "value"}
    assert stats["adv/gold_corr"] > 0.5 and stats["adv/pg_cos"] > 0.5


@pytest.mark.parametrize("name", ["ppo", *sorted(CONFIGS)])
def test_every_optimizer_takes_the_runs_parallel_from_config(name):
    """from_config hands every optimiser the run's Parallel (data-parallel share, compute.policy_micro_batch)."""
    from rlhfsim.config import config_from_dict
    from rlhfsim.models.parallel import Parallel

    tok = build_word_tokenizer([f"w{i}" for i in range(12)])
    policy = build_policy(tok, P, n_positions=32)
    cfg = config_from_dict(
        {
            "optimizer": {"name": name, **({"group_size": 4} if name != "ppo" else {})},
            "policy": {"n_layer": 1, "n_embd": 32, "n_head": 2},
        }
    )
    par = Parallel(micro_batch=3)
    opt = optimizer_class(name).from_config(cfg, policy, copy.deepcopy(policy), tok, torch.device("cpu"), par)
    assert opt.parallel is par


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_micro_batches_match_the_whole_minibatch(name):
    """compute.policy_micro_batch splits each minibatch's forward/backward; the accumulated update and its stats equal
    the whole minibatch's (as tests/ppo/test_trainer_micro.py for PPO)."""
    from rlhfsim.models.parallel import Parallel

    outs, weights = [], []
    for micro in (None, 3):
        opt, prompts = toy(name, minibatches=1, **({"kl_coef": 0.1} if name != "online_dpo" else {}))
        opt.parallel = Parallel(micro_batch=micro)
        outs.append(opt.iteration(prompts, share_of_w3, share_of_w3, torch.Generator().manual_seed(0)))
        weights.append(torch.cat([p.detach().reshape(-1) for p in opt.policy.parameters()]))
    whole, micro = outs
    assert micro["policy/updates"] == whole["policy/updates"] >= 1
    for k in opt.watched + ("policy/entropy_avg",):
        assert micro[k] == pytest.approx(whole[k], rel=1e-5, abs=1e-6), k
    assert torch.allclose(weights[0], weights[1], rtol=1e-5, atol=1e-6)
