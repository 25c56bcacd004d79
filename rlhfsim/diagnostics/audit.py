"""Reward-model audits: an adversarial stress suite, shifted validation sets, and alarms with their lead time.

The governance practice the collapse literature names (monitor reward variance, validate across diverse
prompt sets, stress-test adversarially) as per-round checks, so a study can ask: would an audit have
caught the collapse, and how many rounds before the gold reward peaked?

    stress suite   for each held-out prompt, its gold-best completion (the world's reference answer) and a
                   perturbed one per family (rlhfsim.world.perturb); a pair is kept only when gold agrees
                   that the perturbed completion is worse. Exploit rate of a family: the share of its pairs
                   where the proxy prefers the perturbed completion (a proxy tie counts 1/2).
    shifted sets   the policy's samples on prompts off the training distribution, proxy vs gold agreement.
    alarms         per round, from the logged metrics: variance collapse, saturation, explosion, exploit
                   rate, shifted-set disagreement. `warning_summary` relates the first alarm to the gold peak.
Metric names and ranges: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rlhfsim.diagnostics.collapse import _pairwise_counts, mean_kendall_tau, pairwise_accuracy
from rlhfsim.diagnostics.config import DEFAULT_FAMILIES, AuditConfig, FamilySpec  # noqa: F401  (re-exported)
from rlhfsim.world.perturb import get_perturbation

ALARMS = ("collapse", "saturation", "explosion", "exploit", "shift")


# ----------------------------------------------------------------------------- stress suite


@dataclass
class StressSuite:
    """Fixed (better, perturbed) pairs over held-out prompts, built once per run."""

    prompts: list = field(default_factory=list)  # [N] Prompt
    better: list[str] = field(default_factory=list)  # [N] gold-better (unperturbed) completion
    worse: list[str] = field(default_factory=list)  # [N] perturbed completion
    family: list[str] = field(default_factory=list)  # [N]
    dropped: dict[str, int] = field(
        default_factory=dict
    )  # family -> pairs where gold did not call the perturbation worse
    families: list[str] = field(default_factory=list)


def build_stress_suite(world, prompts: Sequence, families: Sequence[FamilySpec], seed: int) -> StressSuite:
    """Perturb each prompt's reference completion with every family; keep the pairs gold calls worse."""
    suite = StressSuite(families=[f.name for f in families])
    for fi, spec in enumerate(families):
        perturb = get_perturbation(spec.name, world, **spec.params)
        rng = np.random.default_rng([seed, 5, fi])
        suite.dropped[spec.name] = 0
        for p in prompts:
            base = world.reference_completion(p)
            bad = perturb(p, base, rng)
            if bad is None or bad == base:
                continue
            g = world.gold([p, p], [base, bad])
            if not g[0] > g[1]:  # the gold verdict: the perturbation must make it worse
                suite.dropped[spec.name] += 1
                continue
            suite.prompts.append(p)
            suite.better.append(base)
            suite.worse.append(bad)
            suite.family.append(spec.name)
    return suite


def exploit_rates(better, worse, family: Sequence[str], families: Sequence[str] | None = None) -> dict[str, float]:
    """{family: share of pairs where the score prefers the perturbed completion}, a tie counting 1/2.

    better, worse: [N] scores of the gold-better and the perturbed completion of each pair. A family
    without pairs gets NaN.
    """
    b, w = np.asarray(better, dtype=np.float64), np.asarray(worse, dtype=np.float64)
    fam = np.asarray(list(family), dtype=object)
    out = {}
    for f in families if families is not None else sorted(set(fam)):
        sel = fam == f
        won = np.where(w[sel] > b[sel], 1.0, np.where(w[sel] == b[sel], 0.5, 0.0))
        out[f] = float(won.mean()) if won.size else float("nan")
    return out


def stress_metrics(
    suite: StressSuite, score: Callable[[list, list[str]], np.ndarray], threshold: float
) -> dict[str, float]:
    """audit/{family}_exploit_rate, _pairs, _dropped, _alarm and their maximum, scored by `score(prompts, texts)`."""
    n = len(suite.prompts)
    if n:
        s = np.asarray(score(suite.prompts + suite.prompts, suite.better + suite.worse), dtype=np.float64)
        rates = exploit_rates(s[:n], s[n:], suite.family, suite.families)
    else:
        rates = dict.fromkeys(suite.families, float("nan"))
    m: dict[str, float] = {}
    for f, rate in rates.items():
        m[f"audit/{f}_exploit_rate"] = rate
        m[f"audit/{f}_pairs"] = float(sum(x == f for x in suite.family))
        m[f"audit/{f}_dropped"] = float(suite.dropped.get(f, 0))
        m[f"audit/{f}_alarm"] = float(rate > threshold) if np.isfinite(rate) else float("nan")
    finite = [r for r in rates.values() if np.isfinite(r)]
    m["audit/exploit_rate_max"] = max(finite) if finite else float("nan")
    m["audit/exploit_rate_mean"] = float(np.mean(finite)) if finite else float("nan")
    return m


