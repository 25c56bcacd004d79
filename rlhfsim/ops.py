"""Tensor helpers shared by sampling, evaluation and every policy optimiser: per-token logprobs and entropies,
masked statistics, KL estimators, state-dict arithmetic (snapshots, interpolation, parameter averages). Pure
functions of tensors; nothing here owns a model.

Conventions: B = batch rows, T = response tokens, V = vocabulary size; `mask` [B, T] is 1 on real response tokens and
0 on padding (real tokens of a row contiguous); values at masked positions are ignored, whatever they are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KL_ESTIMATORS = ("k1", "k2", "k3")


# ---------------------------------------------------------------------------- logits -> per-token


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under softmax(logits).

    logits: [B, T, V]; labels: [B, T] (long). Returns [B, T] in logits' dtype.
    For float32/64 this is logit[label] - logsumexp(logits), which never materialises a second
    [B, T, V] log-softmax tensor. logsumexp is inaccurate in bf16/fp16, so low precision goes
    through log_softmax one row at a time (peak extra memory [T, V] instead of [B, T, V]).
    """
    if logits.dtype in (torch.float32, torch.float64):
        picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(logits, dim=-1)
    rows = [F.log_softmax(lg, dim=-1).gather(-1, lb.unsqueeze(-1)).squeeze(-1) for lg, lb in zip(logits, labels)]
    return torch.stack(rows)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) at each position.

    logits: [B, T, V]. Returns [B, T] (nats). Uses H = logsumexp(z) - sum_v p_v z_v, which stays
    finite when some logits are -inf-like (p * log p would give 0 * -inf = nan).
    """
    p = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (p * logits).sum(-1)


# ---------------------------------------------------------------------------- masked statistics


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x * mask, but exactly 0 where mask == 0 even if x is inf/nan there (padding may hold junk)."""
    return torch.where(mask != 0, x * mask, torch.zeros_like(x))


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of x over entries where mask != 0 (mask may hold weights).

    x, mask: same shape, e.g. [B, T]. dim=None -> scalar; dim=-1 -> [B].
    """
    m = _masked(x, mask)
    return m.sum() if dim is None else m.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over entries where mask != 0.

    x, mask: same shape, e.g. [B, T]. dim=None -> scalar; dim=-1 -> [B] (per-row mean).
    An empty mask (or an empty row with dim) gives 0, not nan, so one empty row cannot poison a loss.
    """
    total = masked_sum(x, mask, dim)
    count = (mask.sum() if dim is None else mask.sum(dim)).to(total.dtype)
    return total / count.clamp_min(torch.finfo(total.dtype).tiny)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over all entries where mask != 0 (a scalar).

    x, mask: same shape, e.g. [B, T]. With `unbiased`, Bessel's correction n / (n - 1) is applied,
    n = mask.sum(); when n <= 1 that correction is undefined and the biased value (0) is returned.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if unbiased:
        n = mask.sum().to(var.dtype)
        var = torch.where(n > 1, var * n / (n - 1).clamp_min(1e-8), var)
    return var


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Standardise x using statistics of the masked entries only.

    x, mask: [B, T]. Returns [B, T] with (unbiased) mean 0 and std 1 over the mask and exactly 0
    outside it. shift_mean=False keeps the original mean (only rescales), as TRL allows for rewards.
    """
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return torch.where(mask != 0, out, torch.zeros_like(out))


# ---------------------------------------------------------------------------- KL and rewards


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from the log-probs of tokens sampled from pi.

    logprobs, ref_logprobs: [B, T]. Returns [B, T] (not masked). With r = logp_ref - logp
    (Schulman, "Approximating KL divergence"):
      k1 = -r               unbiased, can be negative per token;
      k2 = 0.5 r^2          biased, low variance, >= 0;
      k3 = e^r - 1 - r      unbiased, >= 0 (expm1 keeps it accurate for small r).
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; valid: {', '.join(KL_ESTIMATORS)}")
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    r = -log_ratio
    return torch.expm1(r) - r


def last_token_index(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the last real token of each row, and whether the row has one.

    mask: [B, T]. Returns (idx [B] long, has_any [B] bool); idx is 0 for empty rows.
    Works for right and left padding alike.
    """
    T = mask.shape[-1]
    pos = torch.arange(1, T + 1, device=mask.device).expand_as(mask)
    last = torch.where(mask != 0, pos, torch.zeros_like(pos)).amax(-1)  # 1-based, 0 = empty row
    return (last - 1).clamp_min(0), last > 0


def permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    """A random order of range(n) [n] (long), drawn on the generator's own device: minibatch order in every optimiser.
    randperm without a device runs on the CPU, and the CPU kernel refuses a CUDA generator (a GPU run's)."""
    return torch.randperm(n, generator=generator, device=generator.device)


# ---------------------------------------------------------------------------- state dicts


def clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the module's state dict (a snapshot that later training cannot change)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def interpolate_states(prev: dict, last: dict, eta: float) -> dict:
    """{name: (1 - eta) * prev[name] + eta * last[name]} for floating tensors (each of its parameter's shape);
    other entries (integer buffers) are last's. Same keys and shapes in both, else ValueError."""
    if prev.keys() != last.keys():
        raise ValueError(f"state dicts differ in keys: {sorted(set(prev) ^ set(last))[:5]}")
    out = {}
    for k, b in last.items():
        a = prev[k]
        if a.shape != b.shape:
            raise ValueError(f"{k}: shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
        out[k] = (1.0 - eta) * a + eta * b if b.is_floating_point() else b.clone()
    return out


def mean_states(states: list[dict]) -> dict:
    """{name: mean over the list of states[i][name]} for floating tensors (a parameter average: R states of one
    architecture -> one); other entries are the last state's."""
    if not states:
        raise ValueError("mean_states needs at least one state dict")
    last = states[-1]
    out = {}
    for k, v in last.items():
        out[k] = (
            torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v.clone()
        )  # [R, *shape] -> shape
    return out
