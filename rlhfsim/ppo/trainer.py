"""PPO for a language model with a KL anchor: rollout -> score -> rewards/GAE -> clipped updates.

One `iteration` = one rollout batch and `epochs x minibatches` updates, as in TRL's PPO trainer.
The math lives in rlhfsim.ppo.core; this file only moves tensors between models and that math.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlhfsim import ops
from rlhfsim.diagnostics import advantage as fid
from rlhfsim.models import build
from rlhfsim.models.layout import Sequences, has_eos
from rlhfsim.models.parallel import Parallel
from rlhfsim.models.policy import ValueHead, has_dropout
from rlhfsim.models.sampling import response_logits, response_logits_values, response_values
from rlhfsim.optim.base import PolicyOptimizer, ScoreFn, group_ids, rollout
from rlhfsim.ppo import core
from rlhfsim.ppo.kl import get_kl_controller


@dataclass
class Experience:
    """One rollout batch, everything PPO needs (B rows, L response tokens)."""

    seq: Sequences  # [B, P+L] prompt + response ids, mask, position ids
    logprobs: torch.Tensor  # [B, L] behaviour-policy logprobs of the sampled tokens
    ref_logprobs: torch.Tensor  # [B, L] frozen reference (SFT) logprobs
    values: torch.Tensor  # [B, L] value estimates before each token
    scores: torch.Tensor  # [B] proxy score on the EOS token (after the missing-EOS penalty)
    gold: torch.Tensor  # [B] hidden gold reward (diagnostics only, never trained on)
    kl: torch.Tensor  # [B, L] per-token KL estimate
    rewards: torch.Tensor  # [B, L] -beta * kl, plus the score on the last real token
    advantages: torch.Tensor  # [B, L] GAE (whitened when configured): what the update applies
    returns: torch.Tensor  # [B, L] advantages + values (unwhitened)
    texts: list[str]  # decoded completions
    fidelity: dict  # advantage diagnostics: applied vs gold advantages on these very rollouts
    gold_advantages: torch.Tensor | None = (
        None  # [B, L] gold return-to-go minus a gold baseline (diagnostics.advantage)
    )
    value_graph: torch.Tensor | None = (
        None  # [B, L] `values` with their autograd graph, for the first update (see `rollout`)
    )


class PPOTrainer(PolicyOptimizer):
    name = "ppo"
    watched = (
        "loss/policy_avg",
        "loss/value_avg",
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
        value_model,
        tokenizer,
        cfg,
        kl_ctl,
        temperature: float,
        response_len: int,
        device,
        parallel: Parallel | None = None,
    ):
        super().__init__(policy, ref_policy, tokenizer, cfg, temperature, response_len, device, parallel)
        self.value = value_model
        self.kl_ctl = kl_ctl
        self.shared = isinstance(value_model, ValueHead)  # value head on the policy's trunk
        params = list(policy.parameters()) + list(value_model.parameters())
        # foreach: one batched kernel per op over all parameters (bit-identical to the per-tensor loop on CPU)
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, eps=1e-5, foreach=True)

    @classmethod
    def from_config(cls, cfg, policy, ref, tokenizer, device, parallel: Parallel | None = None) -> PPOTrainer:
        """Builds the value model (at this point of the run's torch RNG stream) and the KL controller."""
        o = cfg.optimizer
        kl_kwargs = (
            {"beta": o.kl_coef}
            if o.kl_controller == "fixed"
            else {"init_beta": o.kl_coef, "target": o.kl_target, "horizon": o.kl_horizon}
        )
        value = build.value_model(cfg, policy, device)
        return cls(
            policy,
            ref,
            value,
            tokenizer,
            o,
            get_kl_controller(o.kl_controller, **kl_kwargs),
            cfg.policy.temperature,
            cfg.policy.response_len,
            device,
            parallel,
        )

    def models(self) -> dict:
        return {"policy": self.policy, "value": self.value}

    # ------------------------------------------------------------------ rollout

    def reuses_value_forward(self, batch: int) -> bool:
        """Whether the update's first value forward is exactly the rollout's: one minibatch holding every row in one
        chunk on one process, and a value model without dropout, so the same weights see the same rows in the same
        deterministic function. Then the rollout keeps that forward's graph and the update backpropagates through it."""
        whole = self.parallel.world_size == 1 and (
            self.parallel.micro_batch is None or self.parallel.micro_batch >= batch
        )
        return not self.shared and self.cfg.minibatches == 1 and whole and not has_dropout(self.value)

    @torch.no_grad()
    def rollout(
        self, prompts, score_fn: ScoreFn, gold_fn: ScoreFn, generator: torch.Generator, keep_value_graph: bool = False
    ) -> Experience:
        """One batch of experience. keep_value_graph: run the value forward with autograd and keep the graph in
        `Experience.value_graph` (only where `reuses_value_forward`; `update` consumes it instead of a second forward)."""
        cfg = self.cfg
        # the rollout every optimiser shares (sample, score, reference pass), with the hidden states a shared value head
        # reads; the reference runs every row (no prefix sharing: PPO's rows are mostly distinct prompts)
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
            share_prefix=False,
            return_hidden=self.shared,
            parallel=self.parallel,
        )
        seq, mask, logprobs, ref_logprobs, scores, gold, texts = (
            b.seq,
            b.mask,
            b.logprobs,
            b.ref_logprobs,
            b.scores,
            b.gold,
            b.texts,
        )
        with torch.set_grad_enabled(keep_value_graph):  # the graph is kept only where the update reuses it
            raw_values = self.value(b.hidden) if self.shared else response_values(self.value, seq)  # [B, L]
        values = raw_values.detach() * mask
        rewards, kl, non_score = core.compute_rewards(
            scores, logprobs, ref_logprobs, mask, self.kl_ctl.value, cfg.kl_estimator
        )
        advantages, returns = core.compute_gae(rewards, values, mask, cfg.gamma, cfg.lam)
        raw = {
            "adv/std_raw": float(core.masked_var(advantages, mask).sqrt()),
            "adv/snr": fid.signal_to_noise(advantages, mask),
        }
        if cfg.whiten_advantages:
            advantages = core.whiten(advantages, mask)
        # fidelity of what the update applies (whitened) against gold returns minus gold baselines (no critic)
        ids = group_ids(prompts, getattr(cfg, "group_size", 1))
        gold_adv = fid.gold_token_advantages(gold, non_score, mask, cfg.gamma, ids)
        fidelity = {**fid.fidelity_metrics(advantages, gold_adv, mask, scores, non_score, ids), **raw}
        fidelity.update(self.score_fidelity(scores, gold, logprobs, ref_logprobs, values, mask, ids))
        return Experience(
            seq,
            logprobs,
            ref_logprobs,
            values,
            scores,
            gold,
            kl,
            rewards,
            advantages,
            returns,
            texts,
            fidelity,
            torch.as_tensor(gold_adv, dtype=torch.float32, device=self.device),
            raw_values if keep_value_graph else None,
        )

    def score_fidelity(self, scores, gold, logprobs, ref_logprobs, values, mask, ids) -> dict:
        """adv/*_score: the applied advantage's construction (GAE on the critic, whitened as configured) on the score
        alone (beta 0: no KL reward), against gold's return minus its gold baseline without the KL reward. GAE is linear
        in the rewards, so this is the applied advantage less its KL part (before whitening)."""
        cfg = self.cfg
        score_rewards, _, _ = core.compute_rewards(scores, logprobs, ref_logprobs, mask, 0.0, cfg.kl_estimator)
        adv, _ = core.compute_gae(score_rewards, values, mask, cfg.gamma, cfg.lam)
        if cfg.whiten_advantages:
            adv = core.whiten(adv, mask)
        gold_adv = fid.gold_token_advantages(gold, torch.zeros_like(mask), mask, cfg.gamma, ids)
        return fid.score_fidelity(adv, gold_adv, mask)

    # ------------------------------------------------------------------ update

    def update(self, exp: Experience, generator: torch.Generator) -> dict:
        cfg = self.cfg
        B = exp.scores.shape[0]
        mb = B // cfg.minibatches
        self.policy.train()
        self.value.train()
        stats: list[dict] = []
        stopped, epochs_run = False, 0
        for _ in range(cfg.epochs):
            if stopped:
                break
            epochs_run += 1
            order = ops.permutation(B, generator).to(self.device)  # on the generator's device (the run's)
            for s in range(0, B, mb):
                i = order[s : s + mb]
                self.optimizer.zero_grad(set_to_none=True)
                tokens = exp.seq.response_mask[i].sum()  # the minibatch's tokens: each chunk's loss weighs its share
                parts = []
                for j in self.parallel.chunks(
                    i
                ):  # one chunk (all of i) on one process without compute.policy_micro_batch
                    seq = Sequences(
                        exp.seq.input_ids[j], exp.seq.attention_mask[j], exp.seq.position_ids[j], exp.seq.prompt_len
                    )
                    mask = seq.response_mask.float()
                    if self.shared:  # one forward+backward through the trunk for both losses
                        logits, vpred = response_logits_values(
                            self.policy, self.value, seq, self.temperature
                        )  # [mb, L, V], [mb, L]
                    else:
                        logits = response_logits(self.policy, seq, self.temperature)  # [mb, L, V]
                        if exp.value_graph is not None:  # the rollout's forward at these very weights: j is every row
                            vpred, exp.value_graph = exp.value_graph[j], None  # [mb, L]; consumed once
                        else:
                            vpred = response_values(self.value, seq)  # [mb, L]
                    logprobs = core.logprobs_from_logits(logits, seq.response_ids)
                    pg_loss, pg_stats = core.policy_loss(
                        logprobs, exp.logprobs[j], exp.advantages[j], mask, cfg.clip_range
                    )
                    vf_loss, vf_stats = core.value_loss(
                        vpred, exp.values[j], exp.returns[j], mask, cfg.clip_range_value
                    )
                    share = float(seq.response_mask.sum() / tokens)
                    ((pg_loss + cfg.vf_coef * vf_loss) * share).backward()
                    with torch.no_grad():
                        entropy = core.masked_mean(core.entropy_from_logits(logits), mask).item()
                    parts.append((share, {**pg_stats, **vf_stats, "policy/entropy": entropy}))
                params = [p for g in self.optimizer.param_groups for p in g["params"]]
                self.parallel.sum_grads(params)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
                pg_stats = self.parallel.weighted_stats(parts)
                stats.append({**pg_stats, "policy/grad_norm": float(grad_norm)})
                # policy-side early stopping (TRL's old target_kl): the batch has moved the policy enough
                if cfg.target_kl is not None and pg_stats["policy/approxkl"] > cfg.target_kl:
                    stopped = True
                    break
        self.policy.eval()
        self.value.eval()
        out = {k: float(np.mean([s[k] for s in stats])) for k in stats[0]}
        out["policy/early_stopped"] = float(stopped)
        out["policy/updates"] = len(stats)
        out["policy/epochs"] = epochs_run
        return out

    def pg_cos(self, exp: Experience) -> dict:
        """adv/pg_cos: cosine of the policy-gradient directions of the applied and the gold advantages (at the
        behaviour weights, before the update; no dropout, no RNG)."""
        if not self.wants_pg_cos():
            return {}
        logits = response_logits(self.policy, exp.seq, self.temperature)
        logprobs = core.logprobs_from_logits(logits, exp.seq.response_ids)
        mask = exp.seq.response_mask.float()
        return {
            "adv/pg_cos": fid.pg_cosine(logprobs, exp.advantages, exp.gold_advantages, mask, self.policy.parameters())
        }

    def iteration(self, prompts, score_fn: ScoreFn, gold_fn: ScoreFn, generator: torch.Generator) -> dict:
        """Rollout + update; returns TRL-named stats averaged over the iteration's minibatches."""
        return self.iteration_with_experience(prompts, score_fn, gold_fn, generator)[0]

    def iteration_with_experience(
        self, prompts, score_fn: ScoreFn, gold_fn: ScoreFn, generator
    ) -> tuple[dict, Experience]:
        exp = self.rollout(
            prompts, score_fn, gold_fn, generator, keep_value_graph=self.reuses_value_forward(len(prompts))
        )
        cos = self.pg_cos(exp)
        self.iterations_done += 1
        upd = self.update(exp, generator)
        mask = exp.seq.response_mask.float()
        beta = self.kl_ctl.value
        seq_kl = (exp.kl * mask).sum(-1)  # [B]
        non_score = -beta * seq_kl
        stats = {
            "objective/kl": seq_kl.mean().item(),
            "objective/entropy": (-(exp.logprobs * mask).sum(-1)).mean().item(),
            "objective/non_score_reward": non_score.mean().item(),
            "objective/scores": exp.scores.mean().item(),
            "objective/rlhf_reward": (exp.scores + non_score).mean().item(),
            "objective/gold": exp.gold.mean().item(),
            "objective/kl_coef": beta,
            "policy/approxkl_avg": upd["policy/approxkl"],
            "policy/clipfrac_avg": upd["policy/clipfrac"],
            "policy/entropy_avg": upd["policy/entropy"],
            "policy/grad_norm_avg": upd["policy/grad_norm"],
            "loss/policy_avg": upd["loss/policy"],
            "loss/value_avg": upd["loss/value"],
            "val/clipfrac_avg": upd["val/clipfrac"],
            "val/ratio": upd["val/ratio"],
            "val/var_explained": core.explained_variance(exp.values, exp.returns, mask),
            "val/num_eos_tokens": int(has_eos(exp.seq.response_ids, self.tok.eos_token_id).sum().item()),
            "policy/early_stopped": upd["policy/early_stopped"],
            "policy/updates": upd["policy/updates"],
            "policy/epochs": upd["policy/epochs"],
            **exp.fidelity,
            **cos,
        }
        self.kl_ctl.update(stats["objective/kl"], exp.scores.shape[0])
        return stats, exp

    def state_dict(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            "iterations_done": self.iterations_done,
        }

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.iterations_done = int(state.get("iterations_done", 0))
