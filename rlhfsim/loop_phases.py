"""The round loop's phases: rlhfsim/loop.py reads as the numbered phases of docs/architecture.md and calls these,
each with its inputs as arguments and its metrics as the return value (the loop adds them to the round's row).

The optimiser's reward (the Proxy) changes only by a line of loop.py: phase 5's `train_reward` (the members it trains,
the rounds' snapshots) and the Proxy's setters there. The `fit_*` / `calibrate_*` helpers here only return values,
and the diagnostics never change what trains.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rlhfsim import diagnostics as diag
from rlhfsim.diagnostics import audit
from rlhfsim.diagnostics.policy_eval import EvalSamples, policy_metrics, rewards_table, sample_rows
from rlhfsim.reward import build as reward_build
from rlhfsim.reward import recalibrate
from rlhfsim.reward.buffer import Group, annotate_group
from rlhfsim.reward.ensemble import ensemble_diagnostics
from rlhfsim.reward.proxy import calibrate_noisy_gold
from rlhfsim.world.distinct import first_distinct

RECAL_SEED = 104_729  # recalibration prompts: default_rng([seed, RECAL_SEED, round])
FRESH_RM_SEED = 7919  # reward.init fresh: members re-initialised from seed * FRESH_RM_SEED + round


# ------------------------------------------------------------------ phases 2-5: data and the reward model


def generate_completions(sim, prompts) -> tuple[list[str], dict]:
    """Phase 2: k completions per prompt from the current policy, prompt-major; with loop.distinct_oversample > 1 the
    first k distinct texts of each prompt's draws (ranking data with a total order) and annot/distinct_share."""
    L = sim.cfg.loop
    flat = [p for p in prompts for _ in range(L.completions_per_prompt * L.distinct_oversample)]
    texts = sim.sampler.texts(flat, sim.gen)
    if L.distinct_oversample == 1:
        return texts, {}
    kept, n_distinct = first_distinct(texts, len(prompts), L.completions_per_prompt)
    return kept, {"annot/distinct_share": float(np.mean(n_distinct == L.completions_per_prompt))}


def mean_steps(steps: list[dict]) -> dict:
    """The round's mean of each optimiser stat over its iterations (a stat measured only every N iterations, e.g.
    adv/pg_cos, over the iterations that measured it)."""
    keys = dict.fromkeys(k for s in steps for k in s if k not in ("round", "iteration"))
    return {k: float(np.mean([s[k] for s in steps if k in s])) for k in keys}


def annotate_groups(sim, prompts, texts: list[str], round_: int) -> list[Group]:
    """Gold-score every completion, optionally add the reference answer, and let the annotator rank them."""
    k = sim.cfg.loop.completions_per_prompt
    gold = sim.world.gold([p for p in prompts for _ in range(k)], texts).reshape(len(prompts), k)
    groups = []
    for i, p in enumerate(prompts):
        with_ref = sim.rng["reference_mix"].random() < sim.cfg.loop.reference_mix  # drawn first: the streams' order
        groups.append(
            annotate_group(
                sim.world,
                sim.annotator,
                p,
                texts[i * k : (i + 1) * k],
                gold[i],
                with_ref,
                sim.rng["annotate"],
                sim.cfg.seed,
                round_,
            )
        )
    return groups


def annotation_stats(groups: list[Group]) -> dict:
    pairs = [g.n_pairs for g in groups]
    return {"annot/pairs": int(sum(pairs)), "annot/groups_without_pairs": float(np.mean([n == 0 for n in pairs]))}


def reward_frozen(loop_cfg, round_: int) -> bool:
    """Whether loop.freeze_reward_after has stopped retraining the reward model by this round."""
    return loop_cfg.freeze_reward_after is not None and round_ > loop_cfg.freeze_reward_after


def train_reward(sim, round_: int, frozen: bool) -> dict:
    """Phase 5: train the Proxy's reward-model members on the buffer (loop.reward_source learned, unless frozen;
    reward.init fresh re-draws them first) and keep the round's model for reward.across_rounds; the training stats."""
    cfg = sim.cfg
    if cfg.loop.reward_source != "learned":
        return {}
    stats = {}
    if not frozen:
        if cfg.reward.init == "fresh":
            sim.proxy.rms.reinit(cfg.seed * FRESH_RM_SEED + round_)
        stats = reward_build.train_reward_models(
            sim.proxy.rms, sim.buffer.training_groups(), cfg, sim.world.prompt_types, sim.rng["reward"], sim.parallel
        )
    sim.proxy.add_round(round_)  # reward.across_rounds keeps every round's model (no-op for last)
    return stats


