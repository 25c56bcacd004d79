"""PPO micro-batches: the accumulated, token-weighted gradient and the stats equal those of the whole minibatch."""

import copy

import numpy as np
import pytest
import torch

from rlhfsim.config import load_config
from rlhfsim.models.parallel import Parallel
from rlhfsim.models.policy import build_policy, build_value_model
from rlhfsim.ppo.kl import get_kl_controller
from rlhfsim.ppo.trainer import PPOTrainer
from rlhfsim.world import build_world


def test_micro_batches_match_the_whole_minibatch():
    cfg = load_config("configs/tiny.yaml", ["optimizer.minibatches=1", "optimizer.epochs=1", "optimizer.batch_size=8"])
    world = build_world(cfg.world)
    torch.manual_seed(0)
    policy = build_policy(world.tokenizer, cfg.policy, 32 + cfg.policy.response_len)
    value = build_value_model(policy, "policy")
    prompts = world.sample_prompts(8, np.random.default_rng(0))
    score = lambda ps, texts: np.array([len(t.split()) / 8 for t in texts])
    out = []
    for micro in (None, 3):
        pol, val = copy.deepcopy(policy), copy.deepcopy(value)
        trainer = PPOTrainer(
            pol,
            copy.deepcopy(pol).requires_grad_(False),
            val,
            world.tokenizer,
            cfg.optimizer,
            get_kl_controller("fixed", beta=0.1),
            1.0,
            cfg.policy.response_len,
            torch.device("cpu"),
            Parallel(micro_batch=micro),
        )
        exp = trainer.rollout(prompts, score, score, torch.Generator().manual_seed(1))
        out.append(trainer.update(exp, torch.Generator().manual_seed(2)))
    whole, micro = out
    assert whole["policy/updates"] == micro["policy/updates"] == 1
    for k in ("loss/policy", "loss/value", "policy/approxkl", "policy/entropy", "policy/grad_norm", "val/clipfrac"):
        assert micro[k] == pytest.approx(whole[k], rel=1e-5, abs=1e-7), k
