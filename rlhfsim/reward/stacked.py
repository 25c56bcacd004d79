"""Ensemble members as ONE stacked model: a leading member axis on every weight, one vmapped forward.

``torch.func.stack_module_state`` turns M identically shaped modules into parameter tensors
``[M, ...]``; ``vmap(functional_call)`` runs all members in one pass, so an ensemble costs one
forward/backward with M-times larger kernels instead of M Python-level passes. Attention runs in the
eager implementation here (``scaled_dot_product_attention`` has no CPU batching rule and would fall
back to a per-member loop inside vmap); eager and SDPA agree to float rounding.

The member modules stay the source of truth (checkpoints, guards and `RewardModels.members` read
them): training stacks their weights, updates the stack, and writes it back with `unstack_into`.
Architectures where stacking fails (mismatched shapes, ops without a batching rule) make
`Stack.build` return None, and callers fall back to a loop over members.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch.func import functional_call, stack_module_state, vmap

log = logging.getLogger(__name__)


class Stack:
    """Stacked weights of M members and a weightless template module to call them through."""

    def __init__(self, members: list[torch.nn.Module], requires_grad: bool):
        self.M = len(members)
        shapes = [[(k, tuple(v.shape)) for k, v in m.state_dict().items()] for m in members]
        if any(s != shapes[0] for s in shapes[1:]):
            raise ValueError("members differ in parameter names or shapes")
        params, self.buffers = stack_module_state(members)  # {name: [M, ...]}
        self.params = {k: v.detach().clone().requires_grad_(requires_grad) for k, v in params.items()}
        self.template = copy.deepcopy(members[0]).to("meta")
        cfg = getattr(self.template, "config", None)
        if cfg is not None and hasattr(cfg, "_attn_implementation"):
            cfg._attn_implementation = "eager"

    def _one(self, params: dict, buffers: dict, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (
            functional_call(self.template, (params, buffers), (ids,), {"attention_mask": mask})
            .logits.squeeze(-1)
            .float()
        )

    def logits(self, ids: torch.Tensor, mask: torch.Tensor, per_member_inputs: bool = False) -> torch.Tensor:
        """Scores ``[M, N]``. ``ids, mask``: ``[N, S]`` shared by all members, or ``[M, N, S]`` when
        ``per_member_inputs`` (each member its own batch, e.g. bootstrap resamples)."""
        d = 0 if per_member_inputs else None
        return vmap(self._one, in_dims=(0, 0, d, d), randomness="different")(self.params, self.buffers, ids, mask)

    @torch.no_grad()
    def unstack_into(self, members: list[torch.nn.Module]) -> None:
        """Write the stacked weights back into the member modules."""
        for m, module in enumerate(members):
            named = dict(module.named_parameters())
            for k, v in self.params.items():
                named[k].copy_(v[m])

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.params.items()}

    @torch.no_grad()
    def restore(self, snap: dict[str, torch.Tensor]) -> None:
        for k, v in self.params.items():
            v.copy_(snap[k])

    @classmethod
    def build(
        cls, members: list[torch.nn.Module], requires_grad: bool, probe: tuple[torch.Tensor, torch.Tensor] | None = None
    ):
        """A Stack, or None where this architecture cannot be stacked (the caller loops instead)."""
        try:
            st = cls(members, requires_grad)
            if probe is not None:
                with torch.no_grad():
                    st.logits(probe[0][:1], probe[1][:1])
            return st
        except Exception as e:  # any failure to stack means: use the per-member loop
            log.warning("reward-model members cannot be stacked (%s: %s); looping over members", type(e).__name__, e)
            return None


def clip_grad_norm_per_member(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """`clip_grad_norm_` applied to each member separately: params ``[M, ...]``; returns norms ``[M]``."""
    grads = [p.grad for p in params if p.grad is not None]
    M = grads[0].shape[0]
    sq = torch.stack([g.reshape(M, -1).pow(2).sum(1) for g in grads]).sum(0)  # [M]
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # same formula as torch.nn.utils.clip_grad_norm_
    for g in grads:
        g.mul_(coef.view(M, *([1] * (g.ndim - 1))))
    return norms
