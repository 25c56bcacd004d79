"""Online DPO (rlhfsim.optim.online_dpo) against TRL 1.x's own code, run on constructed inputs.

TRL computes the online-DPO loss inline in `OnlineDPOTrainer.training_step`
(trl/experimental/online_dpo/online_dpo_trainer.py): two completions per prompt, laid out completion-major (every
prompt's first completion, then every prompt's second), chosen = the first where its reward >= the second's, sequence
logprobs summed under the completion mask, loss mean(-logsigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r)))), then
`accelerator.backward(loss)`. That method is called here on a stand-in trainer whose generation, forward and reward
hooks return the constructed tensors; its loss, its logged margins and the gradient it sends into the policy's token
logprobs are compared with the calls OnlineDPO.update makes: `core.best_worst_pairs` on prompt-major rows, masked
sums, `core.dpo_loss`. Distinct rewards only: on a tie TRL keeps the pair (first completion chosen), rlhfsim drops
the group (no order to learn), a deliberate difference.
"""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhfsim.optim import core


def _pairs(P=6, T=5, seed=0):
    """Prompt-major rows (prompt i: rows 2i, 2i+1): scores [2P], policy and reference token logprobs [2P, T], mask."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (2 * P,), generator=gen)
    lengths[0] = T
    mask = (torch.arange(T)[None, :] < lengths[:, None]).double()
    new = -torch.rand(2 * P, T, generator=gen, dtype=torch.float64)
    ref = new + 0.5 * torch.randn(2 * P, T, generator=gen, dtype=torch.float64)
    scores = torch.randperm(2 * P, generator=gen).double()  # distinct
    return scores, new, ref, mask


def _trl_online_dpo(scores, new, ref, mask, beta):
    """TRL's OnlineDPOTrainer.training_step on a stand-in trainer: (loss, stats, grad of the policy logprobs)."""
    from trl.experimental.online_dpo import OnlineDPOTrainer

    P = scores.shape[0] // 2
    cm = torch.cat([torch.arange(0, 2 * P, 2), torch.arange(1, 2 * P, 2)])  # completion-major order of our rows
    leaf = new.detach().clone().requires_grad_(True)
    policy, ref_model = SimpleNamespace(train=lambda: None), object()
    fake = SimpleNamespace(
        args=SimpleNamespace(
            use_vllm=False,
            missing_eos_penalty=None,
            loss_type="sigmoid",
            torch_empty_cache_steps=None,
            optim="adamw_torch",
            n_gpu=1,
            gradient_accumulation_steps=1,
        ),
        _generate=lambda model, prompts, images: (
            torch.ones(2 * P, 2, dtype=torch.long),
            torch.ones(2 * P, 2, dtype=torch.long),
            torch.full(mask.shape, 7, dtype=torch.long),
            mask[cm].long(),
            None,
        ),
        eos_token_ids=[99],
        ref_model=ref_model,
        beta=beta,
        reward_funcs=["rm"],
        stats=defaultdict(list),
        _forward=lambda model, *a: leaf[cm] if model is policy else ref[cm],
        processing_class=SimpleNamespace(batch_decode=lambda ids, skip_special_tokens=True: ["c"] * len(ids)),
        _calculate_rewards_from_functions=lambda **kw: scores[cm].clone(),
        accelerator=SimpleNamespace(gather_for_metrics=lambda t: t, backward=lambda loss, **kw: loss.backward()),
    )
    loss = OnlineDPOTrainer.training_step(fake, policy, {"prompt": ["p"] * P})
    return loss, fake.stats, leaf.grad


@pytest.mark.filterwarnings("ignore:You are importing from 'trl.experimental'")
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_online_dpo_loss_margins_and_gradient_equal_trls(beta):
    scores, new, ref, mask = _pairs(seed=int(beta * 10))
    leaf = new.detach().clone().requires_grad_(True)
    chosen, rejected = core.best_worst_pairs(scores, 2)  # as OnlineDPO.iteration / update
    assert chosen.numel() == scores.shape[0] // 2  # distinct scores: one pair per prompt
    logp, ref_seq = (leaf * mask).sum(-1), (ref * mask).sum(-1)
    loss, h = core.dpo_loss(logp[chosen], logp[rejected], ref_seq[chosen], ref_seq[rejected], beta)
    loss.backward()
    trl_loss, stats, trl_grad = _trl_online_dpo(scores, new, ref, mask, beta)
    assert loss.item() == pytest.approx(trl_loss.item(), rel=1e-12)
    assert stats["rewards/margins"][0] == pytest.approx(h.mean().item(), rel=1e-12)
    assert torch.allclose(leaf.grad, trl_grad, rtol=0, atol=1e-14)
    assert leaf.grad.abs().sum() > 0  # the comparison sees a real gradient
    # swapping every pair's scores swaps chosen and rejected: both sides move, and still agree
    swapped = scores.view(-1, 2).flip(1).reshape(-1)
    c2, r2 = core.best_worst_pairs(swapped, 2)
    loss2, _ = core.dpo_loss(logp[c2], logp[r2], ref_seq[c2], ref_seq[r2], beta)
    assert loss2.item() != pytest.approx(loss.item())
    assert loss2.item() == pytest.approx(_trl_online_dpo(swapped, new, ref, mask, beta)[0].item(), rel=1e-12)
