"""The round loop's phase helpers (rlhfsim/loop.py reads as the numbered phases and calls these).

Diagnostics here return values and never change what trains: the proxy's state (member scale, recalibration,
noise sigma) is fitted by the `fit_*` / `calibrate_*` helpers, which also only return values; the loop hands them
to the Proxy's setters, so every change of the optimiser's reward is one visible line of loop.py.
"""

from __future__ import annotations

import numpy as np

from rlhfsim import diagnostics as diag
from rlhfsim.diagnostics import audit
from rlhfsim.reward import recalibrate
from rlhfsim.reward.buffer import Group, annotate_group
from rlhfsim.reward.ensemble import ensemble_diagnostics
from rlhfsim.reward.proxy import calibrate_noisy_gold

RECAL_SEED = 104_729  # recalibration prompts: default_rng([seed, RECAL_SEED, round])


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
        groups.append(annotate_group(sim.world, sim.annotator, p, texts[i * k : (i + 1) * k], gold[i], with_ref,
                                     sim.rng["annotate"], sim.cfg.seed, round_))
    return groups


def annotation_stats(groups: list[Group]) -> dict:
    pairs = [g.n_pairs for g in groups]
    return {"annot/pairs": int(sum(pairs)), "annot/groups_without_pairs": float(np.mean([n == 0 for n in pairs]))}


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


# ------------------------------------------------------------------ diagnostics (read-only)

def diagnose_reward_model(sim, ev) -> dict:
    """Agreement with gold and collapse metrics of the proxy's source (the reward model; for noisy_gold the noisy
    proxy itself) on held-out samples; with several members also their disagreement and how well it predicts the
    proxy's error."""
    P = sim.proxy
    members = P.diagnostic_logits(ev.flat_prompts(), ev.texts)  # [M, P*k]
    logits = members.mean(0).reshape(ev.gold.shape)
    bounded = P.diagnostic_bounded
    out = diag.collapse.collapse_metrics(logits, ev.types, bounded=bounded, gold=ev.gold, theory=sim.theory if bounded else None)
    out["rm/within_prompt_spearman"] = diag.advantage.within_prompt_rank_corr(logits, ev.gold)
    types = np.asarray(ev.types)  # [P], one type per prompt row of logits
    for t in dict.fromkeys(ev.types):  # per type: closed prompts are where a weak ranking hides
        out[f"rm/{t}_within_prompt_spearman"] = diag.advantage.within_prompt_rank_corr(logits[types == t], ev.gold[types == t])
    out.update(probe_collapse(sim))
    if members.shape[0] > 1:
        out.update(ensemble_diagnostics(members, ev.gold.ravel(), [p.type for p in ev.flat_prompts()], bounded,
                                        sim.cfg.reward.aggregation, sim.cfg.reward.uwo_lambda, P.member_scale))
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
    return {"round": round_, "iteration": iteration, "gold": float(ev.gold.mean()), "proxy": float(np.mean(proxy)),
            "kl": float(ev.kl.mean())}


def proxy_gold_metrics(sim, ev, proxy: np.ndarray) -> dict:
    """eval/proxy_gold_gap (against the SFT probe set under this round's proxy) and eval/proxy_gold_w1 of the
    round's held-out samples: ev.gold, proxy [P, k]."""
    probe = sim.probe_set()
    ref_proxy = sim.proxy.values(probe.flat_prompts(), probe.texts)[0]
    return {"eval/proxy_gold_gap": diag.overopt.proxy_gold_gap(proxy, ev.gold, ref_proxy, probe.gold),
            "eval/proxy_gold_w1": diag.overopt.standardised_w1(proxy, ev.gold)}
