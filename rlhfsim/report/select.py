"""Which figures a study's runs can support: a figure whose inputs are degenerate is left out, with the reason.

skip_reasons(study)  # {figure id: one-line reason}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlhfsim.experiment.design import level_of

# figures about the policy's training (meaningless when PPO never ran)
POLICY_FIGURES = (
    "fig1_gold_proxy_kl",
    "fig2_by_prompt_type",
    "fig3_gold_vs_sqrt_kl",
    "fig7_advantage_fidelity",
    "fig8_best_of_n",
    "fig9_proxy_and_gold_vs_sqrt_kl",
    "fig10_learning_signal",
)
# curves over rounds (a single point per panel with one feedback round)
ROUND_FIGURES = (
    "fig1_gold_proxy_kl",
    "fig2_by_prompt_type",
    "fig6_collapse",
    "fig7_advantage_fidelity",
    "fig10_learning_signal",
    "fig11_audits",
    "fig13_reward_training",
)
KL_EPS = 1e-6  # nats: below this the policy has not moved from the SFT reference


def policy_trained(study) -> tuple[bool, str]:
    """(trained?, why not). Not trained when every config says loop.train_policy: false, or no run's KL left ~0."""
    cfgs = [r.config for r in study.runs if r.config is not None]
    if cfgs and all((c.get("loop") or {}).get("train_policy") is False for c in cfgs):
        return False, "the policy was not trained (loop.train_policy: false): reward-model training alone"
    m = study.metrics
    if "eval/kl" in m:
        kl = pd.to_numeric(m["eval/kl"], errors="coerce").abs()
        if kl.notna().any() and float(kl.max()) < KL_EPS:
            return False, f"the policy never moved from the SFT reference (max KL {float(kl.max()):.1e} nats)"
    return True, ""


def feedback_rounds(study) -> int:
    """Largest number of rounds after round 0 that any run logged."""
    n = [r.rounds_logged for r in study.runs if r.rounds_logged is not None]
    return int(max(n)) if n else 0


def skip_reasons(study) -> dict[str, str]:
    out: dict[str, str] = {}
    if len(study.variants) < 2:
        out["effect_sizes"] = "one variant: there is no baseline to compare with"
    trained, why = policy_trained(study)
    if not trained:
        out.update({k: why for k in POLICY_FIGURES})
    if "fig1_gold_proxy_kl" not in out and all(constant_across_variants(study, c) for c in ("eval/gold", "eval/kl")):
        out["fig1_gold_proxy_kl"] = (
            "gold and KL are identical in every variant at every round: one line under the others"
        )
    n = feedback_rounds(study)
    if n < 2:
        out.update(
            {
                k: out.get(k) or f"{n} feedback round(s): a curve over rounds would be a single point per panel"
                for k in ROUND_FIGURES
            }
        )
    return out


def constant_across_variants(study, column: str, tol: float = 1e-9) -> bool:
    """Is `column` the same in every variant at every round (so colours would only stack on one line)?"""
    m = study.metrics
    if column not in m or len(study.variants) < 2:
        return False
    d = m[["variant", "round", column]].copy()
    d[column] = pd.to_numeric(d[column], errors="coerce")
    spread = d.groupby("round")[column].agg(lambda x: np.nanmax(x) - np.nanmin(x) if x.notna().any() else 0.0)
    return bool((spread.abs() <= tol).all())


def audits_on(run) -> bool:
    """Did the run audit its reward model (audit.enabled)? A config without the field (older runs) counts as on."""
    return bool(((run.config or {}).get("audit") or {}).get("enabled", True))


def gold_source_variants(study) -> set[str]:
    """Variants whose runs optimise gold itself (loop.reward_source: gold): their proxy and reward-model columns
    describe a reward model the optimiser never used, so no proxy figure draws them."""
    by: dict[str, set] = {}
    for r in getattr(study, "runs", None) or []:
        if r.config is not None:
            by.setdefault(r.variant, set()).add((r.config.get("loop") or {}).get("reward_source"))
    return {v for v, srcs in by.items() if srcs == {"gold"}}


