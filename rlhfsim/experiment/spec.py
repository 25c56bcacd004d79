"""The experiment file's schema (format in experiments/README.md): its fields, their types, ranges and documentation,
and the checks one file can make on its own (unknown keys with suggestions, endpoint directions, the primary's options).

Expanding a parsed file into variants and run configs, and loading a file from disk, is `expand.py`.
"""

from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlhfsim.config import ConfigError
from rlhfsim.experiment.ids import check_endpoint, documented_better, documented_target, figure_ids
from rlhfsim.experiment.names import safe_name

# ----------------------------------------------------------------------------- the experiment file

BORROW_KEY = "from"  # in a variant's mapping: where its runs come from (Borrow); never a config key


class Endpoint(BaseModel):
    """A summary column the study is judged on, and which direction is better."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(..., description="A summary.json / summary.csv column, e.g. gold_gain or final/eval/gold.")
    better: Literal["higher", "lower", "closer"] | None = Field(
        None,
        description="Which direction of the endpoint is an "
        "improvement; 'closer': closer to the endpoint's documented "
        "target (experiment/metrics.py, e.g. shape_rel's 0), where "
        "'lower' is read the same way. Left out: the direction "
        "experiment/metrics.py declares, else higher.",
    )
    margin: float | None = Field(
        None,
        description="Primary only: the equivalence margin m (the endpoint's units; for a dose "
        "primary, per unit dose), declared before the run. With it the report runs a TOST and says "
        "'equivalent within +-m' or 'inconclusive'; without it, 'no effect detected'.",
    )
    contrast: dict[float, float] | None = Field(
        None,
        description="Primary of a dose study only: weights per dose (summing to 0) "
        "tested instead of the OLS slope, e.g. {0: -1, 0.5: 0.5, 1: 0.5} (any collapse).",
    )
    zero_weight_doses: list[float] | None = Field(
        None,
        description="Primary of a dose study only: the declared doses the primary "
        "test knowingly gives zero weight (e.g. [0.5] for the slope over doses 0, 0.5, 1).",
    )
    where: dict[str, Any] | None = Field(
        None,
        description="Primary of a dose study only: restrict the primary test to the arms at "
        "these levels of other design factors, e.g. {source: gold}: a seed's value is then the mean "
        "over the groups at that level only (e.g. gold x PPO and gold x RLOO), not over every group.",
    )

    @field_validator("margin", mode="before")
    @classmethod
    def _margin(cls, v: Any) -> Any:
        import math

        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(
                f"margin must be a positive number in the endpoint's units (the equivalence margin +-m, "
                f"declared before the run, e.g. margin: 0.02), got {v!r}"
            )
        return float(v)

    @field_validator("contrast")
    @classmethod
    def _contrast(cls, v: dict[float, float] | None) -> dict[float, float] | None:
        if v is None:
            return v
        if len(v) < 2 or not any(w != 0 for w in v.values()):
            raise ValueError(f"contrast needs weights on at least 2 doses, not all 0, got {v}")
        total = sum(v.values())
        if abs(total) > 1e-9 * max(abs(w) for w in v.values()):
            raise ValueError(f"contrast weights must sum to 0 (a contrast between doses), they sum to {total:g}: {v}")
        return v

    @field_validator("endpoint")
    @classmethod
    def _known(cls, v: str) -> str:
        why = check_endpoint(v)
        if why:
            raise ValueError(why)
        return v

    @model_validator(mode="after")
    def _direction(self) -> Endpoint:
        target = documented_target(self.endpoint)
        if self.better is None:  # declared once (experiment/metrics.py): the experiment need not restate it
            self.better = documented_better(self.endpoint) or "higher"
            return self
        if self.better == "closer" and target is None:
            raise ValueError(
                f"{self.endpoint!r}: better: closer needs a documented target (docs/metrics.md, 'Endpoint directions'); "
                "declare higher or lower"
            )
        if target is not None and self.better in ("closer", "lower"):  # lower is read as closer to the target
            return self
        doc = documented_better(self.endpoint)
        if doc is not None and doc != self.better:
            doc = f"closer to {target:g}" if target is not None else doc
            raise ValueError(
                f"{self.endpoint!r}: {doc} is better by definition (docs/metrics.md, 'Endpoint directions'), "
                f"but the experiment says better: {self.better}; declare better: {documented_better(self.endpoint)}"
                + (" (or lower, read the same way), or leave better: out" if target is not None else "")
            )
        return self


class LabelFactor(BaseModel):
    """A design factor that is not one config key (e.g. a ranking source set by several keys): each variant's level is
    the listed level its name starts with (the name itself, or the level followed by '_', '-' or '.')."""

    model_config = ConfigDict(extra="forbid")

    levels: list[str] = Field(
        ...,
        min_length=2,
        description="The factor's levels, in order (e.g. [gold, rho0.6, weak]); each "
        "is the start of the names of its variants (gold_ppo_d0 is at level gold). Every variant must "
        "match exactly one level.",
    )
    keys: list[str] = Field(
        default_factory=list,
        description="Config keys that together set the level (e.g. "
        "loop.reward_source, reward.backbone): checked at load, the variants of one level agree on all "
        "of them and two levels differ in at least one, so the names cannot lie about the configs.",
    )

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not x for x in v):
            raise ValueError(f"levels must be distinct non-empty names, got {v}")
        return v


class Borrow(BaseModel):
    """A variant whose runs another experiment file runs (`m1: {from: other.yaml}`): this file's sweep skips it and its
    report reads that file's runs of the arm, paired by seed as its own. Checked at load (experiment/borrow.py): the
    other file has the arm and this file's seeds, and the arm's resolved run config is, seed by seed, the one this
    file's base + base_overrides + variant give, up to the run's name and directory."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(..., min_length=1, description="The lending experiment file, relative to this experiment file.")
    variant: str | None = Field(
        None,
        description="Its variant whose runs this arm takes (as written or as its directory name); default: "
        "this variant's name.",
    )


