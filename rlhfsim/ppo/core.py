"""Pure PPO math for language models: rewards, GAE, clipped losses (tensor helpers: rlhfsim.ops, re-exported here).

Conventions (as in TRL's PPO trainer and OpenRLHF's `models/loss.py`):
- B = batch rows, T = response tokens, V = vocabulary size.
- `mask` [B, T] is 1 on real response tokens and 0 on padding. Real tokens of a row are assumed to be
  contiguous (right padding, or left padding); values at masked positions are ignored, whatever they are.
- Losses return `(loss, stats)`: `loss` a scalar tensor with grad, `stats` a dict of python floats
  under TRL's metric names.
Nothing here owns a model or an optimizer; everything is a function of tensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# the shared tensor helpers live in rlhfsim.ops; re-exported so `rlhfsim.ppo.core.<name>` keeps working
from rlhfsim.ops import (  # noqa: F401
    KL_ESTIMATORS,
    _masked,
    entropy_from_logits,
    kl_penalty,
    last_token_index,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    whiten,
)
from rlhfsim.optim.core import clipped_terms, ratio_stats  # the clipped ratio terms every clipped optimiser shares

# ---------------------------------------------------------------------------- KL and rewards


def compute_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    beta: float,
    estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token RLHF reward: a KL penalty on every real token plus the sequence score at the end.

    scores: [B] reward-model score per completion; logprobs, ref_logprobs, mask: [B, T].
    Returns (rewards, kl, non_score), each [B, T] and 0 outside the mask:
      kl        per-token KL estimate (`kl_penalty`),
      non_score -beta * kl,
      rewards   non_score, plus scores[b] added at the last real token of row b (EOS, or the
                last generated token when truncated).
    A row with an empty mask has no token to carry its score, so its score is dropped.
    """
    m = mask != 0
    kl = torch.where(m, kl_penalty(logprobs, ref_logprobs, estimator), torch.zeros_like(logprobs))
    non_score = -beta * kl
    idx, has_any = last_token_index(mask)
    score = torch.where(has_any, scores.to(non_score.dtype), torch.zeros_like(non_score[:, 0]))
    rewards = non_score.scatter_add(1, idx.unsqueeze(1), score.unsqueeze(1))
    return rewards, kl, non_score


# ---------------------------------------------------------------------------- advantages


def _check_gamma_lam(gamma: float, lam: float) -> None:
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1]; got gamma={gamma}, lam={lam}")


@torch.no_grad()
def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), vectorised over batch and time.

    rewards, values, mask: [B, T]; values[b, t] = V(state before token t).
    delta_t = r_t + gamma * V_{t+1} - V_t, with V = 0 after the last real token (the episode ends
    there, also when the response was truncated, as in TRL); A_t = sum_{k>=t} (gamma lam)^{k-t} delta_k.
    The sum is one matmul with the upper-triangular discount matrix D[t, k] = (gamma lam)^{k-t}:
    O(B T^2) work but no Python loop, fine for T <= a few hundred.
    Returns (advantages, returns), both [B, T] and 0 outside the mask; returns = advantages + values.
    """
    _check_gamma_lam(gamma, lam)
    m = (mask != 0).to(rewards.dtype)
    r = torch.where(mask != 0, rewards, torch.zeros_like(rewards))
    v = torch.where(mask != 0, values.to(rewards.dtype), torch.zeros_like(rewards))
    next_v = F.pad(v[:, 1:], (0, 1))  # V_{t+1}; 0 past the end and on padding (v is masked)
    delta = (r + gamma * next_v - v) * m
    T = rewards.shape[-1]
    t = torch.arange(T, device=rewards.device)
    lag = t[None, :] - t[:, None]  # [T, T] k - t
    # float64 powers then cast: (gamma lam)^lag underflows gracefully, and 0^0 = 1 keeps lam=0 exact
    disc = torch.where(lag >= 0, torch.tensor(gamma * lam, dtype=torch.float64) ** lag.clamp_min(0), 0.0)
    adv = (delta @ disc.to(delta.dtype).T) * m  # adv[b, t] = sum_k disc[t, k] delta[b, k]
    return adv, (adv + v) * m


@torch.no_grad()
def compute_gae_reference(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textbook GAE with a plain double Python loop (rows, then time in reverse). Tests only.

    Same shapes and contract as `compute_gae`; each row's real tokens are taken in order, so it
    also serves as the definition of what masking means.
    """
    _check_gamma_lam(gamma, lam)
    adv = torch.zeros_like(rewards)
    B = rewards.shape[0]
    for b in range(B):
        idx = [int(i) for i in torch.nonzero(mask[b] != 0).flatten()]
        last_gae, next_value = 0.0, 0.0
        for i in reversed(idx):
            delta = float(rewards[b, i]) + gamma * next_value - float(values[b, i])
            last_gae = delta + gamma * lam * last_gae
            adv[b, i] = last_gae
            next_value = float(values[b, i])
    v = torch.where(mask != 0, values.to(rewards.dtype), torch.zeros_like(rewards))
    return adv, torch.where(mask != 0, adv + v, torch.zeros_like(adv))


# ---------------------------------------------------------------------------- losses


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate: mean over real tokens of max(-A ratio, -A clip(ratio, 1 +- eps)).

    logprobs [B, T] (with grad), old_logprobs / advantages / mask [B, T].
    Stats: loss/policy; policy/approxkl = 0.5 mean (logp - logp_old)^2 (as TRL);
    policy/clipfrac = share of real tokens where the clipped branch is active; val/ratio = mean ratio.
    """
    terms = clipped_terms(logprobs, old_logprobs, advantages, mask, clip_range)
    loss = masked_mean(torch.maximum(terms[2], terms[3]), mask)
    return loss, ratio_stats(loss, *terms, mask)


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss: 0.5 mean over real tokens of max((v - R)^2, (clip(v, v_old +- c) - R)^2).

    values [B, T] (with grad), old_values / returns / mask [B, T]. clip_range_value=None disables
    clipping. Taking the max is pessimistic, as in TRL/OpenAI baselines: a value update that moves
    more than c from v_old gets no gradient when moving further would help.
    Stats: loss/value, val/clipfrac, val/vpred (mean prediction), val/error (mean unclipped squared error).
    """
    returns, old_values = returns.detach(), old_values.detach()
    vf1 = (values - returns) ** 2
    if clip_range_value is None:
        vf2 = vf1
    else:
        # clip(v, v_old - c, v_old + c): unlike v_old + clip(v - v_old, -c, c) it returns v itself, bit for bit,
        # inside the range, so val/clipfrac cannot count rounding ties as clipped tokens
        clipped = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
        vf2 = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(vf1, vf2), mask)
    with torch.no_grad():
        stats = {
            "loss/value": loss.item(),
            "val/clipfrac": masked_mean((vf2 > vf1).float(), mask).item(),
            "val/vpred": masked_mean(values, mask).item(),
            "val/error": masked_mean(vf1, mask).item(),
        }
    return loss, stats


@torch.no_grad()
def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var[R - V] / Var[R] over real tokens: 1 = perfect critic, 0 = no better than a constant,
    negative = worse. values, returns, mask: [B, T]. nan when Var[R] == 0 (nothing to explain)."""
    var_r = masked_var(returns, mask, unbiased=False)
    if var_r.item() == 0.0:
        return float("nan")
    return (1.0 - masked_var(returns - values, mask, unbiased=False) / var_r).item()
