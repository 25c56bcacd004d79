"""Listwise reward-model training: each completion scored once, every ranked pair read off the score matrix.

For a prompt with k completions and preference matrix P[a, b] (a preferred over b) the objective is
    maximise  sum_{a,b} P[a, b] * U_t(r_a - r_b)
with U_t the utility for the prompt's type t and r = sigmoid(logit) (bounded) or the logit itself.
A pairwise implementation would run two forwards per pair (k(k-1)/2 pairs); the listwise one runs k.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim.reward import regularise
from rlhfsim.reward.model import encode_pairs


def to_reward_scale(logits: torch.Tensor, bounded: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if bounded else logits


def listwise_loss(
    logits: torch.Tensor,  # [G, K] one score per completion (padding where ~valid)
    prefs: torch.Tensor,  # [G, K, K] bool, prefs[g, a, b] = a preferred over b
    type_idx: torch.Tensor,  # [G] index into `utilities`
    utilities: list,  # Utility callables, one per prompt type present
    bounded: bool,
) -> tuple[torch.Tensor, dict]:
    """Negative mean utility over labelled pairs, and (loss, stats) with pairwise training accuracy."""
    r = to_reward_scale(logits, bounded)
    diff = r[:, :, None] - r[:, None, :]  # [G, K, K] r_a - r_b
    p = prefs.to(r.dtype)
    util = torch.zeros_like(diff)
    for t, U in enumerate(utilities):
        sel = type_idx == t
        if sel.any():
            util[sel] = U(diff[sel])
    n_pairs = p.sum().clamp(min=1.0)
    loss = -(util * p).sum() / n_pairs
    acc = ((diff > 0).to(r.dtype) * p).sum() / n_pairs
    return loss, {"rm/loss": loss.item(), "rm/train_acc": acc.item(), "rm/pairs": int(p.sum().item())}


def pairwise_loss(chosen_logits: torch.Tensor, rejected_logits: torch.Tensor, pair_type_idx: torch.Tensor, utilities: list, bounded: bool) -> torch.Tensor:
    """Reference implementation over explicit pairs ([Npairs] each); equals `listwise_loss` on the same scores."""
    d = to_reward_scale(chosen_logits, bounded) - to_reward_scale(rejected_logits, bounded)
    util = torch.zeros_like(d)
    for t, U in enumerate(utilities):
        sel = pair_type_idx == t
        if sel.any():
            util[sel] = U(d[sel])
    return -util.mean()


class GroupTensors:
    """All groups of the buffer tokenised once: flat ids [N, S] plus the [G, K] index of each completion."""

    def __init__(self, tokenizer, groups, type_names: list[str], device):
        k = max(len(g.completions) for g in groups)
        prompts = [g.prompt.text for g in groups for _ in g.completions]
        comps = [c for g in groups for c in g.completions]
        self.ids, self.mask = encode_pairs(tokenizer, prompts, comps, device)
        self.index = torch.full((len(groups), k), -1, dtype=torch.long)
        self.prefs = torch.zeros((len(groups), k, k), dtype=torch.bool)
        pos = 0
        for i, g in enumerate(groups):
            n = len(g.completions)
            self.index[i, :n] = torch.arange(pos, pos + n)
            self.prefs[i, :n, :n] = torch.as_tensor(g.prefs)
            pos += n
        self.type_idx = torch.tensor([type_names.index(g.prompt.type) for g in groups])
        self.index, self.prefs, self.type_idx = self.index.to(device), self.prefs.to(device), self.type_idx.to(device)

    def __len__(self) -> int:
        return self.index.shape[0]

    def forward(self, model, gidx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores [g, K] (0 on padding), prefs [g, K, K], type_idx [g] for the groups `gidx`."""
        index = self.index[gidx]
        valid = index >= 0
        flat = index[valid]
        z = model(input_ids=self.ids[flat], attention_mask=self.mask[flat]).logits.squeeze(-1).float()
        logits = torch.zeros(index.shape, dtype=z.dtype, device=z.device)
        logits[valid] = z
        return logits, self.prefs[gidx], self.type_idx[gidx]


def utilities_for(cfg, type_names: list[str]) -> list:
    """One Utility per prompt type: the prompt-aware map where it names the type, else the shared utility."""
    aware = cfg.prompt_aware or {}
    return [(aware[t] if t in aware else cfg.utility).build() for t in type_names]


def train_reward_models(rms, groups, cfg, type_names: list[str], rng: np.random.Generator) -> dict:
    """Train every member of `rms` on `groups` for cfg.epochs; returns averaged stats."""
    if not groups:
        return {"rm/loss": float("nan"), "rm/train_acc": float("nan"), "rm/pairs": 0, "rm/groups": 0}
    utilities = regularise.with_margin(utilities_for(cfg, type_names), cfg.margin)
    data = GroupTensors(rms.tokenizer, groups, type_names, rms.device)
    stats: list[dict] = []
    for model in rms.members:
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
        for _ in range(cfg.epochs):
            order = rng.permutation(len(data))
            for s in range(0, len(data), cfg.batch_groups):
                gidx = torch.as_tensor(order[s : s + cfg.batch_groups], device=rms.device)
                logits, prefs, tidx = data.forward(model, gidx)
                loss, st = listwise_loss(logits, prefs, tidx, utilities, rms.bounded)
                loss = loss + regularise.centring_penalty(logits, data.index[gidx] >= 0, cfg.center_coef)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                stats.append(st)
        model.eval()
    last = stats[-max(1, len(stats) // max(1, cfg.epochs * len(rms.members))) :]  # the final epoch's steps
    return {
        "rm/loss": float(np.mean([s["rm/loss"] for s in last])),
        "rm/train_acc": float(np.mean([s["rm/train_acc"] for s in last])),
        "rm/pairs": int(data.prefs.sum().item()),
        "rm/groups": len(data),
    }
