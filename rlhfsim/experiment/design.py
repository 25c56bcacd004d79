"""A dose study's primary test, checked when the experiment file loads: which doses the variants declare, and whether
the primary test (the OLS slope on the dose, or the declared primary.contrast) gives any of them zero weight. With
doses {0, 0.5, 1} the slope is exactly y(1) - y(0): the middle arms would carry nothing, so loading refuses it unless
primary.zero_weight_doses names them (rlhfsim.diagnostics.dose_response.zero_weight_doses).
"""

from __future__ import annotations

from typing import Any

from rlhfsim.schema import ConfigError

DOSE_KEYS = ("surgery.dial",)  # config keys that are a dose wherever a factor maps to them
DOSE_FACTOR = "dose"  # or a factor of this name, whatever its key


def sets_key(overrides: dict, key: str) -> bool:
    """Does a variant's override (flat 'a.b' keys and/or nested sections) set `key`?"""
    if key in overrides:
        return True
    head, _, rest = key.partition(".")
    return bool(rest) and isinstance(overrides.get(head), dict) and sets_key(overrides[head], rest)


def declared_doses(spec, variants) -> tuple[str, str, list[float]] | None:
    """(factor, key, sorted distinct doses the variants set) of a dose study (the rule report/dose.py reads a study's
    design with), else None."""
    dose = next(
        ((n, k) for n, k in spec.factors.items() if isinstance(k, str) and (n == DOSE_FACTOR or k in DOSE_KEYS)), None
    )
    if dose is None:
        return None
    xs = set()
    for v in variants:
        if not sets_key(v.overrides, dose[1]):
            continue
        node: Any = v.overrides
        if dose[1] in node:
            x = node[dose[1]]
        else:
            for part in dose[1].split("."):
                node = node.get(part) if isinstance(node, dict) else None
            x = node
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            xs.add(float(x))
    return (dose[0], dose[1], sorted(xs)) if len(xs) >= 2 else None


def check_dose_primary(spec, variants, where: str) -> None:
    """A dose study's primary test must use every declared dose, or say which it ignores (primary.zero_weight_doses)."""
    # pandas and scipy: imported when a dose study loads, not whenever an experiment file (or the CLI) does
    from rlhfsim.diagnostics.dose_response import slope_weights, zero_weight_doses

    found = declared_doses(spec, variants)
    p = spec.primary
    if found is None:
        if p is not None and (p.contrast is not None or p.zero_weight_doses is not None):
            raise ConfigError(
                f"{where}primary: contrast / zero_weight_doses need a dose factor (factors: {{dose: <key>}} or "
                f"a factor on surgery.dial) with at least 2 doses set by the variants"
            )
        return
    name, key, doses = found
    if p is not None and p.contrast is not None:
        unknown = sorted(set(p.contrast) - set(doses))
        if unknown:
            raise ConfigError(f"{where}primary.contrast: dose(s) {unknown} are not set by any variant ({key}: {doses})")
        weights, test = [p.contrast.get(x, 0.0) for x in doses], "declared contrast"
    else:
        weights, test = slope_weights(doses), "OLS slope on the dose"
    zero = zero_weight_doses(doses, weights)
    said = sorted(float(x) for x in (p.zero_weight_doses or [])) if p is not None else []
    if zero != said:
        fmt = lambda xs: ", ".join(f"{x:g}" for x in xs)  # noqa: E731
        if zero:
            raise ConfigError(
                f"{where}primary: the {test} over the doses of {name} ({key}: {fmt(doses)}) gives dose(s) {fmt(zero)} zero "
                f"weight, so those arms carry nothing in the primary test. Declare a contrast that uses them (primary.contrast: "
                f"{{dose: weight}}, summing to 0, e.g. mean of doses > 0 minus dose 0) or say so: primary.zero_weight_doses: [{fmt(zero)}]"
            )
        raise ConfigError(
            f"{where}primary.zero_weight_doses: [{fmt(said)}] but the {test} gives no declared dose zero weight; drop it"
        )


# ----------------------------------------------------------------------------- label factors and the primary's `where`


def level_of(levels: list[str], name: str) -> str | None:
    """The level of a label factor a variant name is at: the name itself, or the level followed by '_', '-' or '.'
    (the longest such level; None when none matches)."""
    hits = [lv for lv in levels if name == lv or any(name.startswith(lv + sep) for sep in "_-.")]
    return max(hits, key=len) if hits else None


