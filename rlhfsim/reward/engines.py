"""Reward-model training engines: how the members' parameters are stepped (one after another, stacked, heads).

`Engine` owns the optimisers (AdamW, one per independently stepped parameter set), their learning-rate
schedulers, gradient clipping (`reward.max_grad_norm`) and the centring schedule; subclasses say what one
step computes. rlhfsim.reward.heads adds the shared-trunk engine; rlhfsim.reward.trainer picks one.
"""

from __future__ import annotations

import torch

from rlhfsim.reward import regularise, schedule
from rlhfsim.reward.listwise import GroupTensors, listwise_loss
from rlhfsim.reward.stacked import Stack, clip_grad_norm_per_member


class Engine:
    """Optimisers, schedulers, clipping and the centring coefficient shared by every engine.

    ``param_sets``: one parameter list per optimiser (one per member when members step one after another,
    one for a stack or a shared trunk). AdamW is elementwise, so one optimiser over a stack is M optimisers.
    """

    stacked = False

    def __init__(self, cfg, steps: int, param_sets: list[list[torch.Tensor]]):
        self.param_sets = param_sets
        self.opts = [torch.optim.AdamW(p, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True) for p in param_sets]
        self.scheds = [schedule.make_scheduler(o, cfg.lr_schedule, cfg.warmup, steps) for o in self.opts]
        self.max_grad_norm = cfg.max_grad_norm
        self.center_coef0, self.center_schedule, self.steps, self.t = cfg.center_coef, cfg.center_schedule, steps, 0

    def _clip(self, i: int) -> None:
        """Clip the gradient norm of parameter set ``i`` to ``reward.max_grad_norm`` (null: no clipping)."""
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.param_sets[i], self.max_grad_norm)

    def _update(self, loss: torch.Tensor, i: int = 0) -> None:
        """One optimiser step on parameter set ``i``: backward, clip, AdamW, lr schedule (the caller advances ``t``)."""
        opt = self.opts[i]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(i)
        opt.step()
        if self.scheds[i] is not None:
            self.scheds[i].step()

    @property
    def center_coef(self) -> float:
        """reward.center_coef at this optimiser step (reward.center_schedule)."""
        return self.center_coef0 * schedule.decay_factor(self.center_schedule, self.t, self.steps)

    def snapshot(self):
        return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.models]

    def restore(self, snap) -> None:
        for m, s in zip(self.models, snap):
            m.load_state_dict(s)

    def finish(self) -> None:
        for m in self.models:
            m.eval()


class LoopEngine(Engine):
    """Members trained one after another (the fallback where stacking fails, and M = 1): one optimiser each."""

    def __init__(self, rms, cfg, steps: int):
        self.models = rms.members
        super().__init__(cfg, steps, [list(m.parameters()) for m in self.models])
        for m in self.models:
            m.train()

    def step(self, data: GroupTensors, gidx: torch.Tensor, utilities, bounded: bool) -> list[dict]:
        stats = []
        for m, model in enumerate(self.models):
            logits, prefs, tidx = data.forward(model, gidx[m])
            loss, st = listwise_loss(logits, prefs, tidx, utilities, bounded)
            loss = loss + regularise.centring_penalty(logits, data.index[gidx[m]] >= 0, self.center_coef)
            self._update(loss, m)
            stats.append(st)
        self.t += 1
        return stats

    @torch.no_grad()
    def score(self, data: GroupTensors) -> torch.Tensor:
        """Scores ``[M, G, K]`` of every group of ``data`` (0 on padding)."""
        g = torch.arange(len(data), device=data.index.device)
        for m in self.models:  # no dropout while scoring
            m.eval()
        out = torch.stack([data.forward(model, g)[0] for model in self.models])
        for m in self.models:
            m.train()
        return out


class StackedEngine(Engine):
    """All members in one vmapped forward/backward over stacked weights; one AdamW over the stack
    (AdamW is elementwise, so this is M independent optimisers) and gradient clipping per member."""

    stacked = True

    def __init__(self, rms, cfg, steps: int, stack: Stack):
        self.models, self.stack = rms.members, stack
        self.params = list(stack.params.values())
        super().__init__(cfg, steps, [self.params])

    def _clip(self, i: int) -> None:
        if self.max_grad_norm is not None:  # each member's own norm, as if it were trained alone
            clip_grad_norm_per_member(self.params, self.max_grad_norm)

    def step(self, data: GroupTensors, gidx: torch.Tensor, utilities, bounded: bool) -> list[dict]:
        ids, mask, valid = data.member_batch(gidx)
        M, b, K = valid.shape
        self.stack.template.train()  # dropout (reward.dropout) applies in training steps only
        z = self.stack.logits(ids, mask, per_member_inputs=True).view(M, b, K)
        logits = torch.where(valid, z, torch.zeros_like(z))  # [M, b, K]
        total, stats = 0.0, []
        for m in range(M):  # per-member loss on [b, K] scores; the members' graphs are independent
            loss, st = listwise_loss(logits[m], data.prefs[gidx[m]], data.type_idx[gidx[m]], utilities, bounded)
            loss = loss + regularise.centring_penalty(logits[m], valid[m], self.center_coef)
            total, stats = total + loss, stats + [st]
        self._update(total)
        self.t += 1
        return stats

    @torch.no_grad()
    def score(self, data: GroupTensors) -> torch.Tensor:
        self.stack.template.eval()
        valid = data.index >= 0
        z = self.stack.logits(data.ids[data.index[valid]], data.mask[data.index[valid]])  # [M, n_valid]
        out = torch.zeros((self.stack.M, *valid.shape), dtype=z.dtype, device=z.device)
        out[:, valid] = z
        return out

    def snapshot(self):
        return self.stack.snapshot()

    def restore(self, snap) -> None:
        self.stack.restore(snap)

    def finish(self) -> None:
        self.stack.unstack_into(self.models)
        for m in self.models:
            m.eval()
