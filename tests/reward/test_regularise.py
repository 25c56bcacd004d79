"""Regularisation terms on hand values, and their effect when training a tiny reward model."""

import numpy as np
import pytest
import torch

from rlhfsim.config import RewardConfig
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.regularise import centring_penalty, with_margin
from rlhfsim.reward.trainer import listwise_loss, train_reward_models
from rlhfsim.reward.utilities import get_utility
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig
from tests.fixtures.groups import reference_groups


def test_margin_shifts_the_utility_argument():
    U = get_utility("logsigmoid")
    (Um,) = with_margin([U], 0.5)
    d = torch.tensor([0.0, 1.0, 2.0])
    torch.testing.assert_close(Um(d), U(d - 0.5))
    assert Um.needs_bounded == U.needs_bounded
    assert with_margin([U], 0.0)[0] is U
    # one pair won by 1.0: with margin 1 the BT loss is ln 2 (as if tied)
    logits, prefs = torch.tensor([[1.0, 0.0]]), torch.tensor([[[False, True], [False, False]]])
    loss, _ = listwise_loss(logits, prefs, torch.tensor([0]), [Um], bounded=False)
    assert loss.item() == pytest.approx(-float(torch.nn.functional.logsigmoid(torch.tensor(0.5))))


def test_centring_penalty_on_hand_values():
    logits = torch.tensor([[1.0, 3.0, 99.0], [-2.0, 0.0, 99.0]])
    valid = torch.tensor([[True, True, False], [True, True, False]])  # padding never counts
    assert centring_penalty(logits, valid, 0.1).item() == pytest.approx(0.1 * (1 + 9 + 4 + 0) / 4)
    assert centring_penalty(logits, valid, 0.0).item() == 0.0
    assert centring_penalty(logits, torch.zeros_like(valid), 1.0).item() == 0.0


def test_centring_pulls_trained_rewards_towards_zero():
    world = SyntheticWorld(SyntheticWorldConfig())
    groups = reference_groups(world, 24, np.random.default_rng(0))
    scale = {}
    for coef in (0.0, 1.0):
        cfg = RewardConfig(n_layer=1, n_embd=16, n_head=2, epochs=6, lr=1e-2, center_coef=coef, dropout=0.1, margin=0.2)
        rms = RewardModels(world.tokenizer, cfg, torch.device("cpu"), seed=0)
        train_reward_models(rms, groups, cfg, world.prompt_types, np.random.default_rng(1))
        z = rms.logits(
            [g.prompt.text for g in groups for _ in g.completions], [c for g in groups for c in g.completions]
        )
        scale[coef] = float(np.mean(z**2))
    assert scale[1.0] < scale[0.0]
