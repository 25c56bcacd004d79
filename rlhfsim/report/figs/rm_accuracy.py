"""rm_accuracy: the reward model's agreement with gold over rounds, per arm, on the pages whose question is what the
reward model does to the policy (dose, phase, calibration). Such a claim means something only if the reward model
carries signal (docs/metrics.md), so its accuracy stands beside the answer. Gold-source arms use no reward model: the
registry blanks their columns, so they draw no line here."""

from __future__ import annotations

from rlhfsim.report.facets import top_margin
from rlhfsim.report.plots import legend_once, round_panels
from rlhfsim.report.registry import Figure, Page

PANELS = [
    ("rm/pairwise_acc", "pairwise accuracy vs gold (0-1)", "pairwise accuracy (held-out)"),
    ("rm/within_prompt_spearman", "Spearman vs gold (−1 to 1)", "within-prompt rank correlation"),
    ("rm/closed_pairwise_acc", "pairwise accuracy vs gold (0-1)", "closed prompts: pairwise accuracy"),
    ("rm/open_pairwise_acc", "pairwise accuracy vs gold (0-1)", "open prompts: pairwise accuracy"),
]


def draw(page: Page):
    drawn = round_panels(page.study, page.pal, page.band, PANELS, (4.4, 4.0))
    if drawn is None:
        return None
    fig, axes, _ = drawn
    legend_once(fig, axes)
    fig.tight_layout(rect=(0, 0, 1, top_margin(fig)))
    return fig


FIGURE = Figure(
    "rm_accuracy",
    draw,
    kinds=("dose", "phase", "calibration"),
    needs=("rm/pairwise_acc",),
    quiet=True,
    title="The reward model's agreement with gold over rounds",
    caption=(
        "Each round's reward model on held-out completions of the current policy: the share of pairs it orders as gold "
        "does, and the mean within-prompt Spearman correlation with gold (rounds where no held-out pair differs in gold "
        "are missing, not 0); per prompt type where logged. Mean over seeds with bands; gold-source arms use no reward "
        "model and draw no line."
    ),
)
