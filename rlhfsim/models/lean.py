"""A GPT-2 trunk forward that runs the last block only at the positions whose output is read.

PPO reads the final hidden state at the L positions that predict (or value) the response tokens, a reward
model at one position per row (its last real token); `forward` runs the whole last block at all P + L
positions anyway (`logits_to_keep` only trims the LM head). Every position still needs the last block's
keys and values, but its query, attention output projection and MLP are needed only where read: at the
bench shape (P = 8, L = 16, 2 layers) that skips a seventh of a PPO forward and backward, and ~40% of a
reward model's forward.

`gpt2_hidden` runs the model's own modules (its LayerNorms, Conv1Ds and MLPs, so weights are shared and
gradients reach them), with the same math as `forward`; `supports(model)` says where that holds (tests
compare both), and callers fall back to `forward` elsewhere.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from rlhfsim.models.policy import has_dropout


def supports(model) -> bool:
    """True for the plain GPT-2 LM / sequence classifier (no adapters, no cross-attention, no upcast attention,
    no activation checkpointing) without active dropout."""
    from transformers import GPT2ForSequenceClassification, GPT2LMHeadModel

    if type(model) not in (
        GPT2LMHeadModel,
        GPT2ForSequenceClassification,
    ):  # subclasses and wrappers may change forward
        return False
    cfg = model.config
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers 5; 4.x calls it is_gradient_...
    checkpointing = model.is_gradient_checkpointing if checkpointing is None else checkpointing
    odd = cfg.add_cross_attention or cfg.reorder_and_upcast_attn or checkpointing
    old = not hasattr(model.transformer.h[0].attn, "scaling")  # older transformers keep the attention scale elsewhere
    return not (odd or old or (model.training and has_dropout(model)))


def _attention_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] bool: query t sees key s <= t where s is real; and always itself, so that a padding query
    (left padding) is not left with no key at all (softmax over nothing is nan). Real queries are unaffected:
    their own key is real and causal."""
    T = attention_mask.shape[1]
    causal = torch.ones((T, T), dtype=torch.bool, device=attention_mask.device).tril()
    allowed = (causal[None] & attention_mask[:, None, :].bool()) | torch.eye(
        T, dtype=torch.bool, device=attention_mask.device
    )
    return allowed[:, None]


