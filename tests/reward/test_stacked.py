"""The stacked (vmapped) ensemble against the per-member loop: same scores, same training."""

import copy

import numpy as np
import pytest
import torch

from rlhfsim.bench.common import Shape, vocab_tokenizer
from rlhfsim.bench.reward import preference_groups
from rlhfsim.config import RewardConfig
from rlhfsim.reward.model import RewardModels
from rlhfsim.reward.stacked import Stack, clip_grad_norm_per_member
from rlhfsim.reward.trainer import train_reward_models


@pytest.fixture(scope="module")
def setup():
    shape = Shape(vocab=24, rm_groups=10, rm_k=3, rm_seq_len=8, prompt_len=2)
    tok = vocab_tokenizer(shape.vocab)
    groups = preference_groups(shape, seed=3)
    return tok, groups


def _rms(tok, **kw):
    cfg = RewardConfig(**{"n_layer": 1, "n_embd": 16, "n_head": 2, "epochs": 2, "batch_groups": 4, **kw})
    return RewardModels(tok, cfg, torch.device("cpu"), seed=5, n_positions=16), cfg


def _texts(groups):
    return [g.prompt.text for g in groups for _ in g.completions], [c for g in groups for c in g.completions]


def test_stacked_scores_equal_loop(setup):
    tok, groups = setup
    rms, _ = _rms(tok, ensemble_size=3)
    p, c = _texts(groups)
    stacked = rms.logits(p, c)
    rms.stacked = False
    loop = rms.logits(p, c)
    assert stacked.shape == (3, len(c))
    np.testing.assert_allclose(stacked, loop, atol=1e-5)
    # members differ: different init seeds give different scores
    assert np.abs(loop[0] - loop[1]).max() > 1e-3 and np.abs(loop[1] - loop[2]).max() > 1e-3


@pytest.mark.parametrize("data", ["own_order", "bootstrap"])
def test_stacked_training_equals_loop(setup, data):
    tok, groups = setup
    rms_a, cfg_a = _rms(tok, ensemble_size=3, ensemble_data=data)
    rms_b, cfg_b = _rms(tok, ensemble_size=3, ensemble_data=data, stacked=False)
    sa = train_reward_models(rms_a, groups, cfg_a, ["open", "closed"], np.random.default_rng(0))
    sb = train_reward_models(rms_b, groups, cfg_b, ["open", "closed"], np.random.default_rng(0))
    assert sa["rm/stacked"] == 1 and sb["rm/stacked"] == 0
    assert sa["rm/loss"] == pytest.approx(sb["rm/loss"], abs=1e-4)
    for ma, mb in zip(rms_a.members, rms_b.members):
        for (k, pa), pb in zip(ma.named_parameters(), mb.parameters()):
            torch.testing.assert_close(pa, pb, atol=2e-4, rtol=1e-3, msg=k)
    p, c = _texts(groups)
    trained = rms_a.logits(p, c)
    assert np.abs(trained[0] - trained[1]).max() > 1e-3  # trained members still differ


def test_stacked_early_stopping_equals_loop(setup):
    tok, groups = setup
    kw = dict(ensemble_size=2, epochs=4, early_stop={"mode": "patience", "holdout": 0.3})
    rms_a, cfg_a = _rms(tok, **kw)
    rms_b, cfg_b = _rms(tok, stacked=False, **kw)
    sa = train_reward_models(rms_a, groups, cfg_a, ["open", "closed"], np.random.default_rng(1))
    sb = train_reward_models(rms_b, groups, cfg_b, ["open", "closed"], np.random.default_rng(1))
    assert sa["rm/heldout_groups"] > 0
    for k in ("rm/epochs", "rm/kept_epoch", "rm/stop_reason"):
        assert sa[k] == sb[k]
    assert sa["rm/heldout_loss"] == pytest.approx(sb["rm/heldout_loss"], abs=1e-4)


def test_per_member_clipping_matches_torch():
    torch.manual_seed(0)
    mods = [torch.nn.Linear(4, 3) for _ in range(3)]
    for i, m in enumerate(mods):
        (m(torch.randn(5, 4)) * (i + 1) * 10).sum().backward()
    params = [torch.stack([dict(m.named_parameters())[k].grad for m in mods]) for k in ("weight", "bias")]
    leaves = [torch.zeros_like(p, requires_grad=True) for p in params]
    for leaf, g in zip(leaves, params):
        leaf.grad = g.clone()
    clip_grad_norm_per_member(leaves, 1.0)
    for i, m in enumerate(mods):
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        torch.testing.assert_close(leaves[0].grad[i], m.weight.grad)
        torch.testing.assert_close(leaves[1].grad[i], m.bias.grad)


def test_unstackable_members_fall_back_to_loop(setup):
    tok, groups = setup
    rms, _ = _rms(tok, ensemble_size=2)
    rms.members[1] = copy.deepcopy(rms.members[1])
    rms.members[1].score = torch.nn.Linear(16, 1, bias=True)  # shapes differ: cannot stack
    assert Stack.build(rms.members, requires_grad=False) is None
    p, c = _texts(groups)
    assert rms.logits(p, c).shape == (2, len(c))
