"""What every figure of rlhfsim shares, below both the loop (the run's own figure, rlhfsim/run_figure.py) and the report
package: matplotlib on the Agg backend (no display needed), seaborn's theme, integer round ticks, the common axis labels.

matplotlib and seaborn are imported inside the functions: they cost about a second, and a config, a CLI command or a
run that draws nothing never pays it.
"""

from __future__ import annotations

ROUND_LABEL = "round (0 = SFT policy)"
GOLD_LABEL = "gold reward (0-1)"


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib  # heavy (see the module docstring)

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # after the backend is chosen

    return plt


def seaborn_theme():
    """seaborn, with the theme every figure uses set."""
    import seaborn as sns  # heavy (see the module docstring)

    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def int_rounds(ax) -> None:
    """Integer ticks on a round axis."""
    from matplotlib.ticker import MaxNLocator  # heavy (see the module docstring)

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