# ------------------------------------------------------------------ fitting the proxy (values only; the loop sets them)


def calibrate_noise(sim) -> tuple[float, dict]:
    """(sigma, round-0 proxy/noisy_gold_* metrics) of the noisy_gold source on the fixed probe set (the SFT policy's
    round-0 held-out samples, redrawn identically on resume, so a resumed run gets the same sigma)."""
    ev = sim.probe_set()
    N = sim.cfg.loop.noisy_gold
    return calibrate_noisy_gold(sim.proxy, ev.flat_prompts(), ev.texts, ev.gold, N.rho, N.draws)


def fit_member_scale(sim):
    """This round's per-member (mu, sd) for wco/uwo (reward.standardise_members) on the fixed probe set, or None."""
    ev = sim.probe_set()
    return sim.proxy.fit_member_scale(ev.flat_prompts(), ev.texts)


def fit_recalibration(sim, round_: int) -> dict | None:
    """This round's affine map of the proxy, fitted on fresh prompts (reference samples or gold-labelled policy
    samples); None when recalibration is off or the source is gold."""
    R = sim.cfg.recalibration
    if R.method == "none" or sim.cfg.loop.reward_source == "gold":
        return None
    prompts = sim.world.sample_prompts(R.prompts, np.random.default_rng([sim.cfg.seed, RECAL_SEED, round_]))
    ev = sim.evaluate(prompts, 1, round_, "recalibrate", policy=sim.ref if R.method == "reference" else None)
    proxy, types = sim.proxy.values(ev.flat_prompts(), ev.texts)[0], ev.types
    if R.method == "reference":
        return recalibrate.standardise_params(proxy, types, R.per_type)
    return recalibrate.gold_fit_params(proxy, ev.gold.ravel(), types, R.per_type, R.min_slope)


# ------------------------------------------------------------------ phase 6: diagnostics (read-only)


def diagnosis_samples(sim, round_: int) -> EvalSamples:
    """Phase 6's held-out samples: fresh ones on the round's diagnose stream, or (loop.diagnose_on_eval) the latest
    phase-8 (or round-0) samples."""
    L = sim.cfg.loop
    return (
        sim.last_eval if L.diagnose_on_eval else sim.evaluate(sim.eval_prompts, L.eval_completions, round_, "diagnose")
    )


def diagnose_proxy(sim, ev: EvalSamples, round_: int) -> dict:
    """Phase 6: the proxy's source on held-out samples `ev`, then (as configured) on the groups it trained on and as
    a best-of-n optimiser."""
    L = sim.cfg.loop
    out = diagnose_reward_model(sim, ev)
    if L.diagnose_train and L.reward_source == "learned":
        out.update(diagnose_training_groups(sim, round_))
    if L.bon_n > 1:
        out.update(best_of_n_metrics(sim, round_))
    return out


def audit_alarms(sim, row: dict) -> dict:
    """Phase 6b's alarms on the round's row so far, against the baseline of round 1's row (this row in round 1)."""
    baseline = next((x for x in sim.run.metrics() if x["round"] == 1), row)
    return audit.alarms(row, baseline, sim.cfg.audit, list(sim.shift_prompts))


def diagnose_reward_model(sim, ev) -> dict:
    """Agreement with gold and collapse metrics of the proxy's source (the reward model; for noisy_gold the noisy
    proxy itself) on held-out samples; with several members also their disagreement and how well it predicts the
    proxy's error."""
    P = sim.proxy
    members = P.diagnostic_logits(ev.flat_prompts(), ev.texts)  # [M, P*k]
    logits = members.mean(0).reshape(ev.gold.shape)
    bounded = P.diagnostic_bounded
    out = diag.collapse.collapse_metrics(
        logits, ev.types, bounded=bounded, gold=ev.gold, theory=sim.theory if bounded else None
    )
    out["rm/within_prompt_spearman"] = diag.advantage.within_prompt_rank_corr(logits, ev.gold)
    types = np.asarray(ev.types)  # [P], one type per prompt row of logits
    for t in dict.fromkeys(ev.types):  # per type: closed prompts are where a weak ranking hides
        out[f"rm/{t}_within_prompt_spearman"] = diag.advantage.within_prompt_rank_corr(
            logits[types == t], ev.gold[types == t]
        )
    out.update(probe_collapse(sim))
    if members.shape[0] > 1:
        out.update(
            ensemble_diagnostics(
                members,
                ev.gold.ravel(),
                [p.type for p in ev.flat_prompts()],
                bounded,
                sim.cfg.reward.aggregation,
                sim.cfg.reward.uwo_lambda,
                P.member_scale,
            )
        )
    return out


