"""PPOTrainer on a toy task, with a separate value model and with a value head on the policy's trunk."""

import copy

import numpy as np
import pytest
import torch

from rlhfsim.config import PPOConfig
from rlhfsim.models.policy import build_policy, build_value_model
from rlhfsim.ppo.kl import FixedKLController
from rlhfsim.ppo.trainer import PPOTrainer
from rlhfsim.world.base import Prompt
from rlhfsim.world.tokenizer import build_word_tokenizer


class P:
    n_layer, n_embd, n_head = 1, 32, 2


def toy_trainer(value_model: str, seed: int = 0):
    tok = build_word_tokenizer([f"w{i}" for i in range(12)])
    torch.manual_seed(seed)
    policy = build_policy(tok, P, n_positions=32).eval()
    ref = copy.deepcopy(policy).requires_grad_(False)
    value = build_value_model(policy, "policy", value_model)
    cfg = PPOConfig(batch_size=32, epochs=2, minibatches=2, lr=3e-3, kl_coef=0.0, value_model=value_model)
    trainer = PPOTrainer(policy, ref, value, tok, cfg, FixedKLController(0.0), 1.0, 4, torch.device("cpu"))
    prompts = [Prompt(i, "toy", "open", "w1 w2") for i in range(32)]
    return trainer, prompts


def share_of_w3(prompts, texts) -> np.ndarray:  # the toy reward: how often the completion says w3
    return np.array([t.split().count("w3") / 4 for t in texts])


@pytest.mark.parametrize("value_model", ["separate", "shared"])
def test_ppo_learns_toy_reward(value_model):
    trainer, prompts = toy_trainer(value_model)
    gen = torch.Generator().manual_seed(0)
    first = [trainer.iteration(prompts, share_of_w3, share_of_w3, gen) for _ in range(3)]
    for _ in range(25):
        last = trainer.iteration(prompts, share_of_w3, share_of_w3, gen)
    assert np.isfinite(last["loss/value_avg"]) and np.isfinite(last["loss/policy_avg"])
    assert last["objective/scores"] > np.mean([s["objective/scores"] for s in first]) + 0.15


def test_shared_head_rollout_values_match_a_full_forward():
    trainer, prompts = toy_trainer("shared")
    torch.nn.init.normal_(trainer.value.score.weight)  # a non-zero head, so the comparison means something
    exp = trainer.rollout(prompts, share_of_w3, share_of_w3, torch.Generator().manual_seed(1))
    with torch.no_grad():
        from rlhfsim.models.sampling import response_logits_values

        _, full = response_logits_values(trainer.policy, trainer.value, exp.seq)
    mask = exp.seq.response_mask.float()
    # the sampler's hidden states (KV cache) give the same values as one full forward
    assert torch.allclose(exp.values, full * mask, atol=1e-5)
    assert exp.values.abs().sum() > 0


def count_calls(module) -> list:
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_one_minibatch_reuses_the_rollout_value_forward():
    """With one minibatch the update backpropagates through the rollout's value forward: one value forward per
    iteration instead of two, and the same stats and (to float rounding) the same weights as computing it again."""
    runs = []
    for reuse in (True, False):
        trainer, prompts = toy_trainer("separate")
        trainer.cfg = trainer.cfg.model_copy(update={"epochs": 2, "minibatches": 1})
        if not reuse:
            trainer.reuses_value_forward = lambda batch: False
        calls = count_calls(trainer.value.score)  # the head runs once per value forward, on either path
        gen = torch.Generator().manual_seed(0)
        stats = [trainer.iteration(prompts, share_of_w3, share_of_w3, gen) for _ in range(2)]
        runs.append((stats, len(calls), trainer))
    (fused, n_fused, a), (plain, n_plain, b) = runs
    assert a.reuses_value_forward(32) and n_fused == 2 * 2 and n_plain == 2 * 3  # 2 iterations x (rollout + 2 epochs)
    for s, t in zip(fused, plain):
        for k, v in s.items():
            assert v == pytest.approx(t[k], rel=1e-5, abs=1e-6, nan_ok=True), k
    for p, q in zip(a.value.parameters(), b.value.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert any(
        (p - q).abs().max() > 0 for p, q in zip(a.value.parameters(), toy_trainer("separate")[0].value.parameters())
    )


def test_value_forward_is_recomputed_where_reuse_would_change_the_math():
    trainer, _ = toy_trainer("separate")  # two minibatches: the first holds half of the rows
    assert not trainer.reuses_value_forward(32)
    trainer.cfg = trainer.cfg.model_copy(update={"minibatches": 1})
    assert trainer.reuses_value_forward(32)
    trainer.parallel.micro_batch = 8  # several chunks: each chunk's forward is its own
    assert not trainer.reuses_value_forward(32)
    trainer.parallel.micro_batch = None
    trainer.value.transformer.drop.p = 0.1  # dropout: train-mode values are not the rollout's values
    assert not trainer.reuses_value_forward(32)
    assert not toy_trainer("shared")[0].reuses_value_forward(32)  # the head's values come from the sampler already
