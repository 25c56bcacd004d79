"""target_kl early stopping inside a PPO iteration, and the adv/* and TRL fields every iteration logs (tiny untrained policy)."""

import copy

import numpy as np
import pytest
import torch

from rlhfsim.config import load_config
from rlhfsim.models.policy import build_policy, build_value_model
from rlhfsim.ppo.kl import get_kl_controller
from rlhfsim.ppo.trainer import PPOTrainer
from rlhfsim.world import build_world


def _trainer(**ppo):
    cfg = load_config("configs/tiny.yaml", [f"optimizer.{k}={v}" for k, v in ppo.items()])
    world = build_world(cfg.world)
    torch.manual_seed(0)
    policy = build_policy(world.tokenizer, cfg.policy)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    value = build_value_model(policy, cfg.optimizer.value_init)
    kl = get_kl_controller("fixed", beta=cfg.optimizer.kl_coef)
    tr = PPOTrainer(
        policy,
        ref,
        value,
        world.tokenizer,
        cfg.optimizer,
        kl,
        cfg.policy.temperature,
        cfg.policy.response_len,
        torch.device("cpu"),
    )
    prompts = world.sample_prompts(cfg.optimizer.batch_size, np.random.default_rng(0))
    # a proxy that is gold plus noise, so the fidelity fields have something to measure
    noise = np.random.default_rng(1)
    proxy = lambda p, t: world.gold(p, t) + noise.normal(0, 0.3, len(t))  # noqa: E731
    return tr, cfg, prompts, proxy, world.gold


@pytest.mark.parametrize("target_kl", [None, 1e-12])
def test_target_kl_stops_the_epochs_and_is_logged(target_kl):
    extra = {"epochs": 3, "lr": 0.01} | ({"target_kl": target_kl} if target_kl else {})
    tr, cfg, prompts, proxy, gold = _trainer(**extra)
    stats = tr.iteration(prompts, proxy, gold, torch.Generator().manual_seed(0))
    full = cfg.optimizer.epochs * cfg.optimizer.minibatches
    if target_kl is None:
        assert stats["policy/updates"] == full and stats["policy/epochs"] == 3 and stats["policy/early_stopped"] == 0
    else:
        # the first minibatch step already moves the policy past a 1e-12 approx-KL: stop after it
        assert stats["policy/updates"] < full and stats["policy/epochs"] < 3 and stats["policy/early_stopped"] == 1
    for key in (
        "adv/gold_corr",
        "adv/sign_agree",
        "adv/std_raw",
        "adv/snr",
        "adv/kl_share",
        "val/var_explained",
        "policy/grad_norm_avg",
        "policy/approxkl_avg",
        "policy/clipfrac_avg",
        "val/clipfrac_avg",
    ):
        assert key in stats and np.isfinite(stats[key]), key
    assert -1 <= stats["adv/gold_corr"] <= 1 and 0 <= stats["adv/sign_agree"] <= 1 and 0 <= stats["adv/kl_share"] <= 1