def probe_collapse(sim) -> dict:
    """collapse/probe_*: the collapse measure on a FIXED probe set (the SFT policy's completions of the eval prompts,
    the round-0 samples), so it moves only when the proxy does, not when the policy's samples change."""
    ev = sim.probe_set()
    logits = sim.proxy.diagnostic_scores(ev.flat_prompts(), ev.texts).reshape(ev.gold.shape)
    reward = diag.collapse.to_unit_interval(logits, True) if sim.proxy.diagnostic_bounded else logits
    return diag.collapse.profile_collapse(reward, ev.gold, ev.types, prefix="collapse/probe_")


def audit_reward_model(sim, round_: int) -> dict:
    """Exploit rates of the stress suite (the aggregated proxy as trained) and gold agreement on the shifted sets."""
    if sim.suite is None:
        return {}
    out = audit.stress_metrics(sim.suite, lambda p, t: sim.proxy.values(p, t)[0], sim.cfg.audit.exploit_threshold)
    for i, (name, prompts) in enumerate(sim.shift_prompts.items()):
        ev = sim.evaluate(prompts, sim.cfg.loop.eval_completions, round_, "shift", offset=i)
        logits = sim.proxy.diagnostic_scores(ev.flat_prompts(), ev.texts).reshape(ev.gold.shape)
        out.update(audit.shift_metrics(name, logits, ev.gold))
    return out


def diagnose_training_groups(sim, round_: int) -> dict:
    """Collapse metrics of the reward model on the groups it trained on (the terminal phase); writes rewards/train_round_XXX.parquet."""
    groups = sim.buffer.training_groups()
    if not groups:
        return {}
    gm = diag.train_profiles.group_matrices(groups)
    logits = sim.proxy.rms.logits([p.text for p in gm.prompts], gm.texts).mean(0)
    out, table = diag.train_profiles.train_diagnostics(gm, logits, sim.proxy.rms.bounded, sim.theory)
    sim.run.write_rewards(round_, table, stem="train_round")
    return out


def best_of_n_metrics(sim, round_: int) -> dict:
    """Best-of-n as a second optimiser on the same policy and proxy: gold/proxy for n = 1, 2, 4, ..., N."""
    L = sim.cfg.loop
    ev = sim.evaluate(sim.eval_prompts[: L.bon_prompts], L.bon_n, round_, "best_of_n")
    proxy = sim.proxy.values(ev.flat_prompts(), ev.texts)[0].reshape(ev.gold.shape)
    ns = sorted({1 << i for i in range(L.bon_n.bit_length()) if (1 << i) <= L.bon_n} | {L.bon_n})
    curve = diag.overopt.best_of_n_curve(proxy, ev.gold, ns)
    out = {}
    for row in curve.itertuples():
        out[f"bon/gold_n{row.n}"] = row.gold
        out[f"bon/proxy_n{row.n}"] = row.proxy
    return out


# ------------------------------------------------------------------ issue 36: inside a round, and the proxy-gold gap


def inner_eval(sim, round_: int, iteration: int) -> dict:
    """One inner_eval.jsonl row: held-out gold, proxy (before recalibration and surgery, as eval/proxy) and KL from
    the SFT policy, means over loop.inner_eval's subset; one eval stream per round, so a round's rows are paired."""
    ie = sim.cfg.loop.inner_eval
    ev = sim.evaluate(sim.eval_prompts[: ie.prompts], ie.completions, round_, "inner")
    proxy = sim.proxy.values(ev.flat_prompts(), ev.texts)[0]
    return {
        "round": round_,
        "iteration": iteration,
        "gold": float(ev.gold.mean()),
        "proxy": float(np.mean(proxy)),
        "kl": float(ev.kl.mean()),
    }


def proxy_gold_metrics(sim, ev, proxy: np.ndarray) -> dict:
    """eval/proxy_gold_gap (against the SFT probe set under this round's proxy) and eval/proxy_gold_w1 of the
    round's held-out samples: ev.gold, proxy [P, k]."""
    probe = sim.probe_set()
    ref_proxy = sim.proxy.values(probe.flat_prompts(), probe.texts)[0]
    return {
        "eval/proxy_gold_gap": diag.overopt.proxy_gold_gap(proxy, ev.gold, ref_proxy, probe.gold),
        "eval/proxy_gold_w1": diag.overopt.standardised_w1(proxy, ev.gold),
    }


