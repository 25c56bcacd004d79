"""A lean one-token decode step for GPT-2 models, over a preallocated KV cache.

At simulator scale (2 layers, width 128, batch 64) a decode step's arithmetic is ~0.05 GFLOP, and
`GPT2LMHeadModel.forward` spends several times that in per-call bookkeeping: output-capture wrappers,
building a 4-D causal mask, and `DynamicCache.update`'s `torch.cat`, which copies the whole cache every
step. `GPT2Decoder` runs the same modules (the model's own LayerNorms, Conv1Ds, MLPs and LM head, so
weights are never copied) with the cache written in place and a boolean key mask handed straight to
the attention scores. The prompt is encoded by `prefill` straight into the cache (rlhfsim.models.lean).

`GPT2Decoder.supports(model)` says when this path reproduces the model's forward (tests compare both);
anything else (other architectures, adapters, dropout while training, cross-attention) uses `forward`.
"""

from __future__ import annotations

import torch

from rlhfsim.models.lean import MIN_ROWS, gpt2_hidden, supports


class GPT2Decoder:
    def __init__(self, model, key_mask: torch.Tensor, dtype):
        """key_mask [B, T] bool over every cache column (prompt padding False, new tokens True); dtype of the cache."""
        self.model = model
        self.tr = model.transformer
        cfg = model.config
        self.H, self.D = cfg.n_head, cfg.n_embd // cfg.n_head
        self.n_layer = cfg.n_layer
        B, T = key_mask.shape
        # [layers, B*H, T, D]: T = prompt + all new tokens, written in place (no per-step cat); rows and heads share
        # one batch axis so that a step's first columns are a strided view bmm reads directly (no per-step copy)
        self.k = torch.zeros((self.n_layer, B * self.H, T, self.D), device=key_mask.device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        # additive mask [B*H, 1, T], built once: 0 where attended, -inf elsewhere; step t reads its first columns
        bias = torch.zeros((B, T), device=key_mask.device, dtype=dtype).masked_fill_(~key_mask, float("-inf"))
        self.bias = bias[:, None, None, :].expand(B, self.H, 1, T).reshape(B * self.H, 1, T)

    @staticmethod
    def supports(model) -> bool:
        """True where `step` computes what the model's forward computes: a plain GPT-2 LM that the lean forward
        supports (GPT-2 self-attention, no dropout while training; rlhfsim.models.lean.supports)."""
        from transformers import GPT2LMHeadModel

        return type(model) is GPT2LMHeadModel and supports(model)  # subclasses and adapter wrappers may change forward

    def prefill(
        self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode the left-padded prompt [B, P] straight into the cache (rlhfsim.models.lean, last block only at the
        last position); returns (logits [B, V], final hidden state [B, H*D]) predicting the first new token.

        Rows with the same prompt (evaluation's k samples of a prompt, a group optimiser's k rows) are encoded once
        and copied: on a CPU bit for bit the per-row encoding (each row's attention is its own [P, P] problem and a
        GEMM's rows do not depend on the row count from lean.MIN_ROWS up)."""
        B, P = prompt_ids.shape
        uniq = self._distinct(prompt_ids, prompt_mask)
        if uniq is not None:
            first, inv = uniq
            G = first.shape[0]
            caches = [(k.new_empty(G * self.H, P, self.D), k.new_empty(G * self.H, P, self.D)) for k in self.k]
            last = torch.full((G, 1), P - 1, device=prompt_ids.device)
            h = gpt2_hidden(self.model, prompt_ids[first], prompt_mask[first], position_ids[first], last, caches)[:, 0]
            for i, (k, v) in enumerate(caches):  # [G*H, P, D] -> the B rows' first P columns
                self.k[i, :, :P] = k.view(G, self.H, P, self.D)[inv].flatten(0, 1)
                self.v[i, :, :P] = v.view(G, self.H, P, self.D)[inv].flatten(0, 1)
            h = h[inv]
            return self.model.lm_head(h), h
        last = torch.full((B, 1), P - 1, device=prompt_ids.device)
        h = gpt2_hidden(self.model, prompt_ids, prompt_mask, position_ids, last, list(zip(self.k, self.v)))[:, 0]
        return self.model.lm_head(h), h

    @staticmethod
    def _distinct(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor):
        """(first row of each distinct prompt [G], each row's prompt [B]) where sharing is exact and saves work (CPU,
        prompts repeat, at least lean.MIN_ROWS distinct ones); else None."""
        if prompt_ids.device.type != "cpu" or torch.is_grad_enabled():
            return None
        B = prompt_ids.shape[0]
        uniq, inv = torch.unique(torch.cat([prompt_ids, prompt_mask], 1), dim=0, return_inverse=True)
        G = uniq.shape[0]
        if G == B or G < MIN_ROWS:
            return None
        first = torch.zeros(G, dtype=torch.long).scatter_(0, inv, torch.arange(B))
        return first, inv

    def keep(self, rows: torch.Tensor) -> None:
        """Drop every cached row but `rows` [A] (indices into the current rows): finished rows stop costing a step.
        The next `step` takes A tokens. A copy of the cache, so callers shrink it only when enough rows ended."""
        B = self.bias.shape[0] // self.H
        T = self.k.shape[2]
        self.k = self.k.view(self.n_layer, B, self.H, T, self.D)[:, rows].flatten(1, 2)  # [layers, A*H, T, D]
        self.v = self.v.view(self.n_layer, B, self.H, T, self.D)[:, rows].flatten(1, 2)
        self.bias = self.bias.view(B, self.H, 1, T)[rows].flatten(0, 1)  # [A*H, 1, T]

    def step(self, tok: torch.Tensor, pos: torch.Tensor, col: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one token per row at cache column ``col``; it attends to columns 0..col where the key mask allows.

        tok [B] token ids, pos [B] their position ids.
        Returns logits [B, V] for the next token and the final hidden state [B, H*D] (after ln_f).
        """
        B = tok.shape[0]
        x = self.tr.wte(tok) + self.tr.wpe(pos)  # [B, d]
        T = col + 1
        bias = self.bias[:, :, :T]  # [B*H, 1, T], added to the scores by baddbmm
        for i, block in enumerate(self.tr.h):
            attn = block.attn
            q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=-1)  # [B, d] each
            self.k[i, :, col].view(B, self.H, self.D).copy_(k.view(B, self.H, self.D))
            self.v[i, :, col].view(B, self.H, self.D).copy_(v.view(B, self.H, self.D))
            # one query per row: plain bmm-softmax-bmm beats the flash kernel, which is built for long queries
            keys = self.k[i, :, :T]  # [B*H, T, D], a view
            s = torch.baddbmm(
                bias, q.reshape(B * self.H, 1, self.D), keys.transpose(1, 2), alpha=attn.scaling
            )  # [B*H, 1, T]
            a = torch.bmm(s.softmax(-1), self.v[i, :, :T])  # [B*H, 1, D]
            x = x + attn.c_proj(a.reshape(B, -1))
            x = x + block.mlp(block.ln_2(x))
        h = self.tr.ln_f(x)
        return self.model.lm_head(h), h