def _block(
    block, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor | None, cache=None, prefix=None
) -> torch.Tensor:
    """One GPT-2 block. x [B, T, d] -> [B, T, d], or [B, K, d] at positions keep [B, K] (queries only there).
    cache: (keys, values) buffers [B*H, >= T, D] that receive this block's keys and values (a decoder's prefix).
    prefix: (keys, values) [B, H, S, D] of S earlier positions, attended before x's own (mask is then [B, 1, T, S+T])."""
    attn = block.attn
    B, T, d = x.shape
    H = attn.num_heads
    h = block.ln_1(x)  # [B, T, d]
    W, b = attn.c_attn.weight, attn.c_attn.bias  # Conv1D: [d, 3d], [3d]; columns are q | k | v
    if keep is None:
        q, k, v = attn.c_attn(h).split(d, dim=-1)  # [B, T, d] each
    else:
        K = keep.shape[1]
        x = x.gather(1, keep[..., None].expand(B, K, d))  # [B, K, d] the residual stream where read
        hq = h.gather(1, keep[..., None].expand(B, K, d))
        q = torch.addmm(b[:d], hq.reshape(-1, d), W[:, :d]).view(B, K, d)
        k, v = torch.addmm(b[d:], h.reshape(-1, d), W[:, d:]).view(B, T, 2 * d).split(d, dim=-1)
        mask = mask.gather(2, keep[:, None, :, None].expand(B, 1, K, T))  # [B, 1, K, T]
    heads = lambda t: t.unflatten(-1, (H, d // H)).transpose(1, 2)  # [B, n, d] -> [B, H, n, D]
    k, v = heads(k), heads(v)
    if cache is not None:
        cache[0][:, :T] = k.flatten(0, 1)
        cache[1][:, :T] = v.flatten(0, 1)
    if prefix is not None:
        k, v = torch.cat([prefix[0], k], 2), torch.cat([prefix[1], v], 2)  # [B, H, S+T, D]
    q = heads(q)
    # the CPU flash kernel's bf16 backward is ~14x its fp32 one (15 vs 1.1 ms a call at the bench shape, torch 2.13):
    # bf16 training on a CPU (autocast) takes the math kernel, whose backward is bf16 GEMMs
    slow = q.device.type == "cpu" and q.requires_grad and q.dtype == torch.bfloat16
    with sdpa_kernel(SDPBackend.MATH) if slow else nullcontext():
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling)  # [B, H, n, D]
    x = x + attn.c_proj(a.transpose(1, 2).flatten(2))
    return x + block.mlp(block.ln_2(x))


def gpt2_hidden(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    keep: torch.Tensor,
    caches: list | None = None,
) -> torch.Tensor:
    """Final hidden states (after ln_f) [B, K, d] at positions keep [B, K] (long) of each row.

    input_ids, attention_mask, position_ids: [B, T] (any padding side). Equals
    `model.transformer(...).last_hidden_state` gathered at `keep`, to float rounding.
    caches: one (keys, values) pair of [B*H, >= T, D] buffers per block, filled with the prefix's keys and values.
    """
    tr = model.transformer
    x = tr.wte(input_ids) + tr.wpe(position_ids)  # [B, T, d]
    mask = _attention_mask(attention_mask)
    n = len(tr.h)
    for i, block in enumerate(tr.h):
        x = _block(block, x, mask, keep if i == n - 1 else None, None if caches is None else caches[i])
    return tr.ln_f(x)


# a CPU GEMM's output rows equal a larger batch's from 8 rows up (fewer rows take another kernel, whose sums round
# differently; measured with 1 and 2 threads): the row-subset passes here and in the sampler keep at least this many
MIN_ROWS = 16


def _block_packed(
    block,
    x: torch.Tensor,
    real: torch.Tensor,
    mask: torch.Tensor,
    keep: torch.Tensor | None,
    keep_real: torch.Tensor | None,
) -> torch.Tensor:
    """`_block` on the real positions only. x [N, d]: the residual stream at the N real positions, `real` [N] their
    flat indices into [B, T] (mask [B, 1, T, T]). Norms, projections and MLPs run on the N rows; attention runs in
    the padded layout with zero keys and values at padding, which no real query attends (masked: exactly 0 weight).
    keep [B, K] / keep_real [Nk]: as `_block`'s keep, with keep_real the flat indices into [B, K] of the kept positions
    that are real; x is then [Nk, d] on return."""
    attn = block.attn
    B, T = mask.shape[0], mask.shape[-1]
    d = x.shape[1]
    H = attn.num_heads
    heads = lambda t: t.unflatten(-1, (H, d // H)).transpose(1, 2)  # [B, n, d] -> [B, H, n, D]
    scatter = lambda rows, idx, n: rows.new_zeros(B * n, rows.shape[1]).index_copy_(0, idx, rows).view(B, n, -1)
    h = block.ln_1(x)  # [N, d]
    if keep is None:
        q, k, v = scatter(attn.c_attn(h), real, T).split(d, dim=-1)  # [B, T, d] each, zero at padding
    else:
        K = keep.shape[1]
        hf = scatter(h, real, T)  # [B, T, d]
        hq = hf.gather(1, keep[..., None].expand(B, K, d)).flatten(0, 1)[keep_real]  # [Nk, d]
        xq = scatter(x, real, T).gather(1, keep[..., None].expand(B, K, d)).flatten(0, 1)[keep_real]
        W, b = attn.c_attn.weight, attn.c_attn.bias
        q = scatter(torch.addmm(b[:d], hq, W[:, :d]), keep_real, K)  # [B, K, d]
        k, v = scatter(torch.addmm(b[d:], h, W[:, d:]), real, T).split(d, dim=-1)
        mask = mask.gather(2, keep[:, None, :, None].expand(B, 1, K, T))  # [B, 1, K, T]
        real, x = keep_real, xq
    a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask, scale=attn.scaling)  # [B, H, n, D]
    x = x + attn.c_proj(a.transpose(1, 2).flatten(2).flatten(0, 1)[real])  # [N or Nk, d]
    return x + block.mlp(block.ln_2(x))


def gpt2_hidden_packed(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """`gpt2_hidden` [B, K, d] bit for bit at the kept positions that are real tokens, with the per-position work run
    only at real tokens (no gradients: callers run it with grad disabled). Kept positions that are padding hold ln_f of a zero state: callers mask
    them, as they masked `gpt2_hidden`'s values there.

    Why exact: every op but attention acts on each position alone, and a CPU GEMM's rows do not depend on how many
    rows it has (from 8 rows up, as rlhfsim.models.sampling.MIN_ROWS); attention runs on the same [B, H, T, D]
    layout with the same mask as `gpt2_hidden`, and a masked key gets weight exactly 0 whatever its value. On the
    propagation world's evaluation samples (responses 3.5 of 10 tokens on average) half the positions are padding."""
    tr = model.transformer
    B, T = input_ids.shape
    K = keep.shape[1]
    real = attention_mask.bool().flatten().nonzero().squeeze(-1)  # [N] flat indices of the real tokens
    keep_real = attention_mask.bool().gather(1, keep).flatten().nonzero().squeeze(-1)  # [Nk] into [B, K]
    if keep_real.numel() < MIN_ROWS:  # too few rows for the GEMMs' exactness: the padded pass
        return gpt2_hidden(model, input_ids, attention_mask, position_ids, keep)
    x = tr.wte(input_ids.flatten()[real]) + tr.wpe(position_ids.flatten()[real])  # [N, d]
    mask = _attention_mask(attention_mask)
    n = len(tr.h)
    for i, block in enumerate(tr.h):
        last = i == n - 1
        x = _block_packed(block, x, real, mask, keep if last else None, keep_real if last else None)
    out = x.new_zeros(B * K, x.shape[1]).index_copy_(0, keep_real, x).view(B, K, -1)
    return tr.ln_f(out)


def gpt2_hidden_shared(
    model, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, prompt_len: int
) -> torch.Tensor | None:
    """Final hidden states [B, L, d] at the positions P-1 .. P+L-2 (those that predict the response tokens), with each
    distinct prompt run once: `gpt2_hidden(..., span(B, P-1, P+L-1))` to float rounding, in less arithmetic.

    A prompt's positions attend only to the prompt (causal), so rows with the same prompt (GRPO's group of k
    completions) have the same prompt activations, keys and values. They are computed for the G distinct prompts and
    indexed out to the B rows (autograd sums their gradients back), and only the response positions run per row:
    prompt work drops by B / G. None when no prompt repeats (nothing to share; the caller uses gpt2_hidden).
    input_ids, attention_mask, position_ids: [B, P+L] in rlhfsim.models.layout's layout (prompt left-padded).
    """
    P, (B, T) = prompt_len, input_ids.shape
    uniq, inv = torch.unique(torch.cat([input_ids[:, :P], attention_mask[:, :P]], 1), dim=0, return_inverse=True)
    G = uniq.shape[0]
    if G == B:
        return None
    first = torch.zeros(G, dtype=torch.long, device=input_ids.device).scatter_(
        0, inv, torch.arange(B, device=input_ids.device)
    )
    tr, blocks = model.transformer, model.transformer.h
    d, H = tr.wte.weight.shape[1], blocks[0].attn.num_heads
    # 1. the G distinct prompts: every block at every prompt position but the last block's output only at P-1;
    #    each block's keys and values land in `caches` [G*H, P, D]
    x = tr.wte(input_ids[first, :P]) + tr.wpe(position_ids[first, :P])  # [G, P, d]
    caches = [(x.new_empty(G * H, P, d // H), x.new_empty(G * H, P, d // H)) for _ in blocks]
    mask = _attention_mask(attention_mask[first, :P])  # [G, 1, P, P]
    last = torch.full((G, 1), P - 1, device=input_ids.device)
    for i, block in enumerate(blocks):
        x = _block(block, x, mask, last if i == len(blocks) - 1 else None, caches[i])
    out = x[inv]  # [B, 1, d] the output at P-1, which predicts response token 0
    if T - 1 > P:
        # 2. the response positions P .. T-2 of every row, attending to their prompt's keys and values first
        xr = tr.wte(input_ids[:, P : T - 1]) + tr.wpe(position_ids[:, P : T - 1])  # [B, L-1, d]
        mask = _attention_mask(attention_mask[:, : T - 1])[:, :, P:]  # [B, 1, L-1, T-1]
        for block, (k, v) in zip(blocks, caches):
            prefix = (k.view(G, H, P, -1)[inv], v.view(G, H, P, -1)[inv])  # [B, H, P, D]
            xr = _block(block, xr, mask, None, prefix=prefix)
        out = torch.cat([out, xr], 1)
    return tr.ln_f(out)


def span(batch: int, start: int, stop: int, device) -> torch.Tensor:
    """keep [B, stop - start]: the same positions start..stop-1 in every row."""
    return torch.arange(start, stop, device=device).expand(batch, -1)


def classifier_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """`model(input_ids, attention_mask).logits` [B, labels] of a sequence classifier; for GPT-2 with the last block
    run only at the pooled token, the rightmost non-pad token as transformers' GPT-2 classifier pools."""
    if not supports(model) or not hasattr(model, "score"):
        return model(input_ids=input_ids, attention_mask=attention_mask).logits
    B, T = input_ids.shape
    pos = torch.arange(T, device=input_ids.device)
    pad = model.config.pad_token_id
    last = torch.full((B,), T - 1, device=input_ids.device) if pad is None else (pos * (input_ids != pad)).argmax(-1)
    # scoring (no gradients) on a CPU skips the padding (the pooled token is real): the same logits bit for bit
    packed = not torch.is_grad_enabled() and input_ids.device.type == "cpu"
    h = (gpt2_hidden_packed if packed else gpt2_hidden)(
        model, input_ids, attention_mask, pos.expand(B, T), last[:, None]
    )  # [B, 1, d]
    return model.score(h)[:, 0]
