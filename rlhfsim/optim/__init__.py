"""Phase-7 policy optimisers as plug-ins: the registry from `optimizer.name` to the class that implements it.

A new optimiser is one file here (a PolicyOptimizer subclass with `from_config`) plus its config section in
rlhfsim/optim/config.py, whose `impl` names that class (docs/architecture.md). Imports are lazy: loading a config
imports no model code.
"""

from __future__ import annotations

import importlib

from rlhfsim.optim.config import all_configs

REGISTRY = {c.model_fields["name"].default: c.impl for c in all_configs()}  # name -> "module:Class"


def optimizer_class(name: str):
    if name not in REGISTRY:
        raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_optimizer(cfg, policy, ref, tokenizer, device, parallel=None):
    """The optimiser `cfg.optimizer` names, with whatever it owns (PPO: value model, KL controller) built now."""
    return optimizer_class(cfg.optimizer.name).from_config(cfg, policy, ref, tokenizer, device, parallel)
