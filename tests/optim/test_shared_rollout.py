"""Every registered optimiser, built by its from_config, rolls out through the one shared rollout (optim/base.py) and
hands it the run's Parallel (the data-parallel same-tokens check): no optimiser keeps a copy of the rollout."""

import copy
import sys

import numpy as np
import pytest
import torch

from rlhfsim.config import config_from_dict
from rlhfsim.models.parallel import Parallel
from rlhfsim.models.policy import build_policy
from rlhfsim.optim import REGISTRY, base, optimizer_class
from rlhfsim.world.base import Prompt
from rlhfsim.world.tokenizer import build_word_tokenizer


class P:
    n_layer, n_embd, n_head = 1, 32, 2


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_optimizer_iterates_on_the_shared_rollout_with_the_runs_parallel(name, monkeypatch):
    tok = build_word_tokenizer([f"w{i}" for i in range(12)])
    torch.manual_seed(0)
    policy = build_policy(tok, P, n_positions=32).eval()
    group = 1 if name == "ppo" else 4
    cfg = config_from_dict(
        {
            "optimizer": {
                "name": name,
                "batch_size": 8,
                "group_size": group,
                "minibatches": 1,
                "epochs": 1,
                "pg_cos_every": 0,
            },
            "policy": {"n_layer": 1, "n_embd": 32, "n_head": 2, "response_len": 4},
        }
    )
    par = Parallel(micro_batch=3)
    opt = optimizer_class(name).from_config(
        cfg, policy, copy.deepcopy(policy).requires_grad_(False), tok, torch.device("cpu"), par
    )
    assert opt.parallel is par
    module = sys.modules[type(opt).__module__]
    assert module.rollout is base.rollout  # the shared function itself, not a module's own rollout
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("parallel"))
        return base.rollout(*args, **kwargs)

    monkeypatch.setattr(module, "rollout", spy)
    prompts = [Prompt(i // group, "toy", "open", "w1 w2") for i in range(8)]
    score = lambda ps, texts: np.array([t.split().count("w3") / 4 for t in texts])  # noqa: E731
    stats = opt.iteration(prompts, score, score, torch.Generator().manual_seed(0))
    assert calls == [par]  # one rollout an iteration, checked across data-parallel processes
    assert set(opt.watched) <= set(stats)
