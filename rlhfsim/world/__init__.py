"""Worlds: where prompts and truth come from (synthetic tasks, gold rewards, simulated annotators).

    world = build_world(cfg.world)   # cfg.world.name picks the entry in WORLDS
"""

from __future__ import annotations

from rlhfsim.world.base import Prompt, World
from rlhfsim.world.synthetic import SyntheticWorld, SyntheticWorldConfig

# name -> (config model, world class); a new world registers here and gets a config `name` literal
WORLDS: dict[str, tuple[type, type[World]]] = {"synthetic": (SyntheticWorldConfig, SyntheticWorld)}


def build_world(cfg) -> World:
    """The world named by `cfg.name`, built from `cfg` (a config model from WORLDS, or a dict)."""
    name = cfg.get("name", "synthetic") if isinstance(cfg, dict) else getattr(cfg, "name", None)
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; valid names: {sorted(WORLDS)}")
    config_cls, world_cls = WORLDS[name]
    if not isinstance(cfg, config_cls):
        cfg = config_cls.model_validate(cfg if isinstance(cfg, dict) else cfg.model_dump())
    return world_cls(cfg)


__all__ = ["WORLDS", "Prompt", "SyntheticWorld", "SyntheticWorldConfig", "World", "build_world"]
