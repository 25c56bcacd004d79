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
from rlhfsim.ops import entropy_from_logits, logprobs_from_logits


@dataclass
class Rollout:
    seq: Sequences  # [B, P+L] prompt + response
    logprobs: torch.Tensor  # [B, L] sampling logprobs of the response tokens (0 on pads)
    hidden: torch.Tensor | None = None  # [B, L, H] last hidden state before each response token (return_hidden)
    entropy: torch.Tensor | None = (
        None  # [B, L] entropy (nats) of each step's sampling distribution (0 on pads; return_entropy)
    )

    @property
    def response_ids(self) -> torch.Tensor:
        return self.seq.response_ids

    @property
    def response_mask(self) -> torch.Tensor:
        return self.seq.response_mask


# the smallest batch a compacted step runs: a CPU GEMM's rows equal those of a larger batch's from 8 rows up (fewer
# rows take another kernel whose sums round differently; measured with 1 and 2 threads, tests/models/test_sampling.py)
MIN_ROWS = 16
COMPACT_AT = 0.9  # shrink the decoder's cache when the rows still generating fall to 90% of those it holds


def draw(probs: torch.Tensor, generator, B: int, rows: torch.Tensor) -> torch.Tensor:
    """torch.multinomial(P, 1) of a [B, V] probability matrix P, for its rows `rows` only: probs [A, V] = P[rows].

    ATen draws one sample as argmax(P / q) with q ~ Exp(1) of P's shape ([B, V], from `generator`); drawing the
    whole q keeps the generator's stream (and every row's token) what a multinomial over all B rows gives, while
    the division and argmax run on the A rows still generating. [A] long."""
    if not bool(torch.isfinite(probs).all()) or bool((probs < 0).any()):  # multinomial's own check, same message
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    q = torch.empty((B, probs.shape[1]), dtype=probs.dtype, device=probs.device).exponential_(1, generator=generator)
    return (probs / q[rows]).argmax(-1)


