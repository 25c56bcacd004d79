"""The base of every config section (strict: unknown keys are errors) and the user-fixable config error.

Sections are declared beside the code they configure (e.g. rlhfsim/optim/config.py, rlhfsim/reward/config.py);
rlhfsim/config.py assembles the root model, loads files and runs the cross-section checks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from rlhfsim.real.assets import resolve

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config problem a user can fix; the CLI prints the message and exits with code 2."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def renamed_fields(raw: Any, renamed: dict[str, str], section: str) -> Any:
    """A section's raw values with renamed fields read under their new names (a config or a run directory written
    before the rename), with a deprecation warning for each; the old and the new name together are an error."""
    if not isinstance(raw, dict) or not any(old in raw for old in renamed):
        return raw
    out = dict(raw)
    for old, new in renamed.items():
        if old not in out:
            continue
        if new in out:
            raise ValueError(
                f"{section}.{old} and {section}.{new} are one setting ({old} is its old name); give only {new}"
            )
        log.warning(
            "%s.%s is deprecated: it was renamed %s.%s and is read as that; rename it in the config",
            section,
            old,
            section,
            new,
        )
        out[new] = out.pop(old)
    return out


class NamedSpec(BaseModel):
    """A registry entry {name, params} (a utility, a perturbation family); in YAML a bare string is the name."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


def local_path_exists(v: str | None) -> str | None:
    """A value that is clearly a local path (/, ./, ../, ~) must exist; `real:<name>` must be installed and set up
    (rlhfsim.real.assets; the message names the command); anything else may be a hub name."""
    if v is not None and v.startswith("real:"):
        resolve(v)  # AssetMissing is a ValueError: pydantic reports it under the field
        return v
    if v is not None and v.startswith(("/", "./", "../", "~")) and not Path(v).expanduser().exists():
        raise ValueError(f"{v!r} does not exist; give an existing local path or a hub name")
    return v
