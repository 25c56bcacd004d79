"""Figure 13: what the reward-model mitigations did each round (ensembles, early stopping), when logged.

Panels appear for the metrics a study logged: epochs trained per round (early stopping), held-out loss,
member disagreement and its correlation with the proxy's error (ensembles), and the reward phase's
wall time. Studies without ensembles or early stopping get no figure (skipped, with the reason).
"""

from __future__ import annotations

from rlhfsim.report.facets import row_height, top_margin
from rlhfsim.report.plots import (
    ROUND_LABEL,
    FigureResult,
    band_text,
    has,
    int_rounds,
    legend_once,
    lineplot,
    pyplot,
)
from rlhfsim.report.select import config_values, variant_groups

PANELS = [
    ("rm/epochs", "epochs trained", "reward-model epochs per round"),
    ("rm/heldout_loss", "held-out loss (kept epoch)", "held-out reward-model loss"),
    ("rm/ens_std", "member std (reward scale)", "ensemble disagreement"),
    ("rm/ens_err_corr", "Spearman rho", "disagreement vs proxy error"),
    ("time/reward", "seconds", "reward phase wall time"),
]


def fig_mitigation(study, pal, band="sd") -> FigureResult:
    key, title = "fig13_reward_training", "Reward-model training: early stopping and ensemble disagreement"
    m = study.metrics
    if not (has(m, "rm/heldout_loss") or has(m, "rm/ens_std")):
        return FigureResult(
            key, title, "", None, "no early stopping (rm/heldout_loss) or ensemble (rm/ens_std) metrics logged"
        )
    panels = [p for p in PANELS if has(m, p[0])]
    parts = [
        w
        for c, w in (("rm/heldout_loss", "held-out loss and epochs"), ("rm/ens_std", "ensemble disagreement"))
        if has(m, c)
    ]
    title = "Reward-model training: " + " and ".join(parts)  # names only what these runs logged
    plt = pyplot()
    groups = variant_groups(study)  # rows of at most MAX_COLOURS variants beside the baseline
    fig, grid = plt.subplots(
        len(groups), len(panels), figsize=(4.2 * len(panels), row_height(4.2, len(groups)) * len(groups)), squeeze=False
    )
    for row, (label, vs) in zip(grid, groups):
        mg = m[(m["round"] > 0) & m["variant"].isin(vs)]
        for ax, (col, ylabel, sub) in zip(row, panels):
            lineplot(ax, mg, col, study, pal, band)
            ax.set(xlabel=ROUND_LABEL, ylabel=ylabel, title=f"{sub}\n({label})" if label else sub)
            int_rounds(ax)
    legend_once(fig, list(grid.ravel()))
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cols = {p[0] for p in panels}
    cap = f"Mean over seeds ({band_text(band)})."
    if "rm/epochs" in cols:
        stops = config_values(study, "reward.early_stop.mode") - {"None", "off", "none"}
        cap += " Epochs: up to reward.epochs" + (", fewer when early stopping fired." if stops else ".")
    if "rm/ens_std" in cols:
        cap += " Disagreement is the std over members per held-out completion"
        cap += (
            "; its correlation is Spearman's rho with the absolute residual of the proxy regressed on gold (> 0: members "
            "disagree where the proxy is wrong)"
            if "rm/ens_err_corr" in cols
            else ""
        )
        cap += "; both absent for one member." if "1" in config_values(study, "reward.ensemble_size") else "."
    return FigureResult(key, title, cap, fig)
