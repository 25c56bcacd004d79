"""Listwise training of checkpoint reward models (`CheckpointRewardModels`), in micro-batches and data-parallel.

The objective is `rlhfsim.reward.trainer.listwise_loss` (the same utilities, the same pairs); what differs from the
built-in trainer is only how a batch reaches the model: each completion is re-tokenised with the reward model's
own tokenizer as the pair (prompt, completion), a batch of prompt groups is split into micro-batches (and over
data-parallel processes), and each part's loss is weighted by its share of the batch's labelled pairs, so the
summed gradient is the gradient of the whole batch.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim.models.parallel import Parallel
from rlhfsim.reward import schedule
from rlhfsim.reward.trainer import group_layout, listwise_loss, training_utilities


class TextGroups:
    """The buffer's groups as text, with [G, K] completion indices, [G, K, K] preferences and type indices."""

    def __init__(self, groups, type_names: list[str]):
        self.prompts = [g.prompt.text for g in groups for _ in g.completions]
        self.texts = [c for g in groups for c in g.completions]
        self.index, self.prefs, self.type_idx = group_layout(groups, type_names)

    def __len__(self) -> int:
        return self.index.shape[0]

    def forward(self, rms, model, gidx: torch.Tensor):
        """Scores [g, K] (0 on padding), prefs [g, K, K], type_idx [g] for groups `gidx` (one tokenizer call)."""
        index = self.index[gidx]
        valid = index >= 0
        flat = index[valid].tolist()
        enc = rms.encode([self.prompts[i] for i in flat], [self.texts[i] for i in flat])
        z = model(**enc).logits.squeeze(-1).float()
        logits = torch.zeros(index.shape, dtype=z.dtype, device=z.device)
        logits[valid.to(z.device)] = z
        return logits, self.prefs[gidx].to(z.device), self.type_idx[gidx].to(z.device)


def batch_gradients(
    rms, model, data: TextGroups, gidx: torch.Tensor, utilities, parallel: Parallel, micro_batch: int | None
) -> dict | None:
    """Accumulate the gradient of the listwise loss of groups `gidx` (this process's share, in micro-batches, each
    weighted by its share of the batch's pairs), summed over processes; the batch's loss/accuracy (None: no pairs)."""
    pairs = data.prefs[gidx].sum().clamp(min=1)
    parts = []
    for part in parallel.chunks(gidx, micro_batch):
        logits, prefs, tidx = data.forward(rms, model, part)
        loss, st = listwise_loss(logits, prefs, tidx, utilities, rms.bounded)
        share = float(data.prefs[part].sum() / pairs)
        (loss * share).backward()
        parts.append((share, {"rm/loss": st["rm/loss"], "rm/train_acc": st["rm/train_acc"]}))
    parallel.sum_grads(model.parameters())
    if parallel.world_size == 1 and sum(w for w, _ in parts) == 0:
        return None
    return parallel.weighted_stats(parts)


def train_checkpoint_reward_models(
    rms,
    groups,
    cfg,
    type_names: list[str],
    rng: np.random.Generator,
    parallel: Parallel | None = None,
    micro_batch: int | None = None,
) -> dict:
    """Train every member for cfg.epochs over `groups`; the stats of `train_reward_models`."""
    if not groups:
        return {"rm/loss": float("nan"), "rm/train_acc": float("nan"), "rm/pairs": 0, "rm/groups": 0}
    parallel = parallel or Parallel()
    utilities = training_utilities(cfg, type_names)
    data = TextGroups(groups, type_names)
    stats: list[dict] = []
    for model in rms.members:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        sched = schedule.make_scheduler(
            opt, cfg.lr_schedule, cfg.warmup, schedule.total_steps(len(data), cfg.batch_groups, cfg.epochs)
        )
        for _ in range(cfg.epochs):
            order = rng.permutation(len(data))
            for s in range(0, len(data), cfg.batch_groups):
                opt.zero_grad(set_to_none=True)
                st = batch_gradients(
                    rms, model, data, torch.as_tensor(order[s : s + cfg.batch_groups]), utilities, parallel, micro_batch
                )
                if cfg.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                opt.step()
                if sched is not None:
                    sched.step()
                if st is not None:
                    stats.append(st)
        model.eval()
    steps = max(1, len(stats) // max(1, cfg.epochs * len(rms.members)))
    last = stats[-steps:] or [{"rm/loss": float("nan"), "rm/train_acc": float("nan")}]  # the final epoch's steps
    return {
        "rm/loss": float(np.mean([s["rm/loss"] for s in last])),
        "rm/train_acc": float(np.mean([s["rm/train_acc"] for s in last])),
        "rm/pairs": int(data.prefs.sum().item()),
        "rm/groups": len(data),
    }
