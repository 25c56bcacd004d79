"""rlhfsim.iterated: LITI's interpolation, the parameter mean, restart from SFT, the KL anchor (known answers)."""

import pytest
import torch

from rlhfsim.iterated import Anchor, PolicyStart, clone_state, interpolate_states, mean_states
from rlhfsim.optim.base import PolicyOptimizer


def linear(w, b):
    m = torch.nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(w, dtype=torch.float32))
        m.bias.copy_(torch.tensor(b, dtype=torch.float32))
    return m


def test_interpolate_states_is_the_stated_mix_parameter_by_parameter():
    a, b = linear([[1, 2], [3, 4]], [0, 10]).state_dict(), linear([[5, 6], [7, 8]], [4, -10]).state_dict()
    a["steps"], b["steps"] = torch.tensor(3), torch.tensor(7)  # an integer buffer: taken from the last, not mixed
    out = interpolate_states(a, b, 0.25)  # 0.75 * a + 0.25 * b, by hand:
    assert torch.equal(out["weight"], torch.tensor([[2.0, 3.0], [4.0, 5.0]]))
    assert torch.equal(out["bias"], torch.tensor([1.0, 5.0]))
    assert out["steps"].item() == 7
    assert torch.equal(interpolate_states(a, b, 1.0)["weight"], b["weight"])  # eta 1: the last policy's weights
    with pytest.raises(ValueError, match="keys"):
        interpolate_states({"x": torch.zeros(1)}, {"y": torch.zeros(1)}, 0.5)


def test_mean_states_equals_the_mean_of_parameters():
    s = [
        linear([[1, 2], [3, 4]], [0, 3]).state_dict(),
        linear([[3, 2], [1, 0]], [3, 0]).state_dict(),
        linear([[2, 2], [2, 2]], [0, 0]).state_dict(),
    ]
    out = mean_states(s)
    assert torch.allclose(out["weight"], torch.full((2, 2), 2.0))
    assert torch.allclose(out["bias"], torch.tensor([1.0, 1.0]))


class Opt(PolicyOptimizer):
    """The real optimiser base with one AdamW: what PolicyStart reads (models, state_dict) and nothing else."""

    def __init__(self, policy):
        super().__init__(policy, None, None, None, 1.0, 4, "cpu")
        self.optimizer = torch.optim.AdamW(policy.parameters(), lr=0.1)

    def step(self, w, b):  # one real update (so AdamW has state), then set weights to a known value
        self.policy(torch.ones(1, 2)).sum().backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        with torch.no_grad():
            self.policy.weight.copy_(torch.tensor(w, dtype=torch.float32))
            self.policy.bias.copy_(torch.tensor(b, dtype=torch.float32))
        self.iterations_done += 1


def test_sft_start_restores_the_initial_weights_and_resets_optimiser_state():
    opt = Opt(linear([[1, 1], [1, 1]], [0, 0]))
    ps = PolicyStart("sft", 0.5, opt)
    opt.step([[9, 9], [9, 9]], [5, 5])
    assert opt.optimizer.state  # AdamW moments exist after a step
    ps.apply(opt, 2)
    assert torch.equal(opt.policy.weight, torch.ones(2, 2)) and torch.equal(opt.policy.bias, torch.zeros(2))
    assert not opt.optimizer.state  # reset
    assert opt.iterations_done == 1  # a diagnostics cadence, kept


def test_continue_start_changes_nothing():
    opt = Opt(linear([[1, 1], [1, 1]], [0, 0]))
    ps = PolicyStart("continue", 0.5, opt)
    opt.step([[9, 9], [9, 9]], [5, 5])
    before = clone_state(opt.policy)
    ps.apply(opt, 2)
    assert all(torch.equal(v, opt.policy.state_dict()[k]) for k, v in before.items()) and opt.optimizer.state


def test_interpolated_start_follows_liti_over_rounds():
    """start_1 = W0 (SFT); start_2 = (1 - eta) W0 + eta W1; start_3 = (1 - eta) start_2 + eta W2 (by hand, eta 0.25)."""
    opt = Opt(linear([[0, 0], [0, 0]], [0, 0]))
    ps = PolicyStart("interpolate", 0.25, opt)
    ps.apply(opt, 1)  # round 1 starts from SFT itself
    assert torch.equal(opt.policy.weight, torch.zeros(2, 2))
    opt.step([[4, 8], [4, 8]], [4, 0])  # W1
    ps.apply(opt, 2)
    assert torch.equal(opt.policy.weight, torch.tensor([[1.0, 2.0], [1.0, 2.0]])) and not opt.optimizer.state
    opt.step([[9, 2], [1, 2]], [0, 4])  # W2
    ps.apply(opt, 3)  # 0.75 * [[1, 2], [1, 2]] + 0.25 * W2
    assert torch.equal(opt.policy.weight, torch.tensor([[3.0, 2.0], [1.0, 2.0]]))
    assert torch.equal(opt.policy.bias, torch.tensor([0.75 * 1 + 0, 1.0]))
    other = PolicyStart("interpolate", 0.25, Opt(linear([[0, 0], [0, 0]], [0, 0])))
    other.load_state_dict(ps.state_dict())  # resume: the start point travels with the checkpoint
    assert torch.equal(other.start["policy"]["weight"], ps.start["policy"]["weight"])


def test_unknown_start_or_anchor_names_the_valid_ones():
    with pytest.raises(ValueError, match="continue, sft, interpolate"):
        PolicyStart("restart", 0.5, Opt(linear([[0, 0], [0, 0]], [0, 0])))
    with pytest.raises(ValueError, match="sft, round_start"):
        Anchor("start", linear([[0, 0], [0, 0]], [0, 0]))


def test_the_kl_anchor_is_sft_itself_or_follows_the_round_start():
    sft, policy = linear([[1, 1], [1, 1]], [0, 0]), linear([[2, 3], [4, 5]], [1, 1])
    a = Anchor("sft", sft)
    a.reset(policy)
    assert a.module is sft and torch.equal(sft.weight, torch.ones(2, 2))
    b = Anchor("round_start", sft)
    b.reset(policy)
    assert b.module is not sft and torch.equal(b.module.weight, policy.weight)
    assert torch.equal(sft.weight, torch.ones(2, 2))  # the SFT policy (evaluations' reference) is untouched
