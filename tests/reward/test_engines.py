import subprocess
import sys

import numpy as np
import pytest
import torch

from rlhfsim.config import RewardConfig
from rlhfsim.reward.engines import Engine, LoopEngine, StackedEngine
from rlhfsim.reward.heads import HeadRewardModels, HeadsEngine
from rlhfsim.reward.listwise import GroupTensors
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.trainer import make_engine, utilities_for
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig
from tests.fixtures.groups import reference_groups


@pytest.mark.slow
def test_heads_does_not_import_the_trainer():
    # heads, engines and listwise form a chain without a cycle back to trainer
    code = "import sys, rlhfsim.reward.heads; assert 'rlhfsim.reward.trainer' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _setup(**kw):
    world = SyntheticWorld(SyntheticWorldConfig())
    groups = reference_groups(world, 8, np.random.default_rng(0))
    cfg = RewardConfig(**{"n_layer": 1, "n_embd": 16, "n_head": 2, "epochs": 2, "lr": 1e-2, "batch_groups": 8, **kw})
    return world, groups, cfg


@pytest.mark.parametrize("kind", ["loop", "stacked", "heads"])
def test_every_engine_owns_its_optimisers_and_clips_from_config(kind):
    world, groups, cfg = _setup(
        ensemble_size=2, stacked=kind == "stacked", ensemble_kind="heads" if kind == "heads" else "members"
    )
    rms = (HeadRewardModels if kind == "heads" else RewardModels)(world.tokenizer, cfg, torch.device("cpu"), seed=0)
    data = GroupTensors(rms.tokenizer, groups, world.prompt_types, rms.device)
    engine = make_engine(rms, cfg, data)
    assert isinstance(engine, Engine) and isinstance(
        engine, {"loop": LoopEngine, "stacked": StackedEngine, "heads": HeadsEngine}[kind]
    )
    assert len(engine.opts) == len(engine.scheds) == (2 if kind == "loop" else 1)
    assert engine.max_grad_norm == 1.0


def _one_step_change(max_grad_norm):
    world, groups, cfg = _setup(max_grad_norm=max_grad_norm, lr=1.0, weight_decay=0.0)
    torch.manual_seed(0)
    rms = RewardModels(world.tokenizer, cfg, torch.device("cpu"), seed=0)
    data = GroupTensors(rms.tokenizer, groups, world.prompt_types, rms.device)
    engine = make_engine(rms, cfg, data)
    grads = {}
    orig = engine._clip

    def spy(i):
        orig(i)
        grads["norm"] = float(
            torch.norm(torch.stack([p.grad.norm() for p in engine.param_sets[i] if p.grad is not None]))
        )

    engine._clip = spy
    engine.step(data, torch.arange(len(data))[None], utilities_for(cfg, world.prompt_types), False)
    return grads["norm"]


def test_gradient_clipping_follows_the_config():
    clipped = _one_step_change(1e-3)
    free = _one_step_change(None)
    assert clipped == pytest.approx(1e-3, rel=1e-3)  # the norm after clipping is the configured one
    assert free > 1e-2  # unclipped it is the raw gradient's