PROXY_PREFIXES = ("eval/proxy", "rm/", "collapse/", "reward/")  # columns about the proxy / reward model, not gold


MAX_COLOURS = 5  # non-baseline variants per panel; more are split over rows of panels


def factor_value(study, variant: str, spec):
    """A variant's level of a design factor: a dotted config key's value in its runs' config, or for a label factor
    ({levels, keys}, experiment.LabelFactor) the level its name starts with."""
    if isinstance(spec, dict):
        return level_of(list(spec.get("levels") or []), variant)
    return _factor_value(study, variant, spec)


def _factor_value(study, variant: str, key: str):
    if isinstance(key, dict):
        return factor_value(study, variant, key)
    for r in study.runs:
        if r.variant == variant and r.config is not None:
            node = r.config
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            return node
    return None


def config_values(study, key: str) -> set:
    """The values the dotted config `key` takes over the study's runs (as strings; "None" where unset), so a caption
    mentions a setting only when the study has it, e.g. config_values(study, "reward.prompt_aware") == {"False"}."""
    out = set()
    for r in study.runs:
        node = r.config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out.add(str(node))
    return out


def variant_groups(study, max_colours: int = MAX_COLOURS) -> list[tuple[str, list[str]]]:
    """[(row label, variants)]: the baseline plus at most max_colours others per row of panels.

    With design factors (experiment `factors`), the variants are grouped by all factors but one, the colour factor,
    chosen to need the fewest rows (ties: the grouping that names more factors), e.g. ensembles' size x kind x
    aggregation gives one row per (size, kind) with the aggregations as colours. Groups larger than max_colours, or
    variants without factors, are split in study order."""
    others = [v for v in study.variants if v != study.baseline]
    if len(others) <= max_colours:
        return [("", list(study.variants))]
    parts = _factor_parts(study, others, max_colours)[0] or [("", others)]
    out = []
    for label, vs in parts:
        for i in range(0, len(vs), max_colours):
            out.append((label, [study.baseline, *vs[i : i + max_colours]]))
    return out


def colour_keys(study, max_colours: int = MAX_COLOURS) -> dict[str, str] | None:
    """{variant: colour key} when the variants are faceted with a colour factor (e.g. {"m3_wco": "aggregation = wco"}),
    so one colour means one level of that factor on the whole page; None otherwise (a colour per variant)."""
    others = [v for v in study.variants if v != study.baseline]
    if len(others) <= max_colours:
        return None
    _, colour = _factor_parts(study, others, max_colours)
    if colour is None:
        return None
    key = dict(study.factors)[colour]
    return {v: f"{colour} = {_factor_value(study, v, key)}" for v in others}


def _factor_parts(study, others: list[str], max_colours: int) -> tuple[list[tuple[str, list[str]]], str | None]:
    """(groups, the colour factor or None) of the grouping that needs the fewest rows."""
    factors = list((getattr(study, "factors", None) or {}).items())
    if not factors:
        return [], None
    values = {v: {name: _factor_value(study, v, key) for name, key in factors} for v in others}
    best, best_score, best_colour = [], None, None
    # candidate groupings: by every factor, or by all factors but one (that one then tells the colours apart)
    candidates = [(None, [n for n, _ in factors])] + [(c, [n for n, _ in factors if n != c]) for c, _ in factors]
    for colour, names in candidates:
        by: dict[str, list[str]] = {}
        for v in others:
            by.setdefault(", ".join(f"{n} = {values[v][n]}" for n in names), []).append(v)
        rows = sum(-(-len(vs) // max_colours) for vs in by.values())
        score = (rows, -len(names))
        if best_score is None or score < best_score:
            best, best_score, best_colour = list(by.items()), score, colour
    return best, best_colour
