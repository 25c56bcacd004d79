"""Scoring (prompt, completion) text with transformers sequence classifiers, each reading text with its own tokenizer:
the pair encoding, batched logits, and `TextScorer`, the frozen single-model scorer behind a gold reward model
(world.gold.kind: model). The trained checkpoint reward models (rlhfsim/reward/hf_model.py) score through the same
functions.
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim.models.hf import load_sequence_classifier, load_tokenizer


def encode_text_pairs(tokenizer, prompts: list[str], completions: list[str], max_length: int, device=None) -> dict:
    """The tokenizer's own pair encoding ([CLS] p [SEP] c [SEP] for BERT-likes), right-padded, cut to max_length."""
    enc = tokenizer(
        prompts, completions, truncation="longest_first", max_length=max_length, padding=True, return_tensors="pt"
    )
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


@torch.inference_mode()
def score_logits(
    models: list, tokenizer, prompts: list[str], completions: list[str], max_length: int, batch_size: int, device
) -> np.ndarray:
    """[M, N] raw logits of each model on each (prompt, completion)."""
    out = np.zeros((len(models), len(prompts)), dtype=np.float64)
    for s in range(0, len(prompts), batch_size):
        enc = encode_text_pairs(
            tokenizer, prompts[s : s + batch_size], completions[s : s + batch_size], max_length, device
        )
        for m, model in enumerate(models):
            model.eval()
            out[m, s : s + batch_size] = model(**enc).logits.squeeze(-1).float().cpu().numpy()
    return out


class TextScorer:
    """A frozen sequence classifier scoring (prompt, completion) text: the gold reward model."""

    def __init__(
        self,
        checkpoint: str,
        tokenizer: str | None,
        max_length: int,
        device,
        what: str,
        batch_size: int = 256,
        seed: int = 0,
    ):
        self.tokenizer = load_tokenizer(tokenizer or checkpoint, what)
        self.model = (
            load_sequence_classifier(checkpoint, what, self.tokenizer.pad_token_id, seed)
            .to(device)
            .eval()
            .requires_grad_(False)
        )
        self.max_length, self.batch_size, self.device = max_length, batch_size, device

    def logits(self, prompts: list[str], completions: list[str]) -> np.ndarray:
        """[N] raw logits."""
        return score_logits(
            [self.model], self.tokenizer, prompts, completions, self.max_length, self.batch_size, self.device
        )[0]
