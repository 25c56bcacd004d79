"""The listwise reward-model objective and the buffer's groups as tensors (pure math and data layout).

For a prompt with k completions and preference matrix P[a, b] (a preferred over b) the objective is
    maximise  sum_{a,b} P[a, b] * U_t(r_a - r_b)
with U_t the utility for the prompt's type t and r = sigmoid(logit) (bounded) or the logit itself.
A pairwise implementation would run two forwards per pair (k(k-1)/2 pairs); the listwise one runs k.
"""

from __future__ import annotations

import torch

from rlhfsim.models.lean import classifier_logits
from rlhfsim.reward.model import encode_pairs


def to_reward_scale(logits: torch.Tensor, bounded: bool) -> torch.Tensor:
    return torch.sigmoid(logits) if bounded else logits


def listwise_loss(
    logits: torch.Tensor,  # [G, K] one score per completion (padding where ~valid)
    prefs: torch.Tensor,  # [G, K, K] bool, prefs[g, a, b] = a preferred over b
    type_idx: torch.Tensor,  # [G] index into `utilities`
    utilities: list,  # Utility callables, one per prompt type present
    bounded: bool,
    weights: torch.Tensor | None = None,  # [G] per-group weights (bootstrap counts of ensemble heads); None = 1
) -> tuple[torch.Tensor, dict]:
    """Negative mean utility over labelled pairs, and (loss, stats) with pairwise training accuracy.
    With `weights`, a group's pairs count `weights[g]` times in the sums and in the pair count, as if the
    group appeared that many times in the batch."""
    r = to_reward_scale(logits, bounded)
    diff = r[:, :, None] - r[:, None, :]  # [G, K, K] r_a - r_b
    p = prefs.to(r.dtype)
    if weights is not None:
        p = p * weights.to(r.dtype)[:, None, None]
    util = torch.zeros_like(diff)
    for t, U in enumerate(utilities):
        sel = type_idx == t
        if sel.any():
            util[sel] = U(diff[sel])
    n_pairs = p.sum().clamp(min=1.0)
    loss = -(util * p).sum() / n_pairs
    right = (diff > 0).to(r.dtype) * p
    st = {"rm/loss": loss.item(), "rm/train_acc": (right.sum() / n_pairs).item(), "rm/pairs": int(p.sum().item())}
    per_pairs, per_right = p.sum((1, 2)), right.sum((1, 2))  # [G]
    for t in range(len(utilities)):  # per-type accuracy (NaN for a type without pairs in this batch)
        n_t = per_pairs[type_idx == t].sum()
        st[f"rm/train_acc_type{t}"] = (per_right[type_idx == t].sum() / n_t).item() if n_t > 0 else float("nan")
    return loss, st


def pairwise_loss(
    chosen_logits: torch.Tensor,
    rejected_logits: torch.Tensor,
    pair_type_idx: torch.Tensor,
    utilities: list,
    bounded: bool,
) -> torch.Tensor:
    """Reference implementation over explicit pairs ([Npairs] each); equals `listwise_loss` on the same scores."""
    d = to_reward_scale(chosen_logits, bounded) - to_reward_scale(rejected_logits, bounded)
    util = torch.zeros_like(d)
    for t, U in enumerate(utilities):
        sel = pair_type_idx == t
        if sel.any():
            util[sel] = U(d[sel])
    return -util.mean()


def group_layout(groups, type_names: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where each group's completions sit in the flat list of all completions, and what was preferred.

    Returns index [G, K] (flat position of completion j of group i; -1 pads groups with fewer than K),
    prefs [G, K, K] (prefs[i, a, b]: a was preferred to b) and type_idx [G] (prompt type of each group).
    """
    k = max(len(g.completions) for g in groups)
    index = torch.full((len(groups), k), -1, dtype=torch.long)
    prefs = torch.zeros((len(groups), k, k), dtype=torch.bool)
    pos = 0
    for i, g in enumerate(groups):
        n = len(g.completions)
        index[i, :n] = torch.arange(pos, pos + n)
        prefs[i, :n, :n] = torch.as_tensor(g.prefs)
        pos += n
    return index, prefs, torch.tensor([type_names.index(g.prompt.type) for g in groups])


class GroupTensors:
    """All groups of the buffer tokenised once: flat ids [N, S] plus the [G, K] index of each completion."""

    def __init__(self, tokenizer, groups, type_names: list[str], device):
        prompts = [g.prompt.text for g in groups for _ in g.completions]
        comps = [c for g in groups for c in g.completions]
        self.ids, self.mask = encode_pairs(tokenizer, prompts, comps, device)
        self.index, self.prefs, self.type_idx = (t.to(device) for t in group_layout(groups, type_names))

    def __len__(self) -> int:
        return self.index.shape[0]

    def member_batch(self, gidx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every member its own groups ``gidx [M, b]``: ids, mask ``[M, b*K, S]`` (padding slots repeat
        row 0 so shapes match across members) and ``valid [M, b, K]``."""
        index = self.index[gidx]  # [M, b, K]
        M = index.shape[0]
        flat = index.clamp(min=0).reshape(M, -1)
        return self.ids[flat], self.mask[flat], index >= 0

    def forward(self, model, gidx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scores [g, K] (0 on padding), prefs [g, K, K], type_idx [g] for the groups `gidx`."""
        index = self.index[gidx]
        valid = index >= 0
        flat = index[valid]
        z = classifier_logits(model, self.ids[flat], self.mask[flat]).squeeze(-1).float()
        logits = torch.zeros(index.shape, dtype=z.dtype, device=z.device)
        logits[valid] = z
        return logits, self.prefs[gidx], self.type_idx[gidx]
