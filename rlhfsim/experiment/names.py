"""Variant names and dotted overrides: what an experiment's grid turns into, as safe directory names."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Any

import yaml

from rlhfsim.config import ConfigError, set_dotted  # noqa: F401  (re-exported: experiments set dotted keys like --set)

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80

# ----------------------------------------------------------------------------- names


def safe_name(text: str) -> str:
    """A directory name made of [A-Za-z0-9._-] only: no separators, no '..', not hidden, not empty."""
    s = SAFE_CHARS.sub("_", str(text).strip())
    s = re.sub(r"\.{2,}", ".", s)  # never '..'
    s = re.sub(r"^[._-]+", "", s).rstrip(".")  # not hidden, not option-like
    if len(s) > MAX_NAME:  # keep distinct long names distinct
        s = s[: MAX_NAME - 9].rstrip("._-") + "-" + hashlib.sha1(str(text).encode()).hexdigest()[:8]
    return s or "variant"


def dedup_names(names: list[str]) -> list[str]:
    """Make names unique by appending -2, -3, ... (case-insensitively, for case-insensitive file systems)."""
    seen: set[str] = set()
    out = []
    for n in names:
        cand, i = n, 2
        while cand.lower() in seen:
            cand, i = f"{n}-{i}", i + 1
        seen.add(cand.lower())
        out.append(cand)
    return out


def _value_label(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return json.dumps(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "_".join(f"{k}-{_value_label(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return "_".join(_value_label(x) for x in v)
    return str(v)


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Shortest unique dotted suffix of each key: optimizer.kl_coef -> kl_coef unless another key ends the same way."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(o != k and (o == suffix or o.endswith("." + suffix)) for o in keys):
                break
        out[k] = suffix
    return out


def grid_variants(grid: dict[str, list]) -> dict[str, dict[str, Any]]:
    """Product of the grid's values, in order; each named '<key>-<value>' joined by '__'."""
    keys = list(grid)
    short = _short_keys(keys)
    combos = list(itertools.product(*(grid[k] for k in keys)))
    raw = ["__".join(f"{short[k]}-{_value_label(v)}" for k, v in zip(keys, combo)) for combo in combos]
    names = dedup_names([safe_name(n) for n in raw])
    return {n: dict(zip(keys, combo)) for n, combo in zip(names, combos)}


# ----------------------------------------------------------------------------- dotted overrides


def to_set_args(overrides: dict[str, Any]) -> list[str]:
    """The same overrides as `--set KEY=VALUE` strings (YAML flow values)."""
    out = []
    for k, v in overrides.items():
        text = yaml.safe_dump(v, default_flow_style=True, width=10**9, sort_keys=False).strip()
        text = text.removesuffix("...").strip()
        out.append(f"{k}={text}")
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; empty dicts stay as values."""
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}
