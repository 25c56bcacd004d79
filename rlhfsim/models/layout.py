"""The one token layout every model pass uses: [left-padded prompt | right-padded response].

Keeping SFT, sampling, PPO forwards and scoring on the same layout means a token's position id and
attention context are identical in all of them, so logprobs from sampling can be reused as PPO's
old logprobs without a recomputation.

    prompt:   [B, P]  left-padded (pad ... pad w1 w2 w3)
    response: [B, L]  right-padded (t1 t2 <eos> pad ...)
    sequence: [B, P+L], position_ids = cumsum(attention_mask) - 1 (pads get 0)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Sequences:
    input_ids: torch.Tensor  # [B, P+L]
    attention_mask: torch.Tensor  # [B, P+L] 1 on real tokens
    position_ids: torch.Tensor  # [B, P+L]
    prompt_len: int  # P: response token j sits at column P + j

    @property
    def response_ids(self) -> torch.Tensor:  # [B, L]
        return self.input_ids[:, self.prompt_len :]

    @property
    def response_mask(self) -> torch.Tensor:  # [B, L]
        return self.attention_mask[:, self.prompt_len :]


def position_ids_from_mask(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """One batched (Rust) tokenizer call for the distinct texts (evaluation repeats each prompt k times)."""
    if not texts:
        return []
    uniq = list(dict.fromkeys(texts))
    ids = dict(zip(uniq, tokenizer(uniq, add_special_tokens=False)["input_ids"]))
    return [list(ids[t]) for t in texts]


def _pad(rows: list[list[int]], width: int, pad: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """rows (each at most `width` long) -> ids [B, width] padded with `pad` on the left or right, and their mask."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
    cols = torch.arange(width)[None, :]
    mask = cols >= (width - lengths)[:, None] if left else cols < lengths[:, None]  # [B, width]
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    out[mask] = torch.tensor([t for r in rows for t in r], dtype=torch.long)  # row-major: each row's tokens in order
    return out, mask.long()


def encode_prompts(tokenizer, texts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids [B, P] and mask [B, P]."""
    ids = _token_ids(tokenizer, texts)
    out, mask = _pad(ids, max(len(x) for x in ids), tokenizer.pad_token_id, left=True)
    return out.to(device), mask.to(device)


def encode_responses(tokenizer, texts: list[str], max_len: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded response ids [B, L] with EOS appended (dropped when truncated at max_len)."""
    rows = [(x + [tokenizer.eos_token_id])[:max_len] for x in _token_ids(tokenizer, texts)]
    out, mask = _pad(rows, max_len, tokenizer.pad_token_id, left=False)
    return out.to(device), mask.to(device)


def join(prompt_ids, prompt_mask, response_ids, response_mask) -> Sequences:
    ids = torch.cat([prompt_ids, response_ids], dim=1)
    mask = torch.cat([prompt_mask, response_mask], dim=1)
    return Sequences(ids, mask, position_ids_from_mask(mask), prompt_ids.shape[1])


def truncate_after_eos(response: torch.Tensor, eos_id: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad everything after the first EOS. response [B, L] -> (ids [B, L], mask [B, L] incl. EOS)."""
    is_eos = response == eos_id
    # tokens strictly after the first EOS: cumulative count of EOS seen before this position > 0
    after = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    ids = response.masked_fill(after, pad_id)
    return ids, (~after).long()


def decode_responses(tokenizer, response_ids: torch.Tensor, response_mask: torch.Tensor) -> list[str]:
    """Each row's kept tokens decoded; each distinct row once (plain lists: per-row tensor indexing cost more)."""
    rows = [tuple(t for t, m in zip(r, ms) if m) for r, ms in zip(response_ids.tolist(), response_mask.tolist())]
    uniq = list(dict.fromkeys(rows))
    text = dict(zip(uniq, tokenizer.batch_decode([list(r) for r in uniq], skip_special_tokens=True)))
    return [text[r] for r in rows]


def has_eos(response_ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """[B] bool: the completion ended with EOS inside the length budget."""
    return (response_ids == eos_id).any(dim=-1)
