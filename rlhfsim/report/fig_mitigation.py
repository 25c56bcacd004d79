"""Figure 13: what the reward-model mitigations did each round (ensembles, early stopping), when logged.

Panels appear for the metrics a study logged: epochs trained per round (early stopping), held-out loss,
member disagreement and its correlation with the proxy's error (ensembles), and the reward phase's
wall time. Studies without ensembles or early stopping get no figure (skipped, with the reason).
"""

from __future__ import annotations

from rlhfsim.report.facets import top_margin
from rlhfsim.report.figures import ROUND_LABEL, FigureResult, _band_text, _has, _int_rounds, _legend_once, _lineplot, _plt

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
    if not (_has(m, "rm/heldout_loss") or _has(m, "rm/ens_std")):
        return FigureResult(key, title, "", None, "no early stopping (rm/heldout_loss) or ensemble (rm/ens_std) metrics logged")
    panels = [p for p in PANELS if _has(m, p[0])]
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.2), squeeze=False)
    axes = axes[0]
    for ax, (col, ylabel, sub) in zip(axes, panels):
        _lineplot(ax, m[m["round"] > 0], col, study, pal, band)
        ax.set(xlabel=ROUND_LABEL, ylabel=ylabel, title=sub)
        _int_rounds(ax)
    _legend_once(fig, axes)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    cap = (f"Mean over seeds ({_band_text(band)}). Epochs: up to reward.epochs, fewer when early stopping fired. Disagreement is the "
           "std over members per held-out completion; its correlation is Spearman's rho with the absolute residual of the proxy "
           "regressed on gold (> 0: members disagree where the proxy is wrong); both absent for one member.")
    return FigureResult(key, title, cap, fig)
