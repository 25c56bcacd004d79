"""Learning-rate schedule of one round of reward-model training (`reward.lr_schedule`, `reward.warmup`).

Why it matters for reward collapse: with bounded rewards r = sigmoid(logit) and a utility whose optimum
sits on the bounds (U = x: half the completions at 1, half at 0), the optimum lies at infinite logits.
At a constant learning rate Adam keeps taking full-size steps once every score has saturated (it
normalises away how small the gradients are), so the scores drift among saturated configurations and
can lose orderings they had. Decaying the step size to zero (the paper's cosine schedule with warmup)
lets training settle. The schedulers are transformers' own (`transformers.get_scheduler`).
"""

from __future__ import annotations

import math

import torch


def total_steps(n_groups: int, batch_groups: int, epochs: int) -> int:
    """Optimiser steps in one round: ceil(n_groups / batch_groups) per epoch."""
    return max(1, math.ceil(n_groups / batch_groups)) * epochs


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, warmup: float, steps: int):
    """A transformers LR scheduler for `opt` over `steps` optimiser steps, or None for a constant rate
    without warmup (then the optimiser is left exactly as it was, so default numerics do not change)."""
    if schedule == "constant" and warmup == 0:
        return None
    from transformers import get_scheduler

    name = "constant_with_warmup" if schedule == "constant" else schedule
    return get_scheduler(name, opt, num_warmup_steps=int(round(warmup * steps)), num_training_steps=steps)


def decay_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier at optimiser step `step` (0-based) of `steps` for a quantity decaying to 0 without warmup:
    1 (constant), 1 - step/steps (linear) or (1 + cos(pi * step/steps)) / 2 (cosine); the same curves as
    transformers' schedulers with no warmup (tested against them)."""
    if schedule == "constant":
        return 1.0
    frac = min(step, steps) / steps
    if schedule == "linear":
        return 1.0 - frac
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"unknown schedule {schedule!r}; valid: constant, linear, cosine")
