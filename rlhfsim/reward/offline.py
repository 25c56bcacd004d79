"""The offline preference set: comparisons annotated before round 1, as a real pipeline starts (reward.offline).

Real reward models are trained on a large labelled set of SFT-model (and human-written) answers before any
on-policy data exists (InstructGPT: ~33k prompts; Gao et al.: 10^4-10^5 comparisons). Here:

    collect   fresh training prompts (their own seeded stream), k SFT samples each + the world's reference answer,
              gold-scored and ranked by the run's annotator, prompt groups added until >= `comparisons` labelled pairs
    pretrain  the round-0 reward model(s) trained on that set (reward.early_stop applies), then kept: the cache holds
              the set and the trained weights, keyed by everything they depend on, like the SFT checkpoint
    mix       every round, `mix` x (number of on-policy training groups) offline groups drawn without replacement,
              seeded by (run seed, round), so the reward model keeps seeing the offline distribution

Nothing here touches the run's training streams: collection and pre-training run under their own generators and
inside a forked torch RNG, so a cached and an uncached start leave every later draw the same.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from rlhfsim.models.policy import numerics_cache_key
from rlhfsim.reward.buffer import OFFLINE_SEED, Group, annotate_group, mix  # noqa: F401 (mix: re-exported)
from rlhfsim.world.base import Prompt

log = logging.getLogger(__name__)
CHUNK = 256  # prompts sampled at once while collecting


def collect(world, sampler, annotator, n_pairs: int, k: int, reference: bool, seed: int, device) -> list[Group]:
    """Prompt groups (round 0) until they hold >= n_pairs labelled pairs: k SFT samples (+ the reference) each."""
    rng = np.random.default_rng([seed, OFFLINE_SEED])
    gen = torch.Generator(device=device).manual_seed(seed * OFFLINE_SEED % (2**63))
    groups: list[Group] = []
    pairs = 0
    while pairs < n_pairs:
        prompts = world.sample_prompts(CHUNK, rng)
        texts = sampler.texts([p for p in prompts for _ in range(k)], gen)
        gold = world.gold([p for p in prompts for _ in range(k)], texts).reshape(len(prompts), k)
        for i, p in enumerate(prompts):
            groups.append(
                annotate_group(world, annotator, p, texts[i * k : (i + 1) * k], gold[i], reference, rng, seed, 0)
            )
            pairs += groups[-1].n_pairs
            if pairs >= n_pairs:
                break
    return groups


def pretrain_config(reward_cfg):
    """The reward config pre-training runs under: offline.epochs (and lr), early stopping's min_epochs capped."""
    off = reward_cfg.offline
    es = reward_cfg.early_stop.model_copy(update={"min_epochs": min(reward_cfg.early_stop.min_epochs, off.epochs)})
    return reward_cfg.model_copy(update={"epochs": off.epochs, "lr": off.lr or reward_cfg.lr, "early_stop": es})


# ------------------------------------------------------------------ cache


# how the members' scores combine: read only when the proxy scores, never while (pre-)training the members
SCORING_ONLY = ("aggregation", "uwo_lambda", "standardise_members")


def cache_key(cfg, vocab: list[str], device) -> str:
    """Hash of what the set and the pre-trained weights depend on: world, SFT policy (and its sampling temperature),
    reward model (all but offline.mix and across_rounds, which act after pre-training, and the SCORING_ONLY fields,
    hashed at their defaults so that mean / WCO / UWO arms of one ensemble share one entry and entries written before
    stay valid), annotator, run seed, numerics."""
    return numerics_cache_key({**cache_inputs(cfg), "vocab": vocab, "v": 1}, device)


def cache_inputs(cfg) -> dict:
    """The config part of :func:`cache_key` (JSON-able; no tokenizer or device): runs with equal inputs share one
    offline entry (the sweep lets one of them build it, rlhfsim.sweep.runner.warm_groups)."""
    R = cfg.reward
    R = R.model_copy(update={k: type(R).model_fields[k].default for k in SCORING_ONLY})
    return {
        "world": cfg.world.model_dump(mode="json"),
        "policy": cfg.policy.model_dump(mode="json", exclude={"cache_dir"}),
        "reward": R.model_dump(mode="json", exclude={"offline": {"mix"}, "across_rounds": True}),
        "annotator": cfg.loop.annotator.model_dump(mode="json"),
        "seed": cfg.seed,
    }


def _encode(g: Group) -> dict:
    return {
        "prompt": g.prompt.__dict__,
        "completions": g.completions,
        "gold": g.gold.tolist(),
        "prefs": g.prefs.astype(int).tolist(),
        "is_reference": g.is_reference,
    }


def _decode(d: dict) -> Group:
    return Group(
        Prompt(**d["prompt"]),
        d["completions"],
        np.array(d["gold"]),
        np.array(d["prefs"], dtype=bool),
        0,
        d["is_reference"],
    )


def prepare(world, sampler, annotator, rms, cfg, device, train) -> tuple[list[Group], dict]:
    """(offline groups, row-0 stats): from the cache, or collected and pre-trained (`train(rms, groups, reward_cfg,
    rng)`, the run's reward trainer) and cached. Loads the pre-trained weights into `rms` either way."""
    off = cfg.reward.offline
    if off.comparisons == 0 or cfg.loop.reward_source != "learned":  # gold / noisy_gold train no reward model
        return [], {}
    tok = world.tokenizer
    path = (
        Path(cfg.policy.cache_dir)
        / f"offline-rm-{cache_key(cfg, tok.convert_ids_to_tokens(list(range(len(tok)))), device)}"
    )
    if (path / "groups.json").exists():
        log.info("offline preference set and reward model from cache %s", path)
        groups = [_decode(d) for d in json.loads((path / "groups.json").read_text())]
        rms.load_state_dict(torch.load(path / "rm.pt", map_location=device, weights_only=True))
        return groups, {**json.loads((path / "stats.json").read_text()), "offline/cached": 1}
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):  # the run's own torch stream must not see how the start was made
        groups = collect(
            world, sampler, annotator, off.comparisons, off.completions_per_prompt, off.reference, cfg.seed, device
        )
        fit = train(rms, groups, pretrain_config(cfg.reward), np.random.default_rng([cfg.seed, OFFLINE_SEED, 0]))
    renamed = {
        "rm/pairs": "rm/train_pairs",
        "rm/groups": "rm/train_groups",
    }  # the set's own totals keep the plain names
    stats = {
        **{
            "offline/" + renamed.get(k, k).removeprefix("rm/"): v for k, v in fit.items() if isinstance(v, (int, float))
        },
        "offline/groups": len(groups),
        "offline/pairs": int(sum(g.n_pairs for g in groups)),
        "time/offline": time.perf_counter() - t0,
    }
    _store(path, groups, rms, stats)
    return groups, {**stats, "offline/cached": 0}


def _store(path: Path, groups: list[Group], rms, stats: dict) -> None:
    """Write the cache entry atomically (a temporary folder renamed into place); a concurrent writer's entry wins."""
    if not all(torch.isfinite(t).all() for s in rms.state_dict() for t in s.values()):
        log.warning("offline reward model has non-finite weights; not caching it")
        return
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "groups.json").write_text(json.dumps([_encode(g) for g in groups]))
    torch.save(rms.state_dict(), tmp / "rm.pt")
    (tmp / "stats.json").write_text(json.dumps(stats))
    try:
        tmp.rename(path)
    except OSError:
        pass
