"""Worlds: where prompts and truth come from (synthetic tasks, gold rewards, simulated annotators).

    world = build_world(cfg.world)   # cfg.world.name picks the entry in WORLDS
"""

from __future__ import annotations

from rlhfsim.world.base import Prompt, World
from rlhfsim.world.graded import GradedWorld, GradedWorldConfig
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig
from rlhfsim.world.text_config import TextWorldConfig


def _text_world(cfg, **context) -> World:
    from rlhfsim.world.text import TextWorld  # imports `datasets` only when a text world is built

    return TextWorld(cfg, **context)


# name -> (config model, world factory); a new world registers here and in the `world` union of config.Config.
# Factories in CONTEXT_WORLDS also get the run's context (policy_tokenizer, device, score_batch).
WORLDS: dict[str, tuple[type, object]] = {
    "synthetic": (SyntheticWorldConfig, SyntheticWorld), "graded": (GradedWorldConfig, GradedWorld), "text": (TextWorldConfig, _text_world)}
CONTEXT_WORLDS = {"text"}


def build_world(cfg, **context) -> World:
    """The world named by `cfg.name`, built from `cfg` (a config model from WORLDS, or a dict)."""
    name = cfg.get("name", "synthetic") if isinstance(cfg, dict) else getattr(cfg, "name", None)
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; valid names: {sorted(WORLDS)}")
    config_cls, world_cls = WORLDS[name]
    if not isinstance(cfg, config_cls):
        cfg = config_cls.model_validate(cfg if isinstance(cfg, dict) else cfg.model_dump())
    return world_cls(cfg, **context) if name in CONTEXT_WORLDS else world_cls(cfg)


__all__ = ["CONTEXT_WORLDS", "GradedWorld", "GradedWorldConfig", "TextWorldConfig", "WORLDS", "Prompt", "SyntheticWorld", "SyntheticWorldConfig", "World", "build_world"]
