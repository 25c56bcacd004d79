"""GRPO, Dr. GRPO and RLOO: critic-free policy optimisers whose baseline is the group of k completions of one prompt.

One iteration = a rollout of batch_size rows (batch_size / group_size prompts, prompt-major) and epochs x minibatches
clipped updates, as TRL's GRPOTrainer / RLOOTrainer. The math is rlhfsim.optim.core; the fidelity is
rlhfsim.diagnostics.advantage with the same group formula applied to gold scores on the same completions.
All three clip each token's ratio (GRPO's loss); TRL 1.x's RLOOTrainer clips one sequence-level ratio instead, so
RLOO's advantages equal TRL's but its loss does only on one-token completions (tests/optim/test_group.py).
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim import ops
from rlhfsim.diagnostics import advantage as fid
from rlhfsim.models.parallel import Parallel
from rlhfsim.models.sampling import response_logits
from rlhfsim.optim import core
from rlhfsim.optim.base import Batch, PolicyOptimizer, ScoreFn, batch_stats, group_ids, phase, rollout, rows

LOSS_NORM = {"grpo": "sequence", "dr_grpo": "constant", "rloo": "sequence"}


class GroupOptimizer(PolicyOptimizer):
    """The three share everything but the advantage rule (`name`) and the loss normalisation (LOSS_NORM)."""

    watched = (
        "loss/policy_avg",
        "objective/scores",
        "objective/kl",
        "objective/entropy",
        "policy/approxkl_avg",
        "policy/grad_norm_avg",
        "val/ratio",
    )

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
        super().__init__(policy, ref_policy, tokenizer, cfg, temperature, response_len, device, parallel)
        self.name = cfg.name
        self.optimizer = torch.optim.AdamW(list(policy.parameters()), lr=cfg.lr, eps=1e-5, foreach=True)

    # ------------------------------------------------------------------ advantages

    def shaped_scores(self, scores: torch.Tensor, b: Batch) -> torch.Tensor:
        """[B] what the group baseline sees: the score, minus beta x sequence KL when the KL is a reward penalty."""
        if self.cfg.kl_mode != "reward" or self.cfg.kl_coef == 0:
            return scores
        kl = ops.kl_penalty(b.logprobs, b.ref_logprobs, self.cfg.kl_estimator)
        return scores - self.cfg.kl_coef * ops.masked_sum(kl, b.mask, dim=-1)

    def advantages(self, scores: torch.Tensor, b: Batch) -> torch.Tensor:
        """[B] the advantage of each row (its whole sequence) from `scores` [B]."""
        return core.group_advantages(self.shaped_scores(scores, b), self.cfg.group_size, self.name)

    def kl_term(self, logprobs: torch.Tensor, b: Batch, rows_idx) -> torch.Tensor | None:
        """[mb, T] beta * k3(policy, ref) per token in the loss (kl_mode loss), else None."""
        if self.cfg.kl_mode != "loss" or self.cfg.kl_coef == 0:
            return None
        return self.cfg.kl_coef * ops.kl_penalty(logprobs, b.ref_logprobs[rows_idx], "k3")

    # ------------------------------------------------------------------ iteration

    def iteration(self, prompts, score_fn: ScoreFn, gold_fn: ScoreFn, generator: torch.Generator) -> dict:
        cfg = self.cfg
        b = rollout(
            self.policy,
            self.ref,
            self.tok,
            prompts,
            score_fn,
            gold_fn,
            generator,
            self.temperature,
            self.response_len,
            self.device,
            cfg.missing_eos_penalty,
            parallel=self.parallel,
        )
        adv, gold_adv = self.advantages(b.scores, b), self.advantages(b.gold, b)
        stats = {**batch_stats(b, cfg.kl_coef, self.tok.eos_token_id), **self.fidelity(prompts, b, adv, gold_adv)}
        self.iterations_done += 1
        with phase("update"):
            stats.update(self.update(b, adv, generator))
        return stats

    def fidelity(self, prompts, b: Batch, adv: torch.Tensor, gold_adv: torch.Tensor) -> dict:
        cfg = self.cfg
        tok_adv, tok_gold = (
            adv[:, None] * b.mask,
            gold_adv[:, None] * b.mask,
        )  # [B, T]: every token gets its row's advantage
        if cfg.kl_mode == "reward":
            non_score = -cfg.kl_coef * ops.kl_penalty(b.logprobs, b.ref_logprobs, cfg.kl_estimator) * b.mask
        else:
            non_score = -cfg.kl_coef * ops.kl_penalty(b.logprobs, b.ref_logprobs, "k3") * b.mask
        out = fid.fidelity_metrics(tok_adv, tok_gold, b.mask, b.scores, non_score, group_ids(prompts, cfg.group_size))
        # the same group rule on the scores alone: the KL shaping both sides share removed (score-only fidelity)
        score_adv, score_gold = (
            core.group_advantages(x, cfg.group_size, self.name)[:, None] * b.mask for x in (b.scores, b.gold)
        )
        out.update(fid.score_fidelity(score_adv, score_gold, b.mask))
        out["adv/std_raw"] = float(adv.std())
        out["adv/flat_groups"] = core.flat_group_share(b.scores, cfg.group_size)
        if self.wants_pg_cos():
            logprobs = ops.logprobs_from_logits(
                response_logits(self.policy, b.seq, self.temperature, share_prefix=True), b.seq.response_ids
            )
            out["adv/pg_cos"] = fid.pg_cosine(logprobs, tok_adv, tok_gold, b.mask, self.policy.parameters())
        return out

    def update(self, b: Batch, adv: torch.Tensor, generator: torch.Generator) -> dict:
        cfg = self.cfg
        B = adv.shape[0]
        mb = B // cfg.minibatches
        self.policy.train()
        stats = []
        for _ in range(cfg.epochs):
            order = ops.permutation(B, generator).to(self.device)  # on the generator's device (the run's)
            for s in range(0, B, mb):
                i = order[s : s + mb]
                self.optimizer.zero_grad(set_to_none=True)
                tokens = b.mask[
                    i
                ].sum()  # token means (ratio stats, entropy) weigh a chunk by its tokens, the loss by rows
                parts, losses = [], []
                for j in self.parallel.chunks(i):  # all of i on one process without compute.policy_micro_batch
                    seq = rows(b.seq, j)
                    logits = response_logits(self.policy, seq, self.temperature, share_prefix=True)  # [mb, T, V]
                    logprobs = ops.logprobs_from_logits(logits, seq.response_ids)
                    loss, st = core.clipped_policy_loss(
                        logprobs,
                        b.logprobs[j],
                        adv[j],
                        b.mask[j],
                        cfg.clip_range,
                        LOSS_NORM[self.name],
                        self.response_len,
                        self.kl_term(logprobs, b, j),
                    )
                    share = len(j) / len(i)  # both normalisations average over rows: a chunk weighs its share of them
                    (loss * share).backward()
                    with torch.no_grad():
                        st["policy/entropy"] = ops.masked_mean(ops.entropy_from_logits(logits), b.mask[j]).item()
                    parts.append((float(b.mask[j].sum() / tokens), st))
                    losses.append((share, {"loss/policy": st["loss/policy"]}))
                params = list(self.policy.parameters())
                self.parallel.sum_grads(params)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                st = {**self.parallel.weighted_stats(parts), **self.parallel.weighted_stats(losses)}
                stats.append({**st, "policy/grad_norm": float(grad_norm)})
        self.policy.eval()
        mean = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
        return {
            "loss/policy_avg": mean["loss/policy"],
            "policy/approxkl_avg": mean["policy/approxkl"],
            "policy/clipfrac_avg": mean["policy/clipfrac"],
            "policy/entropy_avg": mean["policy/entropy"],
            "policy/grad_norm_avg": mean["policy/grad_norm"],
            "val/ratio": mean["val/ratio"],
            "policy/updates": len(stats),
        }
