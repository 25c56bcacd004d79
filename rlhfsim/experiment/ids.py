"""Figure ids a report can draw (an experiment's `headline` names some of them) and the summary columns an
experiment's `primary` / `secondary` endpoints may name. Light on imports: the sweep validates against them."""

from __future__ import annotations

import functools

FIGURE_IDS = (
    "effect_sizes", "fig1_gold_proxy_kl", "fig2_by_prompt_type", "fig3_gold_vs_sqrt_kl", "fig4_reward_distributions",
    "fig5_sorted_profiles", "fig6_collapse", "fig7_advantage_fidelity", "fig8_best_of_n", "fig9_proxy_and_gold_vs_sqrt_kl",
    "fig10_learning_signal", "fig11_audits", "fig12_terminal_profiles", "fig13_reward_training",
    "dose_response",  # studies with a dose factor (report/dose.py, fig_dose.py), e.g. experiments/propagation.yaml
    "phase_diagram",  # source x dose x optimiser studies that list it: dial effect against measured ranking quality (report/phase.py)
    "calibration",  # studies that list it as a headline: ranking quality vs gain share (report/calibration.py), experiments/rm_quality.yaml
    # runs with inner_eval.jsonl (issue 36, experiments/iterated_rlhf.yaml; report/iterated.py, fig_iterated.py): gold against
    # KL inside each round per arm, and the proxy-gold gap by round
    "iterated_frontiers", "iterated_gap",
)
# columns of summary.csv that are not summary.json fields; final/<metric> and mean/<metric> depend on what was logged
OPEN_PREFIXES = ("final/", "mean/")


# The direction docs/metrics.md documents ("Endpoint directions") for endpoints that have one by definition; an
# experiment declaring the other is refused at load, since a sign error turns every verdict round. Endpoints whose
# better direction is the study's choice (KL, peak or stagnation rounds, Gao parameters, audit leads) are not listed.
BETTER = {
    "gold_gain": "higher", "gold_gain_late": "higher", "gold_final": "higher", "gold_peak": "higher", "gold_open_final": "higher",
    "accuracy_closed_final": "higher", "gold_drop_after_peak": "higher",  # final - peak <= 0: closer to 0 is better
    "rm_pairwise_acc_final": "higher", "collapse_shape_rel_final": "lower", "collapse_probe_shape_rel_final": "lower",
}
# the same for the metrics under final/ and mean/ (adv/*: agreement of the applied advantages with gold's)
METRIC_BETTER = {
    "eval/gold": "higher", "eval/accuracy_closed": "higher", "rm/pairwise_acc": "higher", "rm/heldout_acc": "higher",
    "collapse/shape_rel": "lower", "collapse/probe_shape_rel": "lower", "adv/gold_corr": "higher",
    "adv/gold_corr_seq": "higher", "adv/sign_agree": "higher", "adv/sign_agree_seq": "higher", "adv/pair_agree": "higher",
    "adv/pg_cos": "higher", "adv/gold_corr_score": "higher", "adv/sign_agree_score": "higher",
}


# endpoints whose better direction is "closer to a target": shape_rel is 0 when the model's profiles are as
# prompt-dependent as gold's, 1 when collapsed, and < 0 when more spread than gold (not "less collapsed"); a paired
# test of such an endpoint runs on the per-seed distance |value - target| (report/stats.py compare).
TARGET = {"collapse_shape_rel_final": 0.0, "collapse_probe_shape_rel_final": 0.0}
METRIC_TARGET = {"collapse/shape_rel": 0.0, "collapse/probe_shape_rel": 0.0}


def documented_target(name: str) -> float | None:
    """The target value of an endpoint whose better direction is "closer to the target", else None."""
    if name in TARGET:
        return TARGET[name]
    for prefix in OPEN_PREFIXES:
        if name.startswith(prefix):
            return METRIC_TARGET.get(name[len(prefix):])
    return None


def documented_better(name: str) -> str | None:
    """'higher' / 'lower' where docs/metrics.md fixes the endpoint's better direction, else None (the study's choice)."""
    if name in BETTER:
        return BETTER[name]
    for prefix in OPEN_PREFIXES:
        if name.startswith(prefix):
            return METRIC_BETTER.get(name[len(prefix):])
    return None


@functools.lru_cache(maxsize=1)
def summary_columns() -> tuple[str, ...]:
    """Scalar summary.json fields, read off the summary of a constructed 6-round run (so they follow the code)."""
    from rlhfsim.diagnostics.summary import summarize  # numpy, scipy, pandas: only when an endpoint is checked

    rows = [{"round": r, "eval/gold": 0.3 + 0.05 * r - 0.004 * r * r, "eval/kl": 0.2 * r, "eval/proxy": 0.1 * r,
             "eval/policy_move": 0.01} for r in range(7)]
    s = summarize(rows, wall_time=0.0)
    return tuple(sorted(k for k, v in s.items() if not isinstance(v, (dict, list))))


def check_endpoint(name: str) -> str | None:
    """None when `name` can be a summary column, else the reason with the valid names."""
    if name.startswith(OPEN_PREFIXES) and len(name) > max(map(len, OPEN_PREFIXES)) - 1:
        return None
    cols = summary_columns()
    if name in cols:
        return None
    import difflib

    close = difflib.get_close_matches(name, cols, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{name!r} is not a summary column. {hint}Valid: {', '.join(cols)}, or final/<metric>, mean/<metric>"
