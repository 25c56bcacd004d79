"""Diagnostics: collapse metrics, advantage fidelity, over-optimisation fits, stagnation, run summaries."""

from rlhfsim.diagnostics import collapse  # noqa: F401
from rlhfsim.diagnostics.summary import summarize  # noqa: F401
