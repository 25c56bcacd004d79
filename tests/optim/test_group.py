"""GRPO / Dr. GRPO / RLOO (rlhfsim.optim.group) against TRL 1.x's own code, run on constructed inputs.

RLOO's advantage: TRL computes it inline in `RLOOTrainer._generate_and_score_completions`
(trl/trainer/rloo_trainer.py): score minus beta x the sequence sum of k1 = old - ref logprobs, then the
leave-one-out baseline over the group. That method is called here on a stand-in trainer whose generation, forward and
reward hooks return the constructed tensors, so TRL's arithmetic itself produces the advantages compared with
`GroupOptimizer.advantages` (kl_mode reward, k1, the RLOO defaults).

RLOO's loss: TRL's `RLOOTrainer._compute_loss` clips a SEQUENCE-level ratio exp(sum logp - sum old_logp) and averages
over sequences; rlhfsim's RLOO clips each token's ratio and averages over each sequence's tokens (the GRPO loss,
`core.clipped_policy_loss`, norm "sequence"). The two agree where every completion has one token, which is checked;
on longer completions they differ (by the 1/length factor even on-policy), a known difference, not an error of either.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhfsim.optim import core
from rlhfsim.optim.config import RLOOConfig
from rlhfsim.optim.group import LOSS_NORM, GroupOptimizer


def _rollout(P=5, g=4, T=6, seed=0):
    """[B] scores, [B, T] behaviour and reference logprobs and a right-padded mask (prompt-major rows)."""
    gen = torch.Generator().manual_seed(seed)
    B = P * g
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T  # TRL pads to the longest completion
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    old = -torch.rand(B, T, generator=gen, dtype=torch.float64)
    ref = old + 0.3 * torch.randn(B, T, generator=gen, dtype=torch.float64)
    scores = torch.randn(B, generator=gen, dtype=torch.float64)
    return scores, old, ref, mask, lengths


def _trl_rloo_advantages(scores, old, ref, lengths, beta, g):
    """TRL's RLOOTrainer._generate_and_score_completions on a stand-in trainer (one process, no images)."""
    from trl.trainer.rloo_trainer import RLOOTrainer

    B = scores.shape[0]
    model, ref_model = SimpleNamespace(training=True, is_gradient_checkpointing=False), object()
    acc = SimpleNamespace(device=torch.device("cpu"), process_index=0, reduce=lambda t, reduction="sum": t)
    fake = SimpleNamespace(
        accelerator=acc,
        model=model,
        ref_model=ref_model,
        beta=beta,
        num_generations=g,
        num_generations_eval=g,
        _generate=lambda prompts: ([[1, 2]] * B, [[7] * int(n) for n in lengths], ["c"] * B),
        _tokenizer=SimpleNamespace(pad_token_id=0),
        pad_to_multiple_of=None,
        mask_truncated_completions=False,
        args=SimpleNamespace(
            per_device_train_batch_size=B, per_device_eval_batch_size=B, gradient_checkpointing_kwargs=None
        ),
        _get_per_token_logps_and_entropies=lambda m, *a, **k: (old if m is model else ref, None, None),
        _calculate_rewards=lambda *a: scores[:, None].clone(),
        reward_weights=torch.ones(1, dtype=torch.float64),
        reward_clip_range=None,
        normalize_advantages=False,
        reward_func_names=["rm"],
        _metrics={"train": defaultdict(list)},
        _logs={
            "prompt": [],
            "completion": [],
            "rewards": defaultdict(list),
            "advantages": [],
            "extra": defaultdict(list),
        },
        _pending_extra_logs={},
        _pending_metrics={},
    )
    out = RLOOTrainer._generate_and_score_completions(fake, [{"prompt": "p"}] * B)
    assert torch.equal(
        out["completion_mask"].double(), (torch.arange(old.shape[1])[None, :] < lengths[:, None]).double()
    )
    return out["advantages"]


def _ours(cfg: RLOOConfig) -> GroupOptimizer:
    opt = GroupOptimizer.__new__(GroupOptimizer)  # only the advantage path: no models needed
    opt.cfg, opt.name = cfg, cfg.name
    return opt


@pytest.mark.parametrize("beta,g", [(0.05, 4), (0.0, 4), (0.2, 2), (0.05, 5)])
def test_rloo_advantages_equal_trls_rloo_trainer(beta, g):
    scores, old, ref, mask, lengths = _rollout(g=g, seed=g)
    cfg = RLOOConfig(kl_coef=beta, group_size=g, batch_size=scores.shape[0], minibatches=1)
    assert cfg.kl_mode == "reward" and cfg.kl_estimator == "k1"  # the defaults are TRL's choice
    ours = _ours(cfg).advantages(scores, SimpleNamespace(logprobs=old, ref_logprobs=ref, mask=mask))
    trl = _trl_rloo_advantages(scores, old, ref, lengths, beta, g)
    assert torch.allclose(ours, trl, rtol=0, atol=1e-12)
    if beta:  # the KL penalty moves the advantages: the comparison sees it
        assert not torch.allclose(ours, core.group_advantages(scores, g, "rloo"), atol=1e-6)


def _trl_rloo_loss(new, old, adv, mask, eps):
    from trl.trainer.rloo_trainer import RLOOTrainer

    acc = SimpleNamespace(reduce=lambda t, reduction="sum": t, gather=lambda t: t, gather_for_metrics=lambda t: t)
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (new, torch.zeros_like(new), None),
        aux_loss_enabled=False,
        epsilon_low=eps,
        epsilon_high=eps,
        model=SimpleNamespace(training=True),
        accelerator=acc,
        _metrics={"train": defaultdict(list)},
    )
    inputs = {
        "prompt_ids": torch.zeros(new.shape[0], 2, dtype=torch.long),
        "prompt_mask": torch.ones(new.shape[0], 2),
        "completion_ids": torch.zeros_like(mask, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_logps": (old * mask).sum(1),
    }
    return RLOOTrainer._compute_loss(fake, None, inputs)


def test_rloo_loss_equals_trls_on_one_token_completions():
    gen = torch.Generator().manual_seed(7)
    old = -torch.rand(12, 1, generator=gen, dtype=torch.float64)
    new = old + 0.4 * torch.randn(12, 1, generator=gen, dtype=torch.float64)  # ratios beyond the clip range too
    adv, mask = torch.randn(12, generator=gen, dtype=torch.float64), torch.ones(12, 1, dtype=torch.float64)
    ours, stats = core.clipped_policy_loss(new, old, adv, mask, 0.2, LOSS_NORM["rloo"], 1)
    assert 0 < stats["policy/clipfrac"] < 1  # both clipped and unclipped rows
    assert ours.item() == pytest.approx(_trl_rloo_loss(new, old, adv, mask, 0.2).item(), rel=1e-12)
