"""The critic-free optimisers' math (rlhfsim.optim.core) against plain loops and against TRL's own code."""

from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rlhfsim.optim import core


def plain_group_advantages(scores: list[float], g: int, rule: str) -> list[float]:
    out = []
    for s in range(0, len(scores), g):
        grp = scores[s : s + g]
        mean = sum(grp) / g
        std = (sum((x - mean) ** 2 for x in grp) / (g - 1)) ** 0.5
        for x in grp:
            if rule == "grpo":
                out.append((x - mean) / (std + 1e-4))
            elif rule == "dr_grpo":
                out.append(x - mean)
            else:  # rloo: leave-one-out mean of the others
                out.append(x - (sum(grp) - x) / (g - 1))
    return out


@pytest.mark.parametrize("rule", ["grpo", "dr_grpo", "rloo"])
@pytest.mark.parametrize("g", [2, 4, 5])
def test_group_advantages_match_a_plain_loop(rule, g):
    scores = torch.randn(6 * g, generator=torch.Generator().manual_seed(g), dtype=torch.float64)
    got = core.group_advantages(scores, g, rule)
    assert torch.allclose(
        got, torch.tensor(plain_group_advantages(scores.tolist(), g, rule), dtype=torch.float64), atol=1e-12
    )


def test_group_advantage_invariances():
    s = torch.rand(32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shifted = s + torch.arange(8, dtype=torch.float64).repeat_interleave(4)  # a per-prompt offset
    for rule in ("grpo", "dr_grpo", "rloo"):  # every group baseline removes a per-prompt constant
        assert torch.allclose(core.group_advantages(shifted, 4, rule), core.group_advantages(s, 4, rule), atol=1e-12)
    # GRPO divides by the group std: a positive scale changes nothing (up to the 1e-4 guard); Dr. GRPO scales with it
    assert torch.allclose(core.group_advantages(5 * s, 4, "grpo"), core.group_advantages(s, 4, "grpo"), atol=1e-3)
    assert torch.allclose(core.group_advantages(5 * s, 4, "dr_grpo"), 5 * core.group_advantages(s, 4, "dr_grpo"))
    # RLOO = g/(g-1) x Dr. GRPO
    assert torch.allclose(core.group_advantages(s, 4, "rloo"), 4 / 3 * core.group_advantages(s, 4, "dr_grpo"))
    flat = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    assert core.flat_group_share(flat, 4) == 0.5
    assert torch.equal(core.group_advantages(flat, 4, "grpo")[:4], torch.zeros(4))  # a flat group teaches nothing


def test_group_std_is_trls_nanstd():
    from trl.trainer.utils import nanstd

    r = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(r.std(1), nanstd(r, dim=1))


def _batch(B=6, T=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    old = -torch.rand(B, T, generator=g, dtype=torch.float64)
    new = old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)
    ref = old + 0.2 * torch.randn(B, T, generator=g, dtype=torch.float64)
    adv = torch.randn(B, generator=g, dtype=torch.float64)
    return new, old, ref, adv, mask


def plain_loss(new, old, adv, mask, clip, norm, max_len, kl=None):
    B, T = new.shape
    rows, total = [], 0.0
    for b in range(B):
        row = 0.0
        for t in range(T):
            if mask[b, t] == 0:
                continue
            ratio = float(torch.exp(new[b, t] - old[b, t]))
            a = float(adv[b])
            term = max(-a * ratio, -a * min(max(ratio, 1 - clip), 1 + clip))
            if kl is not None:
                term += float(kl[b, t])
            row += term
        total += row
        rows.append(row / max(float(mask[b].sum()), 1.0))
    return sum(rows) / B if norm == "sequence" else total / (B * max_len)


@pytest.mark.parametrize("norm", ["sequence", "constant"])
def test_clipped_policy_loss_matches_a_plain_loop(norm):
    new, old, ref, adv, mask = _batch()
    kl = 0.05 * (torch.exp(ref - new) - (ref - new) - 1)
    loss, stats = core.clipped_policy_loss(new, old, adv, mask, 0.2, norm, 5, kl)
    assert loss.item() == pytest.approx(plain_loss(new, old, adv, mask, 0.2, norm, 5, kl), rel=1e-10)
    assert 0 <= stats["policy/clipfrac"] <= 1


def _trl_grpo_loss(new, old, ref, adv, mask, beta, loss_type, max_len):
    """TRL's GRPOTrainer._compute_loss itself, on a stand-in trainer whose forward returns our logprobs."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    acc = SimpleNamespace(reduce=lambda t, reduction="sum": t, gather=lambda t: t, gather_for_metrics=lambda t: t)
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (new, torch.zeros_like(new), None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level="token",
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
        loss_type=loss_type,
        epsilon_low=0.2,
        epsilon_high=0.2,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=max_len,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=acc,
    )
    inputs = {
        "prompt_ids": torch.zeros(new.shape[0], 2, dtype=torch.long),
        "prompt_mask": torch.ones(new.shape[0], 2),
        "completion_ids": torch.zeros_like(mask, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
    }
    return GRPOTrainer._compute_loss(fake, None, inputs)


@pytest.mark.parametrize("loss_type,norm", [("grpo", "sequence"), ("dr_grpo", "constant")])
def test_clipped_policy_loss_with_k3_equals_trls_grpo_loss(loss_type, norm):
    from rlhfsim.ops import kl_penalty

    new, old, ref, adv, mask = _batch(seed=3)
    ours, _ = core.clipped_policy_loss(new, old, adv, mask, 0.2, norm, 5, 0.04 * kl_penalty(new, ref, "k3"))
    assert ours.item() == pytest.approx(_trl_grpo_loss(new, old, ref, adv, mask, 0.04, loss_type, 5).item(), rel=1e-10)


def test_best_worst_pairs_and_flat_groups():
    s = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.2, 0.2, 0.2, 0.2, 1.0, 0.0, 0.5, 0.5])
    c, r = core.best_worst_pairs(s, 4)
    assert c.tolist() == [1, 8] and r.tolist() == [0, 9]  # the flat middle group gives no pair
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=40))
    c, r = core.best_worst_pairs(x, 5)
    for k, (ci, ri) in enumerate(zip(c.tolist(), r.tolist())):  # plain loop: max and min of each group
        grp = x[5 * k : 5 * k + 5].tolist()
        assert ci == 5 * k + grp.index(max(grp)) and ri == 5 * k + grp.index(min(grp))


def test_dpo_loss_matches_the_formula_and_pushes_the_margin():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(8, generator=g, dtype=torch.float64) for _ in range(4))
    pc.requires_grad_(True)
    loss, h = core.dpo_loss(pc, pr, rc, rr, 0.1)
    plain = np.mean(
        [
            -np.log(1 / (1 + np.exp(-0.1 * ((a - c) - (b - d)))))
            for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())
        ]
    )
    assert loss.item() == pytest.approx(plain, rel=1e-10)
    assert torch.allclose(h, 0.1 * ((pc - rc) - (pr - rr)))
    loss.backward()
    assert (pc.grad < 0).all()  # raising the chosen log-probability always lowers the loss
    # equal policy and reference: log 2, TRL's starting loss
    z = torch.zeros(3)
    assert core.dpo_loss(z, z, z, z, 0.5)[0].item() == pytest.approx(np.log(2))