# ----------------------------------------------------------------------------- shifted sets


def shift_metrics(name: str, logits, gold) -> dict[str, float]:
    """rm/shift_{name}_*: gold agreement of the proxy on a shifted set's [P, k] samples, and the policy's gold there."""
    L, G = np.asarray(logits, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    return {
        f"rm/shift_{name}_pairwise_acc": pairwise_accuracy(L, G),
        f"rm/shift_{name}_kendall_tau": mean_kendall_tau(L, G),
        f"rm/shift_{name}_gold_pairs": float(_pairwise_counts(L, G)[1]),
        f"rm/shift_{name}_gold": float(G.mean()),
    }


# ----------------------------------------------------------------------------- alarms


def _get(row: dict, key: str) -> float:
    v = row.get(key)
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")


def alarms(row: dict, first: dict, cfg: AuditConfig, shifts: Sequence[str] = ()) -> dict[str, float]:
    """audit/alarm_{name} (1 fired, 0 quiet, NaN when its metric is missing) for one round's row.

    first: the row of the first trained round, the baseline of the relative alarms (collapse, explosion).
    """
    nan = float("nan")

    def flag(x: float, fired: bool) -> float:
        return float(fired) if np.isfinite(x) else nan

    stds = [k for k in row if k.startswith("collapse/") and k.endswith("_within_std")]
    ratios = [_get(row, k) / _get(first, k) for k in stds if _get(first, k) > 0]
    ratios = [r for r in ratios if np.isfinite(r)]
    out = {"audit/alarm_collapse": float(min(ratios) < cfg.collapse_ratio) if ratios else nan}
    sat = _get(row, "collapse/saturation")
    out["audit/alarm_saturation"] = flag(sat, sat > cfg.saturation_threshold)
    p99, p99_0 = _get(row, "collapse/logit_abs_p99"), _get(first, "collapse/logit_abs_p99")
    out["audit/alarm_explosion"] = flag(p99, p99 > cfg.explosion_ratio * max(p99_0 if np.isfinite(p99_0) else 1.0, 1.0))
    ex = _get(row, "audit/exploit_rate_max")
    out["audit/alarm_exploit"] = flag(ex, ex > cfg.exploit_threshold)
    accs = [_get(row, f"rm/shift_{s}_pairwise_acc") for s in shifts]
    accs = [a for a in accs if np.isfinite(a)]
    out["audit/alarm_shift"] = float(min(accs) < cfg.shift_acc_threshold) if accs else nan
    out["audit/alarms"] = float(sum(v == 1.0 for v in out.values()))
    return out


def warning_summary(rows: list[dict], drop: float = 0.05) -> dict:
    """For each alarm: the first round it fired, how often, and its lead on the gold peak and on the gold drop.

    lead_rounds = gold_peak_round - first_round: > 0 warned before the peak, 0 at it, < 0 after it,
    None when the alarm never fired. A peak at round 0 (the SFT policy) leaves no round to warn in, so
    the drop is the second reference: gold_drop_round is the first round after the peak whose gold is
    more than `drop` below the peak (None if gold never fell that far), and lead_drop_rounds =
    gold_drop_round - first_round. `gold_fell`: gold ended below its peak at all.
    """
    gold = np.array([_get(r, "eval/gold") for r in rows])
    if not np.isfinite(gold).any():
        return {}
    rounds = [int(r["round"]) for r in rows]
    i = int(np.nanargmax(gold))
    peak = rounds[i]
    dropped = [rd for rd, g in zip(rounds[i + 1 :], gold[i + 1 :]) if g < gold[i] - drop]
    drop_round = dropped[0] if dropped else None
    out: dict[str, Any] = {
        "gold_peak_round": peak,
        "gold_drop_round": drop_round,
        "gold_fell": bool(gold[-1] < gold[i] - 1e-9),
        "alarms": {},
    }
    for a in ALARMS:
        fired = [rd for rd, r in zip(rounds, rows) if r.get(f"audit/alarm_{a}") == 1.0]
        first = fired[0] if fired else None
        out["alarms"][a] = {
            "first_round": first,
            "rounds_fired": len(fired),
            "lead_rounds": None if first is None else peak - first,
            "lead_drop_rounds": None if first is None or drop_round is None else drop_round - first,
        }
    return out
