"""The model-level bench sections: rollout tokens/s (vs `generate`) and one PPO iteration.

Each function builds its own models at the benchmark shape, times with warm-up and returns a dict of
plain numbers (the CLI prints them and writes them to JSON).
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from rlhfsim.bench.common import Shape, median, policy_model, random_words, timeit, vocab_tokenizer
from rlhfsim.models.policy import build_value_model
from rlhfsim.models.sampling import sample
from rlhfsim.optim.config import PPOConfig
from rlhfsim.ppo.kl import FixedKLController
from rlhfsim.ppo.trainer import PPOTrainer
from rlhfsim.reward.config import RewardConfig
from rlhfsim.reward.model import RewardModels
from rlhfsim.world.base import Prompt


def _prompt_batch(tok, shape: Shape, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, P] prompt ids of real words and an all-ones mask (equal lengths: both samplers see the same batch)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, len(tok), (shape.prompts, shape.prompt_len), generator=g)
    return ids, torch.ones_like(ids)


def bench_rollout(shape: Shape) -> dict:
    """Generated tokens/s of rlhfsim's KV-cache sampler against `model.generate`, same model and batch.

    EOS is disabled for both (rlhfsim: an id that never occurs; generate: min_new_tokens = L), so both
    produce exactly B x L tokens and the comparison is per-token work, not luck with early stops.
    """
    tok = vocab_tokenizer(shape.vocab)
    model = policy_model(tok, shape, n_positions=shape.prompt_len + shape.response_len + 8)
    ids, mask = _prompt_batch(tok, shape)
    L, pad = shape.response_len, tok.pad_token_id
    gen = torch.Generator().manual_seed(1)

    def ours():
        return sample(model, ids, mask, L, -1, pad, 1.0, gen)

    def hf():
        with torch.inference_mode():
            return model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=True,
                max_new_tokens=L,
                min_new_tokens=L,
                pad_token_id=pad,
                top_k=None,
                top_p=None,
                temperature=1.0,
            )

    tokens = shape.prompts * L
    # interleave the two so that load from other processes hits both alike
    t_ours, t_hf = [], []
    for _ in range(2):
        t_ours += timeit(ours, shape.warmup if not t_ours else 0, max(1, shape.repeats // 2 + 1))
        t_hf += timeit(hf, shape.warmup if not t_hf else 0, max(1, shape.repeats // 2 + 1))
    ours_s, hf_s = median(t_ours), median(t_hf)
    return {
        "tokens": tokens,
        "rlhfsim_s": ours_s,
        "generate_s": hf_s,
        "rlhfsim_tokens_per_s": tokens / ours_s,
        "generate_tokens_per_s": tokens / hf_s,
        "speedup_vs_generate": hf_s / ours_s,
    }


def gold_stand_in(prompts, completions) -> np.ndarray:
    """[B] a cheap hidden 'gold' for the bench (the iteration's advantage diagnostics need one): words per completion."""
    return np.array([len(c.split()) for c in completions], dtype=np.float64)


def ppo_setup(shape: Shape, seed: int = 0, value_model: str = "separate"):
    """A PPOTrainer at the benchmark shape, its prompts and a score function: a GPT-2 reward model of the same shape
    scoring the completions through the loop's own path (`RewardModels.rewards`), as TRL's trainer scores with its
    reward model inside the iteration."""
    tok = vocab_tokenizer(shape.vocab)
    n_positions = shape.prompt_len + shape.response_len + 8
    policy = policy_model(tok, shape, n_positions=n_positions, seed=seed)
    ref = copy.deepcopy(policy).eval().requires_grad_(False)
    value = build_value_model(policy, "policy", value_model)
    cfg = PPOConfig(
        batch_size=shape.prompts,
        epochs=shape.ppo_epochs,
        minibatches=shape.ppo_minibatches,
        value_model=value_model,
        pg_cos_every=0,
    )  # the diagnostic pass is no part of the iteration timed against TRL
    trainer = PPOTrainer(
        policy, ref, value, tok, cfg, FixedKLController(cfg.kl_coef), 1.0, shape.response_len, torch.device("cpu")
    )
    texts = random_words(shape.prompts, shape.prompt_len, shape.vocab, torch.Generator().manual_seed(seed))
    prompts = [Prompt(i, "bench", "open", t) for i, t in enumerate(texts)]
    rm_cfg = RewardConfig(n_layer=shape.n_layer, n_embd=shape.n_embd, n_head=shape.n_head)
    rms = RewardModels(tok, rm_cfg, torch.device("cpu"), seed, n_positions=n_positions)

    def score(prompts, completions) -> np.ndarray:  # [B] the reward model's scores
        return rms.rewards([p.text for p in prompts], completions)[0]

    return trainer, prompts, score


def bench_ppo(shape: Shape) -> dict:
    """Seconds per `PPOTrainer.iteration` (generate, reference and value passes, reward, GAE, update).

    With a separate value model (the default, and TRL's last PPO trainer's design: the like-for-like
    comparison) and with a value head on the policy's trunk (`ppo.value_model: shared`), interleaved.
    """
    setups = {
        kind: (*ppo_setup(shape, value_model=kind), torch.Generator().manual_seed(2)) for kind in ("separate", "shared")
    }
    for trainer, prompts, score, gen in setups.values():  # warm both before timing either
        for _ in range(shape.warmup):
            trainer.iteration(prompts, score, gold_stand_in, gen)
    out = {}
    for kind, (trainer, prompts, score, gen) in setups.items():
        it = timeit(lambda: trainer.iteration(prompts, score, gold_stand_in, gen), 0, shape.repeats)  # noqa: B023 - called within this iteration
        # the halves as the iteration runs them: with the value forward's graph kept where the update reuses it,
        # each update timed on a fresh rollout (untimed setup)
        reuse, box = trainer.reuses_value_forward(len(prompts)), {}
        rollout = lambda: trainer.rollout(prompts, score, gold_stand_in, gen, keep_value_graph=reuse)  # noqa: B023 - called within this iteration
        ro = timeit(rollout, 0, shape.repeats)
        up = timeit(lambda: trainer.update(box["exp"], gen), 0, shape.repeats, setup=lambda: box.update(exp=rollout()))  # noqa: B023 - called within this iteration
        prefix = "" if kind == "separate" else "shared_"
        out.update(
            {f"{prefix}iteration_s": median(it), f"{prefix}rollout_s": median(ro), f"{prefix}update_s": median(up)}
        )
    out.update(
        {"iterations_per_s": 1.0 / out["iteration_s"], "batch": shape.prompts, "response_len": shape.response_len}
    )
    return out


def profile_ppo(shape: Shape, top: int = 8, value_model: str = "separate") -> dict:
    """The PPO iteration's top operators by own CPU time (torch.profiler over `shape.repeats` iterations):
    where the time goes, per iteration, so a change can be aimed at the profile rather than guessed."""
    from torch.profiler import ProfilerActivity, profile

    trainer, prompts, score = ppo_setup(shape, value_model=value_model)
    gen = torch.Generator().manual_seed(2)
    for _ in range(shape.warmup):
        trainer.iteration(prompts, score, gold_stand_in, gen)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(shape.repeats):
            trainer.iteration(prompts, score, gold_stand_in, gen)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)  # microseconds, all iterations
    n = shape.repeats
    ops = [
        {
            "name": e.key,
            "self_s_per_iter": e.self_cpu_time_total / 1e6 / n,
            "share": e.self_cpu_time_total / total,
            "calls_per_iter": e.count / n,
        }
        for e in events[:top]
    ]
    return {"value_model": value_model, "iterations": n, "total_s_per_iter": total / 1e6 / n, "ops": ops}
