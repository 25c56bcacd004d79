"""Diagnostics: collapse metrics, advantage fidelity, over-optimisation fits, stagnation, run summaries."""

from rlhfsim.diagnostics import advantage, collapse, overopt, stagnation, train_profiles  # noqa: F401
from rlhfsim.diagnostics.summary import summarize  # noqa: F401
