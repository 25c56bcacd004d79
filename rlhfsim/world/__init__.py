"""Worlds: where prompts and truth come from (synthetic tasks, gold rewards, simulated annotators).

    world = build_world(cfg.world)   # cfg.world.name picks the entry in WORLDS

The worlds themselves are imported on first use (PEP 562 `__getattr__`), so that loading a config, which imports
the sections in rlhfsim/world/config.py and text_config.py, imports no world code.
"""

from __future__ import annotations

import importlib

from rlhfsim.world.config import GradedWorldConfig, SyntheticWorldConfig
from rlhfsim.world.text_config import TextWorldConfig

CONTEXT_WORLDS = {"text"}  # factories that also get the run's context (policy_tokenizer, device, score_batch)
_LAZY = {"Prompt": "base", "World": "base", "SyntheticWorld": "synthetic", "GradedWorld": "graded"}


def _text_world(cfg, **context):
    from rlhfsim.world.text import TextWorld  # imports `datasets` only when a text world is built

    return TextWorld(cfg, **context)


def _worlds() -> dict[str, tuple[type, object]]:
    """name -> (config model, world factory); a new world registers here and in the `world` union of config.Config."""
    from rlhfsim.world.graded import GradedWorld  # numpy, transformers: a config loads without the worlds' code
    from rlhfsim.world.synthetic import SyntheticWorld  # numpy, transformers: a config loads without the worlds' code

    return {"synthetic": (SyntheticWorldConfig, SyntheticWorld), "graded": (GradedWorldConfig, GradedWorld),
            "text": (TextWorldConfig, _text_world)}


def __getattr__(name: str):
    if name == "WORLDS":
        return _worlds()
    if name in _LAZY:
        return getattr(importlib.import_module(f"rlhfsim.world.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rlhfsim.world' has no attribute {name!r}")


def build_world(cfg, **context):
    """The world named by `cfg.name`, built from `cfg` (a config model from WORLDS, or a dict)."""
    worlds = _worlds()
    name = cfg.get("name", "synthetic") if isinstance(cfg, dict) else getattr(cfg, "name", None)
    if name not in worlds:
        raise ValueError(f"unknown world {name!r}; valid names: {sorted(worlds)}")
    config_cls, world_cls = worlds[name]
    if not isinstance(cfg, config_cls):
        cfg = config_cls.model_validate(cfg if isinstance(cfg, dict) else cfg.model_dump())
    return world_cls(cfg, **context) if name in CONTEXT_WORLDS else world_cls(cfg)


__all__ = ["CONTEXT_WORLDS", "GradedWorld", "GradedWorldConfig", "TextWorldConfig", "WORLDS", "Prompt", "SyntheticWorld", "SyntheticWorldConfig", "World", "build_world"]
