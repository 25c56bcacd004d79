"""Which figures a study's runs can support: a figure whose inputs are degenerate is left out, with the reason.

    skip_reasons(study)  # {figure id: one-line reason}
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# figures about the policy's training (meaningless when PPO never ran)
POLICY_FIGURES = ("fig1_gold_proxy_kl", "fig2_by_prompt_type", "fig3_gold_vs_sqrt_kl", "fig7_advantage_fidelity",
                  "fig8_best_of_n", "fig9_proxy_and_gold_vs_sqrt_kl", "fig10_learning_signal")
# curves over rounds (a single point per panel with one feedback round)
ROUND_FIGURES = ("fig1_gold_proxy_kl", "fig2_by_prompt_type", "fig6_collapse", "fig7_advantage_fidelity",
                 "fig10_learning_signal", "fig11_audits", "fig13_reward_training")
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
        out["fig1_gold_proxy_kl"] = "gold and KL are identical in every variant at every round: one line under the others"
    n = feedback_rounds(study)
    if n < 2:
        out.update({k: out.get(k) or f"{n} feedback round(s): a curve over rounds would be a single point per panel" for k in ROUND_FIGURES})
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


MAX_COLOURS = 5  # non-baseline variants per panel; more are split over rows of panels


def _factor_value(study, variant: str, key: str):
    for r in study.runs:
        if r.variant == variant and r.config is not None:
            node = r.config
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            return node
    return None


def variant_groups(study, max_colours: int = MAX_COLOURS) -> list[tuple[str, list[str]]]:
    """[(row label, variants)]: the baseline plus at most max_colours others per row, split by the experiment's first
    design factor where it has one (e.g. one row per aggregation), else in study order."""
    others = [v for v in study.variants if v != study.baseline]
    if len(others) <= max_colours:
        return [("", list(study.variants))]
    parts: list[tuple[str, list[str]]] = []
    factor = next(iter(study.factors.items()), None) if getattr(study, "factors", None) else None
    if factor is not None:
        by: dict[str, list[str]] = {}
        for v in others:
            by.setdefault(f"{factor[0]} = {_factor_value(study, v, factor[1])}", []).append(v)
        parts = list(by.items()) if len(by) > 1 else []
    if not parts:
        parts = [("", others)]
    out = []
    for label, vs in parts:
        for i in range(0, len(vs), max_colours):
            out.append((label, [study.baseline, *vs[i:i + max_colours]]))
    return out
