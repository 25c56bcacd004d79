"""Fast sampling with a KV cache, and the forward passes PPO needs (logprobs, entropy, values).

`sample` returns the sampling logprobs too: at temperature T they are log_softmax(logits / T) of the
very tokens drawn, which is what PPO's ratio needs as old logprobs (no second policy forward); and the
per-step entropy when asked (evaluation needs it; PPO's rollout does not), again with no second forward.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfsim.models import lean
from rlhfsim.models.decode import GPT2Decoder
from rlhfsim.models.layout import Sequences, join, position_ids_from_mask, truncate_after_eos
from rlhfsim.ops import entropy_from_logits


@dataclass
class Rollout:
    seq: Sequences  # [B, P+L] prompt + response
    logprobs: torch.Tensor  # [B, L] sampling logprobs of the response tokens (0 on pads)
    hidden: torch.Tensor | None = None  # [B, L, H] last hidden state before each response token (return_hidden)
    entropy: torch.Tensor | None = None  # [B, L] entropy (nats) of each step's sampling distribution (0 on pads; return_entropy)

    @property
    def response_ids(self) -> torch.Tensor:
        return self.seq.response_ids

    @property
    def response_mask(self) -> torch.Tensor:
        return self.seq.response_mask


@torch.inference_mode()
def sample(
    model,
    prompt_ids: torch.Tensor,  # [B, P] left-padded
    prompt_mask: torch.Tensor,  # [B, P]
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    return_hidden: bool = False,
    return_entropy: bool = False,
) -> Rollout:
    """Ancestral sampling, one token per step, reusing the KV cache; stops when every row has ended.

    return_hidden: also keep the final hidden state that predicts each response token, so a value head on
    the policy's trunk gets its values without another forward pass.
    return_entropy: also keep each step's entropy (evaluation's policy entropy without another forward pass).
    """
    B, P = prompt_ids.shape
    device = prompt_ids.device
    # the whole attention mask is allocated once; step t sees its first P + t + 1 columns (no per-step cat)
    full_mask = torch.ones((B, P + max_new_tokens), dtype=prompt_mask.dtype, device=device)
    full_mask[:, :P] = prompt_mask
    hidden = torch.zeros((B, max_new_tokens, model.config.hidden_size), device=device) if return_hidden else None
    next_pos = prompt_mask.sum(-1, keepdim=True)  # [B, 1] position id of the first response token
    decoder, cache = None, None
    if GPT2Decoder.supports(model):  # the prompt straight into a preallocated cache, then a lean step per token
        dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else model.lm_head.weight.dtype
        decoder = GPT2Decoder(model, full_mask.bool(), dtype)
        logits, h = decoder.prefill(prompt_ids, prompt_mask, position_ids_from_mask(prompt_mask))
    else:  # logits_to_keep=1: only the last prompt position predicts a token, so skip the LM head elsewhere
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=position_ids_from_mask(prompt_mask),
                    use_cache=True, logits_to_keep=1, output_hidden_states=return_hidden)
        logits, cache = out.logits[:, -1], out.past_key_values  # [B, V]
        h = out.hidden_states[-1][:, -1] if return_hidden else None
    if return_hidden:
        hidden[:, 0] = h
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, max_new_tokens), device=device)
    ents = torch.zeros((B, max_new_tokens), device=device) if return_entropy else None
    done = torch.zeros(B, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        logp = F.log_softmax(logits.float() / temperature, dim=-1)  # [B, V]
        tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)  # [B]
        tok = tok.masked_fill(done, pad_id)
        tokens[:, t] = tok
        logps[:, t] = logp.gather(-1, tok[:, None]).squeeze(-1).masked_fill(done, 0.0)
        if return_entropy:
            ents[:, t] = entropy_from_logits(logp).masked_fill(done, 0.0)  # log-probs are valid logits
        done = done | (tok == eos_id)
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if decoder is not None:
            logits, h = decoder.step(tok, (next_pos + t).squeeze(-1), P + t)
            if return_hidden:
                hidden[:, t + 1] = h
            continue
        out = model(input_ids=tok[:, None], attention_mask=full_mask[:, : P + t + 1], position_ids=next_pos + t,
                    past_key_values=cache, use_cache=True, output_hidden_states=return_hidden)
        if return_hidden:
            hidden[:, t + 1] = out.hidden_states[-1][:, -1]
        cache = out.past_key_values
        logits = out.logits[:, -1]
    resp, resp_mask = truncate_after_eos(tokens, eos_id, pad_id)
    return Rollout(join(prompt_ids, prompt_mask, resp, resp_mask), logps * resp_mask, hidden, ents * resp_mask if return_entropy else None)


def response_hidden(model, seq: Sequences, share_prefix: bool = False) -> torch.Tensor | None:
    """Final hidden states [B, L, H] at the positions that predict the response tokens (P-1 .. P+L-2), with the
    last block run only there (rlhfsim.models.lean); None where that path does not apply (use `forward`).
    share_prefix: run each distinct prompt once (lean.gpt2_hidden_shared; the group optimisers' k rows per prompt)."""
    if not lean.supports(model):
        return None
    P, T = seq.prompt_len, seq.input_ids.shape[1]
    if share_prefix:
        h = lean.gpt2_hidden_shared(model, seq.input_ids, seq.attention_mask, seq.position_ids, P)
        if h is not None:
            return h
    keep = lean.span(seq.input_ids.shape[0], P - 1, T - 1, seq.input_ids.device)  # [B, L]
    return lean.gpt2_hidden(model, seq.input_ids, seq.attention_mask, seq.position_ids, keep)


def response_logits(model, seq: Sequences, temperature: float = 1.0, share_prefix: bool = False) -> torch.Tensor:
    """Logits predicting each response token: [B, L, V] (the prompt's last position predicts token 0).
    share_prefix: rows with the same prompt share its computation (response_hidden)."""
    h = response_hidden(model, seq, share_prefix)
    if h is not None:
        return model.lm_head(h).float() / temperature
    L = seq.input_ids.shape[1] - seq.prompt_len
    # logits_to_keep: the LM head runs on the L + 1 last positions only, not on the prompt
    out = model(input_ids=seq.input_ids, attention_mask=seq.attention_mask, position_ids=seq.position_ids, logits_to_keep=L + 1,
                use_cache=False)  # a full pass: a KV cache would only be built (by concatenation) and dropped
    return out.logits[:, :-1].float() / temperature


@functools.cache
def _takes_use_cache(cls) -> bool:
    """Decoders take `use_cache` (and would build a KV cache on a full pass and drop it); encoders such as
    DeBERTa do not accept it. Looked up once per model class, not on every PPO forward."""
    return "use_cache" in inspect.signature(cls.forward).parameters


def response_values(value_model, seq: Sequences) -> torch.Tensor:
    """Per-token values [B, L] from a sequence classifier's backbone + score head (value of the state before each token)."""
    h = response_hidden(value_model, seq)
    if h is not None:
        return value_model.score(h).squeeze(-1).float()
    backbone = getattr(value_model, value_model.base_model_prefix)
    kw = {"use_cache": False} if _takes_use_cache(type(backbone)) else {}
    h = backbone(input_ids=seq.input_ids, attention_mask=seq.attention_mask, position_ids=seq.position_ids, **kw).last_hidden_state
    return value_model.score(h[:, seq.prompt_len - 1 : -1]).squeeze(-1).float()


def response_logits_values(model, head, seq: Sequences, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward for a policy with a value head on its trunk: (logits [B, L, V], values [B, L])."""
    h = response_hidden(model, seq)
    if h is not None:
        return model.lm_head(h).float() / temperature, head(h)
    L = seq.input_ids.shape[1] - seq.prompt_len
    out = model(input_ids=seq.input_ids, attention_mask=seq.attention_mask, position_ids=seq.position_ids,
                logits_to_keep=L + 1, output_hidden_states=True, use_cache=False)
    return out.logits[:, :-1].float() / temperature, head(out.hidden_states[-1][:, seq.prompt_len - 1 : -1])
