"""reward.across_rounds (rlhfsim.reward.rounds through the Proxy): mean, min and parameter average of the rounds'
reward models on constructed linear 'reward models' with known answers."""

import numpy as np
import pytest
import torch

from rlhfsim.config import ConfigError, config_from_dict
from rlhfsim.reward.model import MemberRewards
from rlhfsim.reward.proxy import Proxy
from rlhfsim.world.base import Prompt


class LinearRM(MemberRewards):
    """One member: reward = w * len(text) + b (a module with two parameters, so weights can be averaged)."""

    bounded = False

    def __init__(self, w, b):
        m = torch.nn.Linear(1, 1)
        with torch.no_grad():
            m.weight.fill_(w)
            m.bias.fill_(b)
        self.members = [m]

    def set(self, w, b):
        with torch.no_grad():
            self.members[0].weight.fill_(w)
            self.members[0].bias.fill_(b)

    def logits(self, prompts, completions):
        x = torch.tensor([[float(len(t))] for t in completions])
        with torch.no_grad():
            return self.members[0](x).numpy().T.astype(np.float64)  # [1, N]


TEXTS = ["a", "bbb", "cc", "dddddd"]  # lengths 1, 3, 2, 6
PROMPTS = [Prompt(id=i, family="open", type="open", text=f"p{i}") for i in range(4)]
L = np.array([1.0, 3.0, 2.0, 6.0])


def proxy(mode, standardise=False):
    cfg = config_from_dict({"reward": {"across_rounds": mode, "standardise_members": standardise}})
    rms = LinearRM(1.0, 0.0)
    p = Proxy(cfg, rms, lambda prompts, texts: np.zeros(len(texts)))
    for r, (w, b) in enumerate([(1.0, 0.0), (-1.0, 4.0), (2.0, -2.0)], start=1):  # three rounds' trained models
        rms.set(w, b)
        p.add_round(r)
    rms.set(100.0, 100.0)  # the live model moves on: the snapshots must not
    return p


def test_mean_of_rounds_is_the_mean_of_their_rewards():
    np.testing.assert_allclose(proxy("mean").score(PROMPTS, TEXTS), ((L) + (4 - L) + (2 * L - 2)) / 3)


def test_min_of_rounds_is_the_pointwise_minimum():
    expect = np.minimum.reduce([L, 4 - L, 2 * L - 2])
    np.testing.assert_allclose(proxy("min").score(PROMPTS, TEXTS), expect)


def test_standardised_min_uses_each_rounds_scale_on_the_probe_set():
    p = proxy("min", standardise=True)
    scale = p.fit_member_scale(PROMPTS, TEXTS)  # (mu [3], sd [3]) of the rounds on the probe
    rounds = np.stack([L, 4 - L, 2 * L - 2])
    np.testing.assert_allclose(scale[0], rounds.mean(1))
    p.set_member_scale(scale)
    z = (rounds - rounds.mean(1, keepdims=True)) / rounds.std(1, keepdims=True)
    np.testing.assert_allclose(p.score(PROMPTS, TEXTS), rounds.std(1).mean() * z.min(0) + rounds.mean(1).mean())


def test_weight_average_is_the_model_with_the_mean_parameters():
    p = proxy("weight_average")
    (scorer,) = p.rounds.scorers.values()
    assert scorer.members[0].weight.item() == pytest.approx(2 / 3) and scorer.members[0].bias.item() == pytest.approx(
        2 / 3
    )
    np.testing.assert_allclose(p.score(PROMPTS, TEXTS), 2 / 3 * L + 2 / 3, rtol=1e-6)


def test_snapshots_round_trip_and_truncate():
    p = proxy("mean")
    q = Proxy(
        config_from_dict({"reward": {"across_rounds": "mean"}}), LinearRM(0.0, 0.0), lambda a, b: np.zeros(len(b))
    )
    q.rounds.load_state_dict(p.rounds.state_dict(), q.rms)  # resume
    np.testing.assert_allclose(q.score(PROMPTS, TEXTS), p.score(PROMPTS, TEXTS))
    q.rounds.truncate([1, 2], q.rms)  # a skipped round 3: its snapshot undone
    np.testing.assert_allclose(q.score(PROMPTS, TEXTS), np.full(4, 2.0))


def test_last_keeps_no_snapshots_and_bad_combinations_are_refused():
    p = Proxy(config_from_dict({}), LinearRM(1.0, 0.0), lambda a, b: np.zeros(len(b)))
    p.add_round(1)
    assert p.rounds is None
    with pytest.raises(ConfigError, match="ensemble_size: 1"):
        config_from_dict({"reward": {"across_rounds": "mean", "ensemble_size": 2}})
    with pytest.raises(ConfigError, match="reward_source"):
        config_from_dict({"reward": {"across_rounds": "min"}, "loop": {"reward_source": "gold"}})
    with pytest.raises(ConfigError, match="last, mean, min or weight_average|'last', 'mean', 'min'"):
        config_from_dict({"reward": {"across_rounds": "max"}})
