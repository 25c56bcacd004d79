"""Figure ids a report can draw (an experiment's `headline` names some of them) and the summary columns an
experiment's `primary` / `secondary` endpoints may name. Light on imports: the sweep validates against them."""

from __future__ import annotations

import functools
from pathlib import Path

from rlhfsim.experiment.metrics import ENDPOINTS, PREFIXES, ROUND_METRICS, direction

FIGURE_IDS = (
    "effect_sizes",
    "fig1_gold_proxy_kl",
    "fig2_by_prompt_type",
    "fig3_gold_vs_sqrt_kl",
    "fig4_reward_distributions",
    "fig5_sorted_profiles",
    "fig6_collapse",
    "fig7_advantage_fidelity",
    "fig8_best_of_n",
    "fig9_proxy_and_gold_vs_sqrt_kl",
    "fig10_learning_signal",
    "fig11_audits",
    "fig12_terminal_profiles",
    "fig13_reward_training",
    "dose_response",  # studies with a dose factor (report/dose.py, fig_dose.py), e.g. experiments/propagation.yaml
    "phase_diagram",  # source x dose x optimiser studies that list it: dial effect against measured ranking quality (report/phase.py)
    "calibration",  # studies that list it as a headline: ranking quality vs gain share (report/calibration.py), experiments/rm_quality.yaml
    # runs with inner_eval.jsonl (issue 36, experiments/iterated_rlhf.yaml; report/iterated.py, fig_iterated.py): gold against
    # KL inside each round per arm, and the proxy-gold gap by round
    "iterated_frontiers",
    "iterated_gap",
)
# plug-in figures: one file each, named by the figure's id (report/registry.py). Read by name, never imported here: the
# experiment-file model sits below the report package
PLUGIN_FIGURES = Path(__file__).resolve().parents[1] / "report" / "figs"


def figure_ids() -> tuple[str, ...]:
    """FIGURE_IDS and the plug-in figures' ids (their file names in rlhfsim/report/figs/)."""
    extra = sorted(p.stem for p in PLUGIN_FIGURES.glob("*.py") if not p.stem.startswith("_"))
    return FIGURE_IDS + tuple(x for x in extra if x not in FIGURE_IDS)


# columns of summary.csv that are not summary.json fields; final/<metric> and mean/<metric> depend on what was logged
OPEN_PREFIXES = PREFIXES


# Directions are declared once, in experiment/metrics.py; these are views of it. BETTER / METRIC_BETTER: the
# direction docs/metrics.md documents ("Endpoint directions") for endpoints that have one by definition ("closer" for
# those with a target); TARGET / METRIC_TARGET: the target of a "closer to the target" endpoint (a paired test of such
# an endpoint runs on the per-seed distance |value - target|, report/stats.py compare).
BETTER = {k: m.better for k, m in ENDPOINTS.items() if m.better}
METRIC_BETTER = {k: m.better for k, m in ROUND_METRICS.items() if m.better}
TARGET = {k: m.target for k, m in ENDPOINTS.items() if m.target is not None}
METRIC_TARGET = {k: m.target for k, m in ROUND_METRICS.items() if m.target is not None}


def documented_target(name: str) -> float | None:
    """The target value of an endpoint whose better direction is "closer to the target", else None."""
    m = direction(name)
    return None if m is None else m.target


def documented_better(name: str) -> str | None:
    """'higher' / 'lower' / 'closer' where docs/metrics.md fixes the endpoint's better direction, else None (the
    study's choice)."""
    m = direction(name)
    return None if m is None else m.better


@functools.lru_cache(maxsize=1)
def summary_columns() -> tuple[str, ...]:
    """Scalar summary.json fields, read off the summary of a constructed 6-round run (so they follow the code)."""
    from rlhfsim.diagnostics.summary import summarize  # numpy, scipy, pandas: only when an endpoint is checked

    rows = [
        {
            "round": r,
            "eval/gold": 0.3 + 0.05 * r - 0.004 * r * r,
            "eval/kl": 0.2 * r,
            "eval/proxy": 0.1 * r,
            "eval/policy_move": 0.01,
        }
        for r in range(7)
    ]
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
