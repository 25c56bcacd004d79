"""Online DPO: pairs from the policy's own k completions per prompt, chosen and rejected by the current score.

Only the score's within-prompt order reaches the policy (the best and the worst of each group), so a reward model
whose per-prompt profile collapsed but kept its order trains it the same: the control arm of the optimisers study.
The loss is rlhfsim.optim.core.dpo_loss against the frozen SFT reference; fidelity is the share of training pairs gold
orders the same way (rlhfsim.diagnostics.advantage.pair_fidelity).
"""

from __future__ import annotations

import numpy as np
import torch

from rlhfsim import ops
from rlhfsim.diagnostics import advantage as fid
from rlhfsim.models.parallel import Parallel
from rlhfsim.models.sampling import response_logits
from rlhfsim.optim import core
from rlhfsim.optim.base import PolicyOptimizer, ScoreFn, batch_stats, phase, rollout, rows


class OnlineDPO(PolicyOptimizer):
    name = "online_dpo"
    watched = ("loss/policy_avg", "objective/scores", "objective/kl", "objective/entropy", "policy/grad_norm_avg")

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
        self.optimizer = torch.optim.AdamW(list(policy.parameters()), lr=cfg.lr, eps=1e-5, foreach=True)

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
            parallel=self.parallel,
        )
        chosen, rejected = core.best_worst_pairs(b.scores, cfg.group_size)  # [P'] row indices
        stats = batch_stats(b, 0.0, self.tok.eos_token_id)
        stats.update(fid.pair_fidelity(b.gold[chosen], b.gold[rejected], b.scores[chosen] - b.scores[rejected]))
        stats["adv/flat_groups"] = core.flat_group_share(b.scores, cfg.group_size)
        stats["dpo/pairs"] = int(chosen.numel())
        self.iterations_done += 1
        with phase("update"):
            stats.update(self.update(b, chosen, rejected, generator))
        return stats

    def update(self, b, chosen: torch.Tensor, rejected: torch.Tensor, generator: torch.Generator) -> dict:
        cfg = self.cfg
        P = chosen.numel()
        ref_seq = (b.ref_logprobs * b.mask).sum(-1)  # [B] reference sequence log-probabilities
        stats = []
        self.policy.train()
        mb = max(1, P // cfg.minibatches)
        for _ in range(cfg.epochs if P else 0):
            order = ops.permutation(P, generator).to(self.device)  # on the generator's device (the run's)
            for s in range(0, P, mb):
                j = order[s : s + mb]
                self.optimizer.zero_grad(set_to_none=True)
                tokens = b.mask[chosen[j]].sum() + b.mask[rejected[j]].sum()  # the entropy is a token mean
                parts, entropies = [], []
                for k in self.parallel.chunks(j):  # pairs: all of j on one process without compute.policy_micro_batch
                    c, r = chosen[k], rejected[k]
                    idx = torch.cat([c, r])
                    seq = rows(b.seq, idx)
                    logits = response_logits(self.policy, seq, self.temperature, share_prefix=True)  # [2n, T, V]
                    logp = (ops.logprobs_from_logits(logits, seq.response_ids) * b.mask[idx]).sum(-1)  # [2n]
                    n = c.numel()
                    loss, h = core.dpo_loss(logp[:n], logp[n:], ref_seq[c], ref_seq[r], cfg.beta)
                    share = len(k) / len(j)  # the loss is a mean over pairs: a chunk weighs its share of them
                    (loss * share).backward()
                    with torch.no_grad():
                        ent = ops.masked_mean(ops.entropy_from_logits(logits), b.mask[idx]).item()
                    parts.append(
                        (share, {"loss": loss.item(), "margin": h.mean().item(), "acc": (h > 0).float().mean().item()})
                    )
                    entropies.append((float(b.mask[idx].sum() / tokens), {"entropy": ent}))
                params = list(self.policy.parameters())
                self.parallel.sum_grads(params)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                st = {**self.parallel.weighted_stats(parts), **self.parallel.weighted_stats(entropies)}
                stats.append({**st, "grad_norm": float(grad_norm)})
        self.policy.eval()
        if not stats:  # every group flat: nothing to learn from this batch (logged, not an error)
            return {
                "loss/policy_avg": float(np.log(2)),
                "rewards/margins": 0.0,
                "rewards/accuracies": float("nan"),
                "policy/grad_norm_avg": 0.0,
                "policy/entropy_avg": float("nan"),
                "policy/updates": 0,
            }
        mean = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
        return {
            "loss/policy_avg": mean["loss"],
            "rewards/margins": mean["margin"],
            "rewards/accuracies": mean["acc"],
            "policy/grad_norm_avg": mean["grad_norm"],
            "policy/entropy_avg": mean["entropy"],
            "policy/updates": len(stats),
        }
