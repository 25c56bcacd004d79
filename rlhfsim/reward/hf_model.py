"""Reward models from transformers checkpoints, each reading text with its own tokenizer.

The interface between the policy and a reward model is text: a completion the policy decoded is re-tokenised
here as the pair (prompt, completion), so policy and reward model may use different tokenizers (e.g. a Pythia
policy and a DeBERTa-v3 reward model). `CheckpointRewardModels` has the interface of
`rlhfsim.reward.model.RewardModels` (members, bounded, tokenizer, device, logits, rewards, reinit, state_dict);
The frozen single-model scorer behind a gold reward model (`TextScorer`) and the pair encoding it shares with
these models live in rlhfsim/models/scorer.py (the world's gold uses it without the reward package).
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim.models.hf import enable_checkpointing, load_sequence_classifier, load_tokenizer
from rlhfsim.models.scorer import encode_text_pairs, score_logits
from rlhfsim.reward.model import MemberRewards


def fresh_head(model, seed: int) -> None:
    """A new 1-logit head (N(0, initializer_range) weights, zero bias) from `seed`, even where the checkpoint has one:
    ensemble members must differ, and a reward model is trained here, not reused."""
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear):
        head = next(
            (m for m in reversed(list(model.modules())) if isinstance(m, torch.nn.Linear) and m.out_features == 1), None
        )
    if head is None:
        return
    gen = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config, "initializer_range", 0.02))
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen) * std)
        if head.bias is not None:
            head.bias.zero_()


class CheckpointRewardModels(MemberRewards):
    """The round's reward model(s) fine-tuned from reward.checkpoint; members differ by the seed of their new head."""

    def __init__(self, cfg, device, seed: int):
        rc = cfg.reward
        self.cfg, self.compute, self.device = rc, cfg.compute, device
        self.bounded = rc.is_bounded
        self.tokenizer = load_tokenizer(
            rc.tokenizer or rc.checkpoint, "reward.tokenizer" if rc.tokenizer else "reward.checkpoint"
        )
        self.members = self._build(seed, rc.ensemble_size)

    def _build(self, seed: int, n: int) -> list:
        members = []
        for m in range(n):
            model = load_sequence_classifier(
                self.cfg.checkpoint, "reward.checkpoint", self.tokenizer.pad_token_id, seed * 1000 + m
            )
            fresh_head(model, seed * 1000 + m)
            if self.compute.gradient_checkpointing:
                enable_checkpointing(model)
            members.append(model.to(self.device).eval())
        return members

    def reinit(self, seed: int) -> None:
        """Back to the pretrained body with new heads (reward.init: fresh)."""
        self.members = self._build(seed, len(self.members))

    def encode(self, prompts: list[str], completions: list[str]) -> dict:
        return encode_text_pairs(self.tokenizer, prompts, completions, self.cfg.max_length, self.device)

    def logits(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """[M, N] raw logits."""
        return score_logits(
            self.members,
            self.tokenizer,
            prompts,
            completions,
            self.cfg.max_length,
            self.compute.score_batch,
            self.device,
        )
