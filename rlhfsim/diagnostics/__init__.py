"""Diagnostics: collapse metrics, advantage fidelity, over-optimisation fits, stagnation, run summaries.

Submodules are imported on first use (PEP 562 `__getattr__`), so that loading a config, which imports
rlhfsim/diagnostics/config.py, imports no diagnostics code.
"""

from __future__ import annotations

import importlib

_SUBMODULES = ("advantage", "audit", "collapse", "overopt", "stagnation", "summary", "train_profiles")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"rlhfsim.diagnostics.{name}")
    if name == "summarize":
        return importlib.import_module("rlhfsim.diagnostics.summary").summarize
    raise AttributeError(f"module 'rlhfsim.diagnostics' has no attribute {name!r}")
