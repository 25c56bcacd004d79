"""Regularisation terms for reward-model training (pure functions; the trainer adds them to its loss).

    margin:   every labelled pair must win by `margin` on the reward scale: U(r_a - r_b - margin)
              (the margin loss of Llama 2's reward model, for any utility U)
    centring: center_coef * mean over scored completions of logit**2, TRL's `center_rewards_coefficient`
              (Eisenstein et al. 2023): keeps rewards near 0 so they cannot drift or explode
Weight decay (AdamW) and dropout (the classifier's config) live in the optimiser and the model.
"""

from __future__ import annotations

import torch


def with_margin(utilities: list, margin: float) -> list:
    """Utilities U(d) -> U(d - margin) (same objects when margin is 0, so the default path is untouched)."""
    if margin == 0:
        return utilities
    return [_Shifted(U, margin) for U in utilities]


def scaled(utilities: list, factors: list[float]) -> list:
    """Utilities U(d) -> c * U(d), one factor per utility (same objects where the factor is 1)."""
    return [U if c == 1.0 else _Scaled(U, c) for U, c in zip(utilities, factors)]


class _Scaled:
    def __init__(self, U, c: float):
        self.U, self.c = U, c

    def __call__(self, d: torch.Tensor) -> torch.Tensor:
        return self.c * self.U(d)

    def __getattr__(self, name):  # needs_bounded, name, ... of the wrapped utility
        return getattr(self.U, name)


class _Shifted:
    def __init__(self, U, margin: float):
        self.U, self.margin = U, margin

    def __call__(self, d: torch.Tensor) -> torch.Tensor:
        return self.U(d - self.margin)

    def __getattr__(self, name):  # needs_bounded, name, ... of the wrapped utility
        return getattr(self.U, name)


def centring_penalty(
    logits: torch.Tensor,  # [G, K] one logit per completion (anything on padding)
    valid: torch.Tensor,  # [G, K] bool, True on real completions
    coef: float,
) -> torch.Tensor:
    """coef * mean(logit**2) over valid completions; a 0-dim tensor (0 when coef is 0 or nothing is valid)."""
    if coef == 0 or not bool(valid.any()):
        return logits.new_zeros(())
    return coef * logits[valid].pow(2).mean()
