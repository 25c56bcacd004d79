"""Pure math of the policy optimisers beside rlhfsim.ppo.core's GAE: the clipped ratio terms every clipped optimiser
shares (PPO included), group baselines, the clipped policy loss with its two normalisations, and the DPO loss on pairs
chosen from a group.

B = rows laid out prompt-major (prompt i's completions are rows i*g .. i*g+g-1), g = group size, T = response tokens.
Everything is a function of tensors; tests check each against a plain loop and against TRL where TRL exposes it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlhfsim.ops import masked_mean

STD_EPS = 1e-4  # GRPO's std guard, as TRL (advantages / (std + 1e-4))


def clipped_terms(logprobs, old_logprobs, advantages, mask, clip_range):
    """(log_ratio, ratio, -A ratio, -A clip(ratio, 1 +- eps)), each [B, T]; advantages [B, T] or [B, 1].
    The log-ratio is zeroed on padding: stale pad logprobs must not overflow exp or leak gradient."""
    log_ratio = torch.where(mask != 0, logprobs - old_logprobs, torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)
    adv = advantages.detach()
    return log_ratio, ratio, -adv * ratio, -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)


@torch.no_grad()
def ratio_stats(loss, log_ratio, ratio, pg1, pg2, mask) -> dict[str, float]:
    """loss/policy, policy/approxkl = 0.5 mean (logp - logp_old)^2 (as TRL), policy/clipfrac, val/ratio over real tokens."""
    return {
        "loss/policy": loss.item(),
        "policy/approxkl": (0.5 * masked_mean(log_ratio**2, mask)).item(),
        "policy/clipfrac": masked_mean((pg2 > pg1).float(), mask).item(),
        "val/ratio": masked_mean(ratio, mask).item(),
    }


def grouped(x: torch.Tensor, g: int) -> torch.Tensor:
    """[B] -> [B/g, g]; B must be a multiple of g."""
    if x.ndim != 1 or x.shape[0] % g:
        raise ValueError(f"expected [B] with B a multiple of group size {g}, got shape {tuple(x.shape)}")
    return x.view(-1, g)


def group_advantages(scores: torch.Tensor, g: int, rule: str) -> torch.Tensor:
    """Per-row advantage from the group of its prompt. scores [B] -> [B].

    grpo:    (r - mean_group) / (std_group + 1e-4), std with Bessel's correction (torch.std, as TRL);
    dr_grpo: r - mean_group;
    rloo:    r - mean of the other g-1 rows of the group = g / (g-1) * (r - mean_group).
    """
    r = grouped(scores, g)
    centred = r - r.mean(1, keepdim=True)
    if rule == "grpo":
        return (centred / (r.std(1, keepdim=True) + STD_EPS)).reshape(-1)
    if rule == "dr_grpo":
        return centred.reshape(-1)
    if rule == "rloo":
        if g < 2:
            raise ValueError("rloo needs a group size of at least 2")
        return (r - (r.sum(1, keepdim=True) - r) / (g - 1)).reshape(-1)
    raise ValueError(f"unknown group advantage rule {rule!r}; valid: grpo, dr_grpo, rloo")


def flat_group_share(scores: torch.Tensor, g: int) -> float:
    """Share of groups whose scores are all equal (std 0): they carry no learning signal for any group baseline."""
    r = grouped(scores, g)
    return float((r.amax(1) == r.amin(1)).float().mean())


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
    norm: str,
    max_len: int | None = None,
    kl_term: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate with a sequence-level advantage, as TRL's GRPOTrainer (loss_type grpo / dr_grpo).

    logprobs [B, T] (with grad), old_logprobs [B, T], advantages [B], mask [B, T]; kl_term [B, T] (already times beta)
    is added per token. norm "sequence": mean over each row's tokens, then over rows (GRPO);
    "constant": sum over all tokens / (B * max_len) (Dr. GRPO: no length normalisation).
    """
    m = mask != 0
    terms = clipped_terms(logprobs, old_logprobs, advantages[:, None], mask, clip_range)
    per_token = torch.maximum(terms[2], terms[3])
    if kl_term is not None:
        per_token = per_token + kl_term
    per_token = torch.where(m, per_token, torch.zeros_like(per_token))
    if norm == "sequence":
        loss = (per_token.sum(-1) / mask.sum(-1).clamp_min(1.0)).mean()
    elif norm == "constant":
        if max_len is None:
            raise ValueError("norm constant needs max_len")
        loss = per_token.sum() / (per_token.shape[0] * max_len)
    else:
        raise ValueError(f"unknown loss normalisation {norm!r}; valid: sequence, constant")
    return loss, ratio_stats(loss, *terms, mask)


def best_worst_pairs(scores: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row indices (chosen [P'], rejected [P']) of each group's highest and lowest score; groups whose scores are all
    equal give no pair. Ties go to the first row, as argmax/argmin do."""
    r = grouped(scores, g)
    keep = r.amax(1) > r.amin(1)
    base = torch.arange(r.shape[0], device=scores.device) * g
    return (base + r.argmax(1))[keep], (base + r.argmin(1))[keep]


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid DPO loss (Rafailov et al. 2023) on sequence log-probabilities [P] each.

    h = (logp_c - ref_c) - (logp_r - ref_r); loss = mean(-logsigmoid(beta h)). Returns (loss, beta * h [P])."""
    h = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * h).mean(), beta * h
