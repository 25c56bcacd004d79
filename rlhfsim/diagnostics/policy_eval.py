"""Per-round evaluation on the fixed held-out prompts: k completions each, scored by gold and proxy.

The same samples serve two phases: before PPO they diagnose the freshly trained reward model
(pairwise accuracy against gold, reward distributions); after PPO they measure the policy.

The held-out prompts are the same every round, so rounds are paired by prompt: a prompt's own difficulty is shared
by every round and cancels in a change. Each round logs the covariances over prompts of its per-prompt mean gold with
the MAX_LAG rounds before it (from their rewards/round_XXX.parquet, so a resumed run logs the same), from which the
standard error of any linear combination of rounds (a change, a window slope) is exact: Var(sum_i c_i gold_i) =
sum_ij c_i c_j cov_ij, the variance over prompts of each prompt's own combination, over P.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rlhfsim import ops as core
from rlhfsim.diagnostics.stagnation import MAX_LAG, bootstrap_se
from rlhfsim.models.layout import decode_responses, encode_prompts, has_eos
from rlhfsim.models.sampling import response_logprobs, sample


@dataclass
class EvalSamples:
    """k completions of each of P held-out prompts (row-major: prompt i's j-th completion is i*k + j)."""

    prompts: list  # [P] Prompt
    k: int
    texts: list[str]  # [P*k]
    gold: np.ndarray  # [P, k]
    kl: np.ndarray  # [P, k] sequence KL to the reference (sum of per-token k1 at the sampling temperature)
    entropy: np.ndarray  # [P, k] mean per-token entropy of the policy
    length: np.ndarray  # [P, k] tokens generated (EOS included)
    eos: np.ndarray  # [P, k] bool, ended with EOS
    move: np.ndarray | None = None  # [P, k] sequence KL(policy || previous round's policy), when `prev` was given

    @property
    def types(self) -> list[str]:
        return [p.type for p in self.prompts]

    def flat_prompts(self) -> list:
        return [p for p in self.prompts for _ in range(self.k)]


@torch.no_grad()
def sample_eval(
    policy, ref, world, prompts, k: int, response_len: int, temperature: float, generator, device, prev=None
) -> EvalSamples:
    tok = world.tokenizer
    flat = [p for p in prompts for _ in range(k)]
    p_ids, p_mask = encode_prompts(tok, [p.model_input for p in flat], device)
    ro = sample(
        policy,
        p_ids,
        p_mask,
        response_len,
        tok.eos_token_id,
        tok.pad_token_id,
        temperature,
        generator,
        return_entropy=True,
    )
    mask = ro.response_mask.float()
    logp = ro.logprobs  # [N, L] the sampler's own logprobs and entropies: no policy forward needed
    ref_logp = response_logprobs(ref, ro.seq, temperature)  # * mask: 0 at padding
    ent = core.masked_mean(ro.entropy, mask, dim=-1)
    texts = decode_responses(tok, ro.response_ids, ro.response_mask)
    gold = world.gold(flat, texts)
    shape = (len(prompts), k)
    move = None
    if prev is not None:
        prev_logp = response_logprobs(prev, ro.seq, temperature)
        move = (logp - prev_logp).sum(-1).cpu().numpy().reshape(shape)
    return EvalSamples(
        prompts=list(prompts),
        k=k,
        texts=texts,
        gold=np.asarray(gold, dtype=np.float64).reshape(shape),
        kl=(logp - ref_logp).sum(-1).cpu().numpy().reshape(shape),
        entropy=ent.cpu().numpy().reshape(shape),
        length=mask.sum(-1).cpu().numpy().reshape(shape),
        eos=has_eos(ro.response_ids, tok.eos_token_id).cpu().numpy().reshape(shape),
        move=move,
    )


def paired_round_metrics(cur: np.ndarray, prior: dict[int, np.ndarray]) -> dict:
    """The round's paired-by-prompt noise. cur: [P] per-prompt mean gold this round; prior: lag -> [P] the same
    prompts' means `lag` rounds earlier (missing lags absent).

    ``eval/gold_cov_lag{l}``: sample covariance over prompts (ddof 1) of cur and prior[l], divided by P: the
    covariance of the two rounds' eval/gold as estimates over these prompts (lag 0: the squared SE of eval/gold).
    ``eval/gold_delta_se``: SE of the change from the previous round, paired by prompt: sd(cur - prior[1]) / sqrt(P).
    """
    P = cur.size
    if P < 2:
        return {}
    out = {"eval/gold_cov_lag0": float(np.var(cur, ddof=1) / P)}
    for lag in sorted(prior):
        prev = prior[lag]
        out[f"eval/gold_cov_lag{lag}"] = float(np.cov(cur, prev, ddof=1)[0, 1] / P)
        if lag == 1:
            out["eval/gold_delta_se"] = float(np.std(cur - prev, ddof=1) / np.sqrt(P))
    return out


def prior_prompt_gold(rewards_dir, round_: int, prompt_ids: list, lags: int = MAX_LAG) -> dict[int, np.ndarray]:
    """lag -> [P] per-prompt mean gold of round ``round_ - lag`` read from ``rewards_dir/round_XXX.parquet`` (the held-out
    completions every complete round writes), for lags 1..``lags``; a round without a file (not run, skipped) or with
    other prompts (ids or order differ) is left out."""
    from pathlib import Path

    out = {}
    ids = np.asarray([str(i) for i in prompt_ids])
    for lag in range(1, lags + 1):
        f = Path(rewards_dir) / f"round_{round_ - lag:03d}.parquet"
        if round_ - lag < 0 or not f.is_file():
            continue
        df = pd.read_parquet(f, columns=["prompt_id", "gold"])
        if len(df) % len(ids):
            continue
        k = len(df) // len(ids)
        if not np.array_equal(df["prompt_id"].astype(str).to_numpy().reshape(len(ids), k)[:, 0], ids):
            continue
        out[lag] = df["gold"].to_numpy(dtype=np.float64).reshape(len(ids), k).mean(axis=1)  # row-major as EvalSamples
    return out


def policy_metrics(ev: EvalSamples, proxy: np.ndarray | None, rewards_dir=None, round_: int | None = None) -> dict:
    """Gold (overall, per family, closed accuracy), proxy, KL, entropy, length of the held-out samples.

    proxy: [P, k] aggregated proxy reward of the same completions, or None. rewards_dir, round_: where the earlier
    rounds' held-out rewards are, and this round's number: :func:`paired_round_metrics` adds their paired covariances
    (without them only its lag 0).
    """
    fam = np.array([p.family for p in ev.prompts])
    typ = np.array(ev.types)
    m = {
        "eval/gold": float(ev.gold.mean()),
        "eval/gold_se": bootstrap_se(ev.gold.mean(axis=1)),  # over prompts: what a stagnation window must beat
        "eval/kl": float(ev.kl.mean()),
        "eval/sqrt_kl": float(np.sqrt(max(ev.kl.mean(), 0.0))),
        "eval/entropy": float(ev.entropy.mean()),
        "eval/length": float(ev.length.mean()),
        "eval/eos_rate": float(ev.eos.mean()),
    }
    if ev.move is not None:
        m["eval/policy_move"] = float(ev.move.mean())
        m["eval/policy_move_se"] = bootstrap_se(ev.move.mean(axis=1))  # a sampled KL estimate: noisy, can be < 0
    for f in sorted(set(fam)):
        m[f"eval/gold_{f}"] = float(ev.gold[fam == f].mean())
    for t in sorted(set(typ)):
        m[f"eval/gold_{t}"] = float(ev.gold[typ == t].mean())
    if "closed" in set(typ):
        m["eval/accuracy_closed"] = float((ev.gold[typ == "closed"] >= 1.0).mean())
    prior = (
        prior_prompt_gold(rewards_dir, round_, [p.id for p in ev.prompts])
        if rewards_dir is not None and round_ is not None
        else {}
    )
    m.update(paired_round_metrics(ev.gold.mean(axis=1), prior))
    if proxy is not None:
        m["eval/proxy"] = float(np.mean(proxy))
        for t in sorted(set(typ)):
            m[f"eval/proxy_{t}"] = float(np.mean(proxy[typ == t]))
    return m


def rewards_table(
    ev: EvalSamples, member_rewards: np.ndarray | None, proxy: np.ndarray | None, round_: int
) -> pd.DataFrame:
    """One row per held-out completion: the rewards/round_XXX.parquet schema."""
    P, k = ev.gold.shape
    df = pd.DataFrame(
        {
            "round": round_,
            "prompt_id": np.repeat([p.id for p in ev.prompts], k),
            "family": np.repeat([p.family for p in ev.prompts], k),
            "prompt_type": np.repeat(ev.types, k),
            "completion_idx": np.tile(np.arange(k), P),
            "gold": ev.gold.ravel(),
            "proxy": proxy.ravel() if proxy is not None else np.nan,
            "kl": ev.kl.ravel(),
            "length": ev.length.ravel(),
            "eos": ev.eos.ravel(),
        }
    )
    if member_rewards is not None:
        for m in range(member_rewards.shape[0]):
            df[f"proxy_m{m}"] = member_rewards[m]
    return df


def sample_rows(ev: EvalSamples, proxy: np.ndarray | None, n: int) -> list[dict]:
    """The first completion of n prompts spread over families, decoded, with gold/proxy/KL."""
    by_family: dict[str, list[int]] = {}
    for i, p in enumerate(ev.prompts):
        by_family.setdefault(p.family, []).append(i)
    picks, j = [], 0
    while len(picks) < min(n, len(ev.prompts)):
        for idx in by_family.values():
            if j < len(idx) and len(picks) < n:
                picks.append(idx[j])
        j += 1
    return [
        {
            "prompt": ev.prompts[i].text,
            "family": ev.prompts[i].family,
            "completion": ev.texts[i * ev.k],
            "gold": float(ev.gold[i, 0]),
            "proxy": float(proxy[i, 0]) if proxy is not None else None,
            "kl": float(ev.kl[i, 0]),
        }
        for i in picks
    ]
