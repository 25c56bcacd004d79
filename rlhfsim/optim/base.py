"""What phase 7 needs from a policy optimiser, the policy sampler that belongs to none, and the rollout they share.

A `PolicyOptimizer` owns what it trains besides the policy (a value model, an optimiser state, a KL controller),
runs one iteration (rollout + updates) against a score function, names the metrics it emits (`watched`: the
divergence guards check them every iteration and a missing one stops the run), and computes its `adv/*`
fidelity with rlhfsim.diagnostics.advantage from the advantages (or pairs) it actually applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rlhfsim import ops
from rlhfsim.models.layout import Sequences, decode_responses, encode_prompts, has_eos
from rlhfsim.models.parallel import Parallel
from rlhfsim.models.sampling import response_logits, sample

ScoreFn = Callable[[list, list[str]], np.ndarray]  # (flat row prompts, completions) -> [B]
# torch.profiler labels of an iteration's phases (`rlhfsim bench --only grpo` sums them; any profiler trace shows them).
# record_function costs ~6 us a call when no profiler runs (4 calls in a ~0.1 s iteration).
PHASES = ("rollout/sample", "rollout/score", "rollout/reference", "update")
phase = torch.profiler.record_function


class PolicySampler:
    """Completions of the current policy (annotation, phase 2): no reference, value or gradient passes."""

    def __init__(self, policy, tokenizer, temperature: float, response_len: int, device):
        self.policy, self.tok, self.temperature, self.response_len, self.device = (
            policy,
            tokenizer,
            temperature,
            response_len,
            device,
        )

    @torch.no_grad()
    def texts(self, prompts, generator: torch.Generator) -> list[str]:
        p_ids, p_mask = encode_prompts(self.tok, [p.model_input for p in prompts], self.device)
        self.policy.eval()
        ro = sample(
            self.policy,
            p_ids,
            p_mask,
            self.response_len,
            self.tok.eos_token_id,
            self.tok.pad_token_id,
            self.temperature,
            generator,
        )
        return decode_responses(self.tok, ro.response_ids, ro.response_mask)


class PolicyOptimizer:
    """Base of every phase-7 optimiser; subclasses set `name` and `watched` and implement `iteration`."""

    name = "base"
    watched: tuple[str, ...] = ()

    def __init__(
        self,
        policy,
        ref_policy,
        tokenizer,
        cfg,
        temperature: float,
        response_len: int,
        device,
        parallel: Parallel | None = None,
    ):
        self.policy, self.ref, self.tok, self.cfg, self.device = policy, ref_policy, tokenizer, cfg, device
        self.temperature, self.response_len = temperature, response_len
        # data-parallel share and micro-batches (compute.policy_micro_batch) of each update's minibatch
        self.parallel = parallel or Parallel()
        self.iterations_done = 0  # counts pg_cos_every; checkpointed

    @classmethod
    def from_config(cls, cfg, policy, ref, tokenizer, device, parallel: Parallel | None = None) -> PolicyOptimizer:
        """The optimiser `cfg.optimizer` configures (cfg is the whole run config); a subclass that owns more (PPO: a
        value model, a KL controller) builds it here."""
        return cls(
            policy, ref, tokenizer, cfg.optimizer, cfg.policy.temperature, cfg.policy.response_len, device, parallel
        )

    def models(self) -> dict[str, torch.nn.Module]:
        """What this optimiser trains (the loop checkpoints, guards and restores exactly these)."""
        return {"policy": self.policy}

    def iteration(self, prompts, score_fn: ScoreFn, gold_fn: ScoreFn, generator: torch.Generator) -> dict:
        """One rollout on the flat row list `prompts` (prompt-major groups) and its updates; returns TRL-named stats."""
        raise NotImplementedError

    def wants_pg_cos(self) -> bool:
        every = getattr(self.cfg, "pg_cos_every", 0)
        return every > 0 and self.iterations_done % every == 0

    def state_dict(self) -> dict:
        """The optimiser state checkpointed with the round (`self.optimizer`: the AdamW of what it trains)."""
        return {"optimizer": self.optimizer.state_dict(), "iterations_done": self.iterations_done}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.iterations_done = int(state.get("iterations_done", 0))


@dataclass
class Batch:
    """One rollout for the critic-free optimisers (B rows, L response tokens)."""

    seq: Sequences  # [B, P+L]
    mask: torch.Tensor  # [B, L] float response mask
    logprobs: torch.Tensor  # [B, L] behaviour logprobs
    ref_logprobs: torch.Tensor  # [B, L]
    scores: torch.Tensor  # [B] score after the missing-EOS penalty
    gold: torch.Tensor  # [B] hidden gold (diagnostics only)
    texts: list[str]
    hidden: torch.Tensor | None = None  # [B, L, H] the policy's last hidden states at sampling (return_hidden only)


@torch.no_grad()
def rollout(
    policy,
    ref,
    tok,
    prompts,
    score_fn: ScoreFn,
    gold_fn: ScoreFn,
    generator,
    temperature: float,
    response_len: int,
    device,
    missing_eos_penalty: float | None = None,
    *,
    share_prefix: bool = True,
    return_hidden: bool = False,
    parallel: Parallel | None = None,
) -> Batch:
    """Sample one completion per row, score it (proxy and gold) and take the reference's logprobs: every optimiser's
    rollout (PPO adds its values and advantages to it). share_prefix: the reference pass runs each distinct prompt once
    (the group optimisers' k rows per prompt); return_hidden: keep the policy's hidden states (a value head on its
    trunk); parallel: stop unless every data-parallel process sampled the same tokens."""
    p_ids, p_mask = encode_prompts(tok, [p.model_input for p in prompts], device)
    policy.eval()
    with phase("rollout/sample"):
        ro = sample(
            policy,
            p_ids,
            p_mask,
            response_len,
            tok.eos_token_id,
            tok.pad_token_id,
            temperature,
            generator,
            return_hidden=return_hidden,
        )
        # clones: the sampler runs under inference_mode, and its tensors cannot enter the update's autograd graph
        seq = Sequences(
            ro.seq.input_ids.clone(), ro.seq.attention_mask.clone(), ro.seq.position_ids.clone(), ro.seq.prompt_len
        )
        if parallel is not None:
            parallel.check_same(seq.input_ids, "the rollout's token ids")  # each process updates on its share of it
        mask = seq.response_mask.float()
    with phase("rollout/score"):  # decoding included: the reward model reads text
        texts = decode_responses(tok, seq.response_ids, seq.response_mask)
        scores = torch.as_tensor(score_fn(prompts, texts), dtype=torch.float32, device=device)
    gold = torch.as_tensor(gold_fn(prompts, texts), dtype=torch.float32, device=device)
    if missing_eos_penalty is not None:
        scores = scores - missing_eos_penalty * (~has_eos(seq.response_ids, tok.eos_token_id)).float()
    with phase("rollout/reference"):
        ref_logits = response_logits(ref, seq, temperature, share_prefix=share_prefix)
        ref_logprobs = ops.logprobs_from_logits(ref_logits, seq.response_ids) * mask
    return Batch(
        seq, mask, ro.logprobs.clone(), ref_logprobs, scores, gold, texts, ro.hidden.clone() if return_hidden else None
    )


def rows(seq: Sequences, idx: torch.Tensor) -> Sequences:
    return Sequences(seq.input_ids[idx], seq.attention_mask[idx], seq.position_ids[idx], seq.prompt_len)


def group_ids(prompts, group_size: int) -> np.ndarray:
    """[B] id of each row's baseline group: its prompt group when group_size > 1, else its prompt type
    (PPO's flat layout: the gold baseline is then the mean gold return of the batch's rows of the same type)."""
    if group_size > 1:
        return np.arange(len(prompts)) // group_size
    types = sorted({p.type for p in prompts})
    return np.array([types.index(p.type) for p in prompts])


def batch_stats(b: Batch, beta: float, eos_id: int) -> dict:
    """The objective/* stats every optimiser reports on its rollout (KL: k1 sum per sequence, as TRL logs it)."""
    seq_kl = ((b.logprobs - b.ref_logprobs) * b.mask).sum(-1)  # [B]
    return {
        "objective/kl": seq_kl.mean().item(),
        "objective/entropy": (-(b.logprobs * b.mask).sum(-1)).mean().item(),
        "objective/scores": b.scores.mean().item(),
        "objective/rlhf_reward": (b.scores - beta * seq_kl).mean().item(),
        "objective/gold": b.gold.mean().item(),
        "objective/kl_coef": beta,
        "val/num_eos_tokens": int(has_eos(b.seq.response_ids, eos_id).sum().item()),
    }
