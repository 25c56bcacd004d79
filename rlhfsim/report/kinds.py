"""Design kinds: what question a study asks, read from its experiment file, and so which figure answers it and which
figures and tables its page carries (each figure and table declares its kinds in report/registry.py).

    design_kind(study)            # "ab", "dose", "overopt", "calibration", "phase", "iterated" or "audit"
    answering_figures(study)      # the experiment's headline, else [the kind's answering figure]

The experiment may name its kind (`design:`); otherwise it is inferred, most specific first: runs with inner
evaluations are iterated RLHF; a phase-diagram headline over a dose design is a phase study; a dose factor makes a
dose-response study; the alarm-detection figure as the first headline an audit study; a calibration headline a
calibration study; a Gao figure as the first headline or the drop
after the gold peak as the primary endpoint an over-optimisation study; anything else is an A/B comparison against
the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhfsim.report import dose as DR
from rlhfsim.report.iterated import has_inner
from rlhfsim.report.phase import phase_design


@dataclass(frozen=True)
class Kind:
    name: str
    title: str  # in words, on the page
    answer: str  # the figure id that answers the question when the experiment names no headline


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("ab", "A/B comparison against a baseline", "effect_sizes"),
        Kind("dose", "dose-response", "dose_response"),
        Kind("overopt", "over-optimisation", "fig9_proxy_and_gold_vs_sqrt_kl"),
        Kind("calibration", "calibration: measured quality against the knob", "calibration"),
        Kind("phase", "phase diagram", "phase_diagram"),
        Kind("iterated", "iterated RLHF", "iterated_frontiers"),
        Kind("audit", "audit: do the reward-model alarms warn before gold falls?", "alarm_detection"),
    )
}
ALL_KINDS = tuple(KINDS)
GAO_FIGURES = ("fig3_gold_vs_sqrt_kl", "fig9_proxy_and_gold_vs_sqrt_kl")
OVEROPT_ENDPOINTS = ("gold_drop_after_peak",)


def design_kind(study) -> str:
    """The study's design kind: the experiment's `design:` if it names one, else inferred (module docstring)."""
    named = getattr(study, "kind", None)
    if named in KINDS:
        return named
    if has_inner(study):
        return "iterated"
    if phase_design(study) is not None:
        return "phase"
    if DR.design(study) is not None:
        return "dose"
    headline = list(study.headline or [])
    if headline[:1] == ["alarm_detection"]:
        return "audit"
    if "calibration" in headline:
        return "calibration"
    if (headline and headline[0] in GAO_FIGURES) or (study.primary or {}).get("endpoint") in OVEROPT_ENDPOINTS:
        return "overopt"
    return "ab"


def answering_figures(study, kind: str | None = None) -> list[str]:
    """Figure ids in the order the page leads with them: the experiment's headline, else the kind's answering figure."""
    return list(study.headline) or [KINDS[kind or design_kind(study)].answer]
