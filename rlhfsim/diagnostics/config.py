"""Config section of the reward-model audits (rlhfsim.diagnostics.audit): stress suite, shifted sets, alarms.

Light on purpose: loading a config imports no diagnostics code. A family name is checked against the registry in
rlhfsim.world.perturb when a section is validated.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rlhfsim.schema import NamedSpec

DEFAULT_FAMILIES = ("pad_length", "repeat_tokens", "topic_words", "answer_junk", "wrong_format")


class FamilySpec(NamedSpec):
    """A perturbation family (rlhfsim.world.perturb registry) and its parameters; a bare string is a name."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="Registry name in rlhfsim.world.perturb.PERTURBATIONS.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Builder parameters, e.g. {words: 12} or {junk: [...]}."
    )

    @model_validator(mode="after")
    def _exists(self) -> FamilySpec:
        from rlhfsim.world.perturb import check_family  # numpy: a config loads without the world's code

        check_family(self.name, self.params)
        return self


class AuditConfig(BaseModel):
    """Reward-model audits every round (rlhfsim.diagnostics.audit): stress suite, shifted sets, alarms."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    enabled: bool = Field(
        True, description="Run the stress suite and the shifted sets every round (alarms are logged either way)."
    )
    families: list[FamilySpec] = Field(
        default_factory=lambda: list(DEFAULT_FAMILIES),
        validate_default=True,
        description="Perturbation families of the stress suite (names or {name, params}).",
    )
    prompts: int = Field(
        64, ge=1, description="Held-out prompts (the first of loop.eval_prompts) the stress suite perturbs."
    )
    shifts: list[str] = Field(
        ["operands"], description="Shifted validation sets (the world's eval shifts: operands, topics, facts)."
    )
    shift_prompts: int = Field(32, ge=2, description="Prompts per shifted set, loop.eval_completions samples each.")
    exploit_threshold: float = Field(
        0.5, ge=0, le=1, description="Exploit alarm: some family's exploit rate above this."
    )
    shift_acc_threshold: float = Field(
        0.6, ge=0, le=1, description="Shift alarm: some shifted set's pairwise accuracy below this."
    )
    collapse_ratio: float = Field(
        0.5, gt=0, le=1, description="Variance alarm: a type's within-prompt std below this share of round 1's."
    )
    saturation_threshold: float = Field(
        0.5, ge=0, le=1, description="Saturation alarm: collapse/saturation above this."
    )
    explosion_ratio: float = Field(
        3.0, gt=1, description="Explosion alarm: collapse/logit_abs_p99 above this multiple of round 1's (at least 1)."
    )