class ResourcesSpec(BaseModel):
    """What each run asks of a Ray cluster (`rlhfsim sweep --backend ray`); the local backend ignores it."""

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(1, gt=0, description="CPUs per run (also its torch thread count, rounded down, at least 1).")
    gpus: float = Field(0, ge=0, description="GPUs per run (Ray sets CUDA_VISIBLE_DEVICES); give 1 with device: cuda.")
    memory_gb: float | None = Field(
        None, gt=0, description="Memory per run in GiB that Ray reserves (None: no reservation)."
    )


class ExperimentSpec(BaseModel):
    """The experiment file (experiments/README.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Study name: the directory runs/<name>/ (letters, digits, . _ -).")
    question: str = Field(..., description="The question the study asks (shown at the top of the report).")
    base: str | None = Field(
        None, description="Config YAML every variant starts from, relative to the experiment file."
    )
    base_overrides: dict[str, Any] = Field(default_factory=dict, description="Dotted overrides for all variants.")
    variants: dict[str, dict[str, Any]] | None = Field(
        None,
        description="Named variants: name -> dotted overrides. The reserved key `from` (no config section has that "
        "name) borrows the arm's runs from another experiment file instead of running them: `m1: {from: other.yaml}` "
        "(its variant of the same name) or `m1: {from: {file: other.yaml, variant: m1}}` (Borrow); the variant's other "
        "keys still say what the arm is, and loading checks the lender's runs are of exactly that config.",
    )
    grid: dict[str, list[Any]] | None = Field(
        None, description="Product of values per dotted key (auto-named variants)."
    )
    seeds: list[int] = Field(default_factory=lambda: [0], description="Seeds; an integer n means 0..n-1.")
    baseline: str | None = Field(None, description="Variant the report compares against (default: the first).")
    rounds_override: int | None = Field(None, ge=1, description="loop.rounds for every variant (applied last).")
    primary: Endpoint | None = Field(
        None,
        description="The endpoint the Answer is computed from: each variant vs the baseline, "
        "paired by seed (report/stats.py).",
    )
    secondary: list[Endpoint] = Field(
        default_factory=list, description="Further endpoints; Holm-corrected across all of them and all variants."
    )
    headline: list[str] = Field(
        default_factory=list, description="Figure ids shown in the Answer box (experiment/ids.py figure_ids())."
    )
    design: Literal["ab", "dose", "overopt", "calibration", "phase", "iterated", "audit"] | None = Field(
        None,
        description="The study's design kind, which shapes its report page (report/kinds.py): ab (each arm against the "
        "baseline), dose (dose-response), overopt (over-optimisation), calibration (measured quality against the knob), phase "
        "(phase diagram), iterated (iterated RLHF), audit (do the reward-model alarms warn before gold falls). Left out: inferred from the factors, headline and primary endpoint.",
    )
    factors: dict[str, str | LabelFactor] = Field(
        default_factory=dict,
        description="Design factors: name -> dotted config "
        "key, or {levels: [...], keys: [...]} for a factor set by several keys (its "
        "level read from the variant's name, LabelFactor); the report facets figures by "
        "them.",
    )

    @field_validator("headline")
    @classmethod
    def _headline(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in figure_ids()]
        if bad:
            raise ValueError(f"unknown figure id(s) {', '.join(map(repr, bad))}; valid: {', '.join(figure_ids())}")
        return v

    resources: ResourcesSpec = Field(
        default_factory=ResourcesSpec, description="Per-run resources on Ray (--backend ray)."
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v != safe_name(v):
            raise ValueError(
                f"must be a plain directory name of letters, digits, '.', '_' or '-', e.g. {safe_name(v)!r}"
            )
        return v

    @field_validator("question")
    @classmethod
    def _question(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must state the question the study asks")
        return v.strip()

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 1:
                raise ValueError("an integer n means seeds 0..n-1 and must be >= 1")
            return list(range(v))
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("give at least one seed")
        if any(s < 0 for s in v):
            raise ValueError("seeds must be >= 0")
        if len(set(v)) != len(v):
            raise ValueError(f"seeds repeat: {v}")
        return v

    @field_validator("variants", mode="before")
    @classmethod
    def _empty_variants(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: ({} if ov is None else ov) for k, ov in v.items()}
        return v

    @field_validator("variants")
    @classmethod
    def _borrows(cls, v: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]] | None:
        """`from: file.yaml` or `from: {file, variant}`, normalised to Borrow's mapping (so the record and the
        expansion read one form)."""
        for name, ov in (v or {}).items():
            if BORROW_KEY not in ov:
                continue
            raw = ov[BORROW_KEY]
            try:
                b = Borrow(file=raw) if isinstance(raw, str) else Borrow.model_validate(raw)
            except ValidationError as e:
                why = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'from'}: {x['msg']}" for x in e.errors())
                raise ValueError(
                    f"variant {name!r}: `from` takes an experiment file (from: other.yaml) or "
                    f"{{file: other.yaml, variant: name}}, got {raw!r} ({why})"
                ) from None
            ov[BORROW_KEY] = b.model_dump()
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: dict | None) -> dict | None:
        if v is not None:
            if not v:
                raise ValueError("grid is empty; give at least one key with a list of values")
            for k, vals in v.items():
                if not vals:
                    raise ValueError(f"grid key {k!r} has no values")
        return v

    @model_validator(mode="after")
    def _shape(self) -> ExperimentSpec:
        for i, e in enumerate(self.secondary):
            bad = [k for k in ("margin", "contrast", "zero_weight_doses", "where") if getattr(e, k) is not None]
            if bad:
                raise ValueError(
                    f"secondary[{i}] ({e.endpoint}): {', '.join(bad)} belong(s) to the primary endpoint only "
                    "(the equivalence test and the dose contrast are the primary test's)"
                )
        if self.base is None and not self.base_overrides:
            raise ValueError("give `base` (a config YAML) and/or `base_overrides`")
        if self.variants is not None and self.grid is not None:
            raise ValueError("give either `variants` (named) or `grid` (a product), not both")
        if self.variants is not None and not self.variants:
            raise ValueError("`variants` is empty")
        for name, level in ((self.primary.where or {}) if self.primary else {}).items():
            f = self.factors.get(name)
            if f is None:
                raise ValueError(
                    f"primary.where: {name!r} is not a design factor (factors: {', '.join(self.factors) or 'none'})"
                )
            if isinstance(f, LabelFactor) and str(level) not in f.levels:
                raise ValueError(f"primary.where.{name}: {level!r} is not one of its levels ({', '.join(f.levels)})")
        return self


def _format_spec_error(err: ValidationError, where: str) -> str:
    lines = []
    fields = sorted(ExperimentSpec.model_fields)
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            valid = sorted(Endpoint.model_fields) if e["loc"][0] in ("primary", "secondary") else fields
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"{loc}: unknown key. {hint}Valid keys: {', '.join(valid)}")
        elif e["type"] == "missing":
            desc = ExperimentSpec.model_fields[str(e["loc"][0])].description if len(e["loc"]) == 1 else ""
            lines.append(f"{loc}: missing (required). {desc}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            got = f" (got {e.get('input')!r})" if e["type"] not in ("value_error",) or len(e["loc"]) else ""
            lines.append(f"{loc or '(top level)'}: {msg}{got}")
    return f"{where}invalid experiment:\n  " + "\n  ".join(lines)


def parse_experiment(raw: dict, where: str = "") -> ExperimentSpec:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{where}the top level must be a mapping (name, question, base, variants/grid, seeds), got {type(raw).__name__}"
        )
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_spec_error(e, where)) from None