# ------------------------------------------------------------------ phases 7-9: the policy, its evaluation, the record


def optimise_policy(sim, guard, round_: int, steps: list[dict]) -> list[dict]:
    """Phase 7 (loop.train_policy): the round's start (loop.policy_start) and KL anchor (loop.kl_anchor), then up to
    optimizer.iterations iterations against the Proxy's score, each guarded and appended to `steps` as it completes
    (so a divergence logs the iterations up to it); loop.round_kl may end the round early. The inner_eval.jsonl rows
    (loop.inner_eval) are returned."""
    L, oc = sim.cfg.loop, sim.cfg.optimizer
    every = L.inner_eval.every
    inner: list[dict] = []  # gold, proxy, KL from SFT every `every` iterations
    sim.start.apply(sim.opt, round_)  # 7a the round's start: continue, SFT, or interpolate
    sim.anchor.reset(sim.policy)  # 7b the KL anchor: SFT, or this start
    if every:  # the round's start point: its curve then spans the whole round (KL 0 after an SFT start)
        inner.append(inner_eval(sim, round_, 0))
    for it in range(oc.iterations):
        prompts = sim.world.sample_prompts(oc.batch_size // oc.group_size, sim.rng["prompts"])
        batch = [p for p in prompts for _ in range(oc.group_size)]  # prompt-major rows
        stats = sim.opt.iteration(batch, sim.proxy.score, sim.world.gold, sim.gen)
        steps.append({"round": round_, "iteration": it, **stats})
        guard.check("policy", round_, stats)
        over_kl = L.round_kl is not None and stats["objective/kl"] >= L.round_kl  # the round's KL budget
        if every and ((it + 1) % every == 0 or it + 1 == oc.iterations or over_kl):
            inner.append(inner_eval(sim, round_, it + 1))
        if over_kl:
            break
    return inner


def policy_step_metrics(steps: list[dict], loop_cfg) -> dict:
    """The round's row entries of phase 7: the iterations' mean stats, and policy/iterations under loop.round_kl
    (fewer than optimizer.iterations when the KL budget stopped the round)."""
    out = mean_steps(steps)
    if loop_cfg.train_policy and loop_cfg.round_kl is not None:
        out["policy/iterations"] = len(steps)
    return out


class PolicyEval(NamedTuple):
    """Phase 8's result: held-out samples of the updated policy, their proxy values and the round's metrics."""

    samples: EvalSamples
    proxy: np.ndarray  # [P, k] aggregated proxy (before recalibration and surgery)
    members: np.ndarray  # [M, P*k] member values
    metrics: dict


def evaluate_policy(sim, round_: int, prev_policy) -> PolicyEval:
    """Phase 8: the updated policy on the fixed held-out prompts (`prev_policy`: the policy before phase 7, to measure
    how far the round moved it), with paired covariances against earlier rounds' rewards tables."""
    L = sim.cfg.loop
    ev = sim.evaluate(sim.eval_prompts, L.eval_completions, round_, "evaluate", prev=prev_policy)
    flat, members = sim.proxy.values(ev.flat_prompts(), ev.texts)
    proxy = flat.reshape(ev.gold.shape)
    metrics = policy_metrics(ev, proxy, sim.run.path / "rewards", round_)
    if L.proxy_gold_gap:
        metrics.update(proxy_gold_metrics(sim, ev, proxy))
    return PolicyEval(ev, proxy, members, metrics)


def record_round(sim, round_: int, row: dict, steps: list[dict], inner: list[dict], evaluation: PolicyEval) -> None:
    """Phase 9: the round's rewards and samples tables, its optimiser steps, inner evaluations and row, then the
    checkpoint (output.checkpoints) a resume continues from."""
    run, cfg = sim.run, sim.cfg
    run.write_rewards(round_, rewards_table(evaluation.samples, evaluation.members, evaluation.proxy, round_))
    run.write_samples(round_, sample_rows(evaluation.samples, evaluation.proxy, cfg.output.n_samples))
    run.log_steps(steps)
    run.log_inner(inner)
    run.log_round(row)
    if cfg.output.checkpoints:
        run.save_checkpoint(round_, *sim.state(round_))
