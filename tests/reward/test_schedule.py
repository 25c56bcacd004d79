"""reward.lr_schedule / reward.warmup: the scheduler's rates on hand values, and that both trainer engines use it."""

import numpy as np
import pytest
import torch

from rlhfsim.config import RewardConfig
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.schedule import decay_factor, make_scheduler, total_steps
from rlhfsim.reward.trainer import train_reward_models
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig
from tests.fixtures.groups import reference_groups


def _rates(schedule, warmup, steps, lr=1.0):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = make_scheduler(opt, schedule, warmup, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def test_total_steps_counts_partial_batches():
    assert total_steps(16, 16, 200) == 200
    assert total_steps(17, 16, 3) == 6


def test_default_is_no_scheduler():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert make_scheduler(opt, "constant", 0.0, 10) is None


def test_cosine_with_warmup_rates():
    r = _rates("cosine", 0.2, 10)  # 2 warmup steps: 0, 0.5, then cosine from 1 down towards 0
    np.testing.assert_allclose(r[:3], [0.0, 0.5, 1.0])
    assert np.all(np.diff(r[2:]) < 0) and r[-1] < 0.05
    np.testing.assert_allclose(_rates("constant", 0.2, 10)[2:], 1.0)
    assert _rates("linear", 0.0, 4)[0] == 1.0 and _rates("linear", 0.0, 4)[-1] == pytest.approx(0.25)


def _reward_models(world, cfg):
    if cfg.ensemble_kind == "heads":
        from rlhfsim.reward.heads import HeadRewardModels

        return HeadRewardModels(world.tokenizer, cfg, torch.device("cpu"), seed=0)
    return RewardModels(world.tokenizer, cfg, torch.device("cpu"), seed=0)


@pytest.mark.parametrize(
    "members, kind", [(1, "members"), (2, "members"), (2, "heads")]
)  # loop, stacked, heads engines
def test_trainer_steps_the_schedule(members, kind):
    """One optimiser step that is all warmup (lr 0) leaves the model as it was; without warmup it moves."""
    world = SyntheticWorld(SyntheticWorldConfig())
    groups = reference_groups(world, 8, np.random.default_rng(0))
    prompts, comps = [g.prompt.text for g in groups for _ in g.completions], [c for g in groups for c in g.completions]
    moved = {}
    for warmup in (0.0, 0.9):
        cfg = RewardConfig(
            n_layer=1,
            n_embd=16,
            n_head=2,
            epochs=1,
            lr=1e-2,
            batch_groups=8,
            ensemble_size=members,
            ensemble_kind=kind,
            lr_schedule="cosine",
            warmup=warmup,
        )
        rms = _reward_models(world, cfg)
        before = rms.logits(prompts, comps)
        train_reward_models(rms, groups, cfg, world.prompt_types, np.random.default_rng(1))
        moved[warmup] = float(np.abs(rms.logits(prompts, comps) - before).max())
    assert moved[0.9] == 0.0 < moved[0.0]


@pytest.mark.parametrize("name", ["constant", "linear", "cosine"])
def test_decay_factor_matches_transformers_schedulers(name):
    steps = 12
    np.testing.assert_allclose(
        [decay_factor(name, t, steps) for t in range(steps)],
        _rates(name, 0.0, steps) if name != "constant" else np.ones(steps),
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="valid"):
        decay_factor("exp", 0, steps)


def test_centring_coefficient_decays_over_the_round():
    world = SyntheticWorld(SyntheticWorldConfig())
    groups = reference_groups(world, 8, np.random.default_rng(0))
    cfg = RewardConfig(
        n_layer=1, n_embd=16, n_head=2, epochs=4, lr=1e-2, batch_groups=8, center_coef=0.5, center_schedule="linear"
    )
    rms = RewardModels(world.tokenizer, cfg, torch.device("cpu"), seed=0)
    from rlhfsim.reward.trainer import GroupTensors, make_engine, utilities_for

    data = GroupTensors(rms.tokenizer, groups, world.prompt_types, rms.device)
    engine = make_engine(rms, cfg, data)
    seen = []
    for _ in range(4):
        seen.append(engine.center_coef)
        engine.step(data, torch.arange(len(data))[None], utilities_for(cfg, world.prompt_types), True)
    np.testing.assert_allclose(seen, [0.5, 0.375, 0.25, 0.125])