def compact_rows(done: torch.Tensor) -> torch.Tensor | None:
    """Which of the decoder's current rows to keep (indices [A'], sorted), or None to keep them all: the rows not
    done, topped up with done rows to MIN_ROWS; None unless that falls to COMPACT_AT of the rows held. done [A] bool."""
    A = done.shape[0]
    n_alive = int((~done).sum())
    n_keep = max(n_alive, MIN_ROWS)
    if n_keep > COMPACT_AT * A:
        return None
    keep = ~done
    if n_keep > n_alive:  # too few rows left for the GEMMs' exactness: carry the first finished rows along
        keep[torch.nonzero(done).squeeze(-1)[: n_keep - n_alive]] = True
    return torch.nonzero(keep).squeeze(-1)


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
    compact: bool = True,
) -> Rollout:
    """Ancestral sampling, one token per step, reusing the KV cache; stops when every row has ended.

    return_hidden: also keep the final hidden state that predicts each response token, so a value head on
    the policy's trunk gets its values without another forward pass.
    return_entropy: also keep each step's entropy (evaluation's policy entropy without another forward pass).
    compact: step only the rows still generating (CPU, lean decoder, no return_hidden): the same tokens and
    logprobs bit for bit, in a fraction of the work where most completions end early (2/3 of evaluation's steps
    on the propagation world were finished rows). False runs every row every step, as before.
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
        dtype = (
            torch.get_autocast_dtype(device.type)
            if torch.is_autocast_enabled(device.type)
            else model.lm_head.weight.dtype
        )
        decoder = GPT2Decoder(model, full_mask.bool(), dtype)
        logits, h = decoder.prefill(prompt_ids, prompt_mask, position_ids_from_mask(prompt_mask))
    else:  # logits_to_keep=1: only the last prompt position predicts a token, so skip the LM head elsewhere
        out = model(
            input_ids=prompt_ids,
            attention_mask=prompt_mask,
            position_ids=position_ids_from_mask(prompt_mask),
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=return_hidden,
        )
        logits, cache = out.logits[:, -1], kv_cache(out)  # [B, V]
        h = out.hidden_states[-1][:, -1] if return_hidden else None
    if return_hidden:
        hidden[:, 0] = h
    tokens = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((B, max_new_tokens), device=device)
    ents = torch.zeros((B, max_new_tokens), device=device) if return_entropy else None
    done = torch.zeros(B, dtype=torch.bool, device=device)
    # compaction: the decoder steps only rows still generating (exact on CPU, see compact_rows); off where the
    # hidden states of finished rows are returned (a shared value head reads every row) or on GPUs (unmeasured)
    compact = compact and decoder is not None and not return_hidden and device.type == "cpu" and B >= MIN_ROWS
    rows = torch.arange(B, device=device)  # the rows `logits` belong to (all of them until the first compaction)
    for t in range(max_new_tokens):
        logp = F.log_softmax(logits.float() / temperature, dim=-1)  # [A, V]
        if compact:
            tok = draw(logp.exp(), generator, B, rows)  # [A] exactly torch.multinomial's draw for these rows
        else:
            tok = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)  # [B]
        d = done[rows]
        tok = tok.masked_fill(d, pad_id)
        tokens[rows, t] = tok
        logps[rows, t] = logp.gather(-1, tok[:, None]).squeeze(-1).masked_fill(d, 0.0)
        if return_entropy:
            ents[rows, t] = entropy_from_logits(logp).masked_fill(d, 0.0)  # log-probs are valid logits
        done[rows] = d | (tok == eos_id)
        if t == max_new_tokens - 1 or bool(done.all()):
            break
        if decoder is not None:
            if compact and (sel := compact_rows(done[rows])) is not None:
                decoder.keep(sel)
                rows, tok = rows[sel], tok[sel]
            logits, h = decoder.step(tok, (next_pos[rows] + t).squeeze(-1), P + t)
            if return_hidden:
                hidden[:, t + 1] = h
            continue
        out = model(
            input_ids=tok[:, None],
            attention_mask=full_mask[:, : P + t + 1],
            position_ids=next_pos + t,
            **{cache_kw(model): cache},
            use_cache=True,
            output_hidden_states=return_hidden,
        )
        if return_hidden:
            hidden[:, t + 1] = out.hidden_states[-1][:, -1]
        cache = kv_cache(out)
        logits = out.logits[:, -1]
    resp, resp_mask = truncate_after_eos(tokens, eos_id, pad_id)
    return Rollout(
        join(prompt_ids, prompt_mask, resp, resp_mask),
        logps * resp_mask,
        hidden,
        ents * resp_mask if return_entropy else None,
    )


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
    out = model(
        input_ids=seq.input_ids,
        attention_mask=seq.attention_mask,
        position_ids=seq.position_ids,
        logits_to_keep=L + 1,
        use_cache=False,
    )  # a full pass: a KV cache would only be built (by concatenation) and dropped
    return out.logits[:, :-1].float() / temperature


@torch.inference_mode()
def response_logprobs(model, seq: Sequences, temperature: float = 1.0) -> torch.Tensor:
    """[B, L] log-probabilities of the response tokens, 0 at padding: `logprobs_from_logits(response_logits(...)) *
    response_mask` bit for bit, with the work at padding skipped where the lean forward applies
    (lean.gpt2_hidden_packed: evaluation's reference and previous-policy passes; inference only)."""
    mask = seq.response_mask
    P, (B, T) = seq.prompt_len, seq.input_ids.shape
    if not lean.supports(model) or seq.input_ids.device.type != "cpu":
        return logprobs_from_logits(response_logits(model, seq, temperature), seq.response_ids) * mask
    keep = lean.span(B, P - 1, T - 1, seq.input_ids.device)  # [B, L] the positions predicting the response
    h = lean.gpt2_hidden_packed(model, seq.input_ids, seq.attention_mask, seq.position_ids, keep)  # [B, L, d]
    real = mask.bool()  # a response token's predicting position is real (the prompt's last token, or a real token)
    if int(real.sum()) < lean.MIN_ROWS:
        return logprobs_from_logits(model.lm_head(h).float() / temperature, seq.response_ids) * mask
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    # [N, V] logits of the real positions only: each row as in the [B, L, V] pass (rows of a GEMM, then per-row ops)
    out[real] = logprobs_from_logits(
        (model.lm_head(h[real]).float() / temperature)[None], seq.response_ids[real][None]
    )[0]
    return out


@functools.cache
def _cache_kw(cls) -> str:
    """transformers 5.x renamed the KV-cache argument past_key_values -> cache (the old name warns on every decode
    step and goes in 5.40); older releases take only the old name. Looked up once per model class."""
    return "cache" if "cache" in inspect.signature(cls.forward).parameters else "past_key_values"


def cache_kw(model) -> str:
    return _cache_kw(type(model))


def kv_cache(out):
    """The KV cache of a forward's output under either name (the field was renamed with the argument)."""
    cache = out.get("cache")
    return cache if cache is not None else out.get("past_key_values")


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
    h = backbone(
        input_ids=seq.input_ids, attention_mask=seq.attention_mask, position_ids=seq.position_ids, **kw
    ).last_hidden_state
    return value_model.score(h[:, seq.prompt_len - 1 : -1]).squeeze(-1).float()


def response_logits_values(model, head, seq: Sequences, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward for a policy with a value head on its trunk: (logits [B, L, V], values [B, L])."""
    h = response_hidden(model, seq)
    if h is not None:
        return model.lm_head(h).float() / temperature, head(h)
    L = seq.input_ids.shape[1] - seq.prompt_len
    out = model(
        input_ids=seq.input_ids,
        attention_mask=seq.attention_mask,
        position_ids=seq.position_ids,
        logits_to_keep=L + 1,
        output_hidden_states=True,
        use_cache=False,
    )
    return out.logits[:, :-1].float() / temperature, head(out.hidden_states[-1][:, seq.prompt_len - 1 : -1])
