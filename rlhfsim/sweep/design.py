"""A dose study's primary test, checked when the experiment file loads: which doses the variants declare, and whether
the primary test (the OLS slope on the dose, or the declared primary.contrast) gives any of them zero weight. With
doses {0, 0.5, 1} the slope is exactly y(1) - y(0): the middle arms would carry nothing, so loading refuses it unless
primary.zero_weight_doses names them (rlhfsim.diagnostics.dose_response.zero_weight_doses).
"""

from __future__ import annotations

from typing import Any

from rlhfsim.config import ConfigError


def declared_doses(spec, variants) -> tuple[str, str, list[float]] | None:
    """(factor, key, sorted distinct doses the variants set) of a dose study (report/dose.py's rule), else None."""
    from rlhfsim.report.dose import DOSE_FACTOR, DOSE_KEYS, _sets_key

    dose = next(((n, k) for n, k in spec.factors.items() if n == DOSE_FACTOR or k in DOSE_KEYS), None)
    if dose is None:
        return None
    xs = set()
    for v in variants:
        if not _sets_key(v.overrides, dose[1]):
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
    from rlhfsim.diagnostics.dose_response import slope_weights, zero_weight_doses

    found = declared_doses(spec, variants)
    p = spec.primary
    if found is None:
        if p is not None and (p.contrast is not None or p.zero_weight_doses is not None):
            raise ConfigError(f"{where}primary: contrast / zero_weight_doses need a dose factor (factors: {{dose: <key>}} or "
                              f"a factor on surgery.dial) with at least 2 doses set by the variants")
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
                f"{{dose: weight}}, summing to 0, e.g. mean of doses > 0 minus dose 0) or say so: primary.zero_weight_doses: [{fmt(zero)}]")
        raise ConfigError(f"{where}primary.zero_weight_doses: [{fmt(said)}] but the {test} gives no declared dose zero weight; drop it")