def _dotted(node: Any, key: str) -> Any:
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def check_factor_levels(factors: dict, variants, where: str, configs: dict[str, dict] | None = None) -> dict | None:
    """Every variant at exactly one level of each label factor, every level used; with the resolved configs
    ({variant: model_dump}) also: one level's variants agree on the factor's keys and two levels differ in one.
    Returns {factor: {variant: level as a string}} for every factor (config-key factors need `configs`), else None."""
    out: dict[str, dict[str, str]] = {}
    for name, f in factors.items():
        if isinstance(f, str):
            if configs is not None:
                out[name] = {v.name: str(_dotted(configs[v.name], f)) for v in variants}
            continue
        at = {v.name: level_of(f.levels, v.name) for v in variants}
        none = [v for v, lv in at.items() if lv is None]
        if none:
            raise ConfigError(
                f"{where}factors.{name}: variant(s) {', '.join(none)} start with none of its levels "
                f"({', '.join(f.levels)}); name each variant <level>_... or add its level"
            )
        unused = [lv for lv in f.levels if lv not in at.values()]
        if unused:
            raise ConfigError(
                f"{where}factors.{name}: level(s) {', '.join(unused)} have no variant (no name starts with them)"
            )
        out[name] = at
        if configs is None or not f.keys:
            continue
        sig = {v: tuple(str(_dotted(configs[v], k)) for k in f.keys) for v in at}
        for lv in f.levels:
            seen = {sig[v] for v in at if at[v] == lv}
            if len(seen) > 1:
                ex = "; ".join(f"{v}: {dict(zip(f.keys, sig[v]))}" for v in at if at[v] == lv)
                raise ConfigError(
                    f"{where}factors.{name}: the variants at level {lv!r} differ in its keys ({ex}); "
                    "one level must be one setting of its keys"
                )
        by_sig: dict[tuple, str] = {}
        for v, lv in at.items():
            other = by_sig.setdefault(sig[v], lv)
            if other != lv:
                raise ConfigError(
                    f"{where}factors.{name}: levels {other!r} and {lv!r} have the same setting of its keys "
                    f"({dict(zip(f.keys, sig[v]))}): they are one level under two names, or `keys` misses the "
                    "key that tells them apart"
                )
    return out if configs is not None else None


def check_where(spec, variants, values: dict | None, where: str) -> None:
    """primary.where restricts a dose study's primary test: it needs a dose factor, may not name the dose, and each
    level must be one some dose arm is at (config-key factors are checked when the configs were built)."""
    p = spec.primary
    if p is None or not p.where:
        return
    found = declared_doses(spec, variants)
    if found is None:
        raise ConfigError(
            f"{where}primary.where: restricting the primary test needs a dose factor (factors: {{dose: <key>}} "
            "or a factor on surgery.dial) with at least 2 doses set by the variants"
        )
    for name, level in p.where.items():
        if name == found[0]:
            raise ConfigError(
                f"{where}primary.where.{name}: the dose factor cannot be restricted (the primary test is over its doses)"
            )
        if values is not None and name in values and str(level) not in set(values[name].values()):
            raise ConfigError(
                f"{where}primary.where.{name}: no variant is at {level!r} (its values: "
                f"{', '.join(sorted(set(values[name].values())))})"
            )


PHASE_X = "source"  # the phase diagram's x factor: its levels are ranking sources, placed at their measured quality


def check_phase(spec, variants, where: str) -> None:
    """The phase_diagram headline needs a dose factor (at least 2 doses), a factor named `source` (the x axis) and
    exactly one more factor (one line per level, e.g. optimizer)."""
    if "phase_diagram" not in spec.headline:
        return
    found = declared_doses(spec, variants)
    others = [n for n in spec.factors if found is None or n != found[0]]
    if found is None or PHASE_X not in others or len(others) != 2:
        raise ConfigError(
            f"{where}headline: phase_diagram needs factors: a dose (surgery.dial, or a factor named dose) with at "
            f"least 2 doses set by the variants, one named {PHASE_X!r} (the x axis: each level placed at its measured "
            f"within-prompt Spearman with gold) and exactly one more (a line per level, e.g. optimizer: optimizer.name); "
            f"got factors: {', '.join(spec.factors) or 'none'}"
        )
