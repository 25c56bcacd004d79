"""Worlds: where prompts and truth come from (synthetic tasks, gold rewards, simulated annotators).

    world = build_world(cfg.world)   # cfg.world.name picks the section in WORLD_SECTIONS, its `impl` the factory

A world is a plug-in: a module with its World and a section registered with `register_world`
(rlhfsim/world/config.py; docs/architecture.md, "Adding a world"). The worlds themselves are imported on first use
(PEP 562 `__getattr__`, and `impl` strings resolved when a world is built), so that loading a config, which imports
the light sections in rlhfsim/world/config.py and text_config.py, imports no world code.
"""

from __future__ import annotations

import importlib

from rlhfsim.world.config import (
    WORLD_SECTIONS,
    GradedWorldConfig,
    SyntheticWorldConfig,
    WorldBase,
    register_world,
    unregister_world,
)
from rlhfsim.world.text_config import TextWorldConfig  # the text world's section: importing it registers it

_LAZY = {"Prompt": "base", "World": "base", "SyntheticWorld": "synthetic", "GradedWorld": "graded"}


def world_factory(section: type[WorldBase]):
    """The callable a section's `impl` ("module:attribute") names, imported now."""
    module, attr = section.impl.split(":")
    return getattr(importlib.import_module(module), attr)


def _worlds() -> dict[str, tuple[type, object]]:
    """name -> (config section, world factory) of every registered world (imports every world's module)."""
    return {name: (section, world_factory(section)) for name, section in WORLD_SECTIONS.items()}


def __getattr__(name: str):
    if name == "WORLDS":
        return _worlds()
    if name in _LAZY:
        return getattr(importlib.import_module(f"rlhfsim.world.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'rlhfsim.world' has no attribute {name!r}")


def build_world(cfg, **context):
    """The world named by `cfg.name`, built from `cfg` (a registered section, or a dict). `context` is what a run can
    hand a world (policy_tokenizer, device, score_batch); each factory gets the part its section's `context` names."""
    name = cfg.get("name", "synthetic") if isinstance(cfg, dict) else getattr(cfg, "name", None)
    if name not in WORLD_SECTIONS:
        raise ValueError(f"unknown world {name!r}; valid names: {sorted(WORLD_SECTIONS)}")
    section = WORLD_SECTIONS[name]
    if not isinstance(cfg, section):
        cfg = section.model_validate(cfg if isinstance(cfg, dict) else cfg.model_dump())
    return world_factory(section)(cfg, **{k: v for k, v in context.items() if k in section.context})


__all__ = [
    "GradedWorld",
    "GradedWorldConfig",
    "TextWorldConfig",
    "WORLDS",
    "WORLD_SECTIONS",
    "Prompt",
    "SyntheticWorld",
    "SyntheticWorldConfig",
    "World",
    "WorldBase",
    "build_world",
    "register_world",
    "unregister_world",
    "world_factory",
]
