"""The experiment file (format in experiments/README.md): schema, validation and expansion into runs.

Loading validates the file (unknown keys with suggestions) *and* every expanded variant as a run
config, so a typo in a dotted key fails before anything runs.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlhfsim.config import ConfigError, apply_overrides, config_from_dict, dump_config, parse_override, read_yaml
from rlhfsim.experiment.design import check_dose_primary, check_factor_levels, check_phase, check_where
from rlhfsim.experiment.ids import check_endpoint, documented_better, documented_target, figure_ids
from rlhfsim.experiment.names import dedup_names, grid_variants, safe_name, set_dotted
from rlhfsim.files import atomic_write_text

# sweep sets these itself; an experiment may not
RESERVED_KEYS = ("seed", "output.experiment", "output.variant", "output.dir")

# ----------------------------------------------------------------------------- the experiment file


class Endpoint(BaseModel):
    """A summary column the study is judged on, and which direction is better."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str = Field(..., description="A summary.json / summary.csv column, e.g. gold_gain or final/eval/gold.")
    better: Literal["higher", "lower", "closer"] | None = Field(None, description="Which direction of the endpoint is an "
                                                                "improvement; 'closer': closer to the endpoint's documented "
                                                                "target (experiment/metrics.py, e.g. shape_rel's 0), where "
                                                                "'lower' is read the same way. Left out: the direction "
                                                                "experiment/metrics.py declares, else higher.")
    margin: float | None = Field(None, description="Primary only: the equivalence margin m (the endpoint's units; for a dose "
                                 "primary, per unit dose), declared before the run. With it the report runs a TOST and says "
                                 "'equivalent within +-m' or 'inconclusive'; without it, 'no effect detected'.")
    contrast: dict[float, float] | None = Field(None, description="Primary of a dose study only: weights per dose (summing to 0) "
                                                "tested instead of the OLS slope, e.g. {0: -1, 0.5: 0.5, 1: 0.5} (any collapse).")
    zero_weight_doses: list[float] | None = Field(None, description="Primary of a dose study only: the declared doses the primary "
                                                  "test knowingly gives zero weight (e.g. [0.5] for the slope over doses 0, 0.5, 1).")
    where: dict[str, Any] | None = Field(None, description="Primary of a dose study only: restrict the primary test to the arms at "
                                         "these levels of other design factors, e.g. {source: gold}: a seed's value is then the mean "
                                         "over the groups at that level only (e.g. gold x PPO and gold x RLOO), not over every group.")

    @field_validator("margin", mode="before")
    @classmethod
    def _margin(cls, v: Any) -> Any:
        import math

        if v is None:
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"margin must be a positive number in the endpoint's units (the equivalence margin +-m, "
                             f"declared before the run, e.g. margin: 0.02), got {v!r}")
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
            raise ValueError(f"{self.endpoint!r}: better: closer needs a documented target (docs/metrics.md, 'Endpoint directions'); "
                             "declare higher or lower")
        if target is not None and self.better in ("closer", "lower"):  # lower is read as closer to the target
            return self
        doc = documented_better(self.endpoint)
        if doc is not None and doc != self.better:
            doc = f"closer to {target:g}" if target is not None else doc
            raise ValueError(f"{self.endpoint!r}: {doc} is better by definition (docs/metrics.md, 'Endpoint directions'), "
                             f"but the experiment says better: {self.better}; declare better: {documented_better(self.endpoint)}"
                             + (" (or lower, read the same way), or leave better: out" if target is not None else ""))
        return self

class LabelFactor(BaseModel):
    """A design factor that is not one config key (e.g. a ranking source set by several keys): each variant's level is
    the listed level its name starts with (the name itself, or the level followed by '_', '-' or '.')."""

    model_config = ConfigDict(extra="forbid")

    levels: list[str] = Field(..., min_length=2, description="The factor's levels, in order (e.g. [gold, rho0.6, weak]); each "
                              "is the start of the names of its variants (gold_ppo_d0 is at level gold). Every variant must "
                              "match exactly one level.")
    keys: list[str] = Field(default_factory=list, description="Config keys that together set the level (e.g. "
                            "loop.reward_source, reward.backbone): checked at load, the variants of one level agree on all "
                            "of them and two levels differ in at least one, so the names cannot lie about the configs.")

    @field_validator("levels")
    @classmethod
    def _levels(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not x for x in v):
            raise ValueError(f"levels must be distinct non-empty names, got {v}")
        return v


class ResourcesSpec(BaseModel):
    """What each run asks of a Ray cluster (`rlhfsim sweep --backend ray`); the local backend ignores it."""

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(1, gt=0, description="CPUs per run (also its torch thread count, rounded down, at least 1).")
    gpus: float = Field(0, ge=0, description="GPUs per run (Ray sets CUDA_VISIBLE_DEVICES); give 1 with device: cuda.")
    memory_gb: float | None = Field(None, gt=0, description="Memory per run in GiB that Ray reserves (None: no reservation).")


class ExperimentSpec(BaseModel):
    """The experiment file (experiments/README.md)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="Study name: the directory runs/<name>/ (letters, digits, . _ -).")
    question: str = Field(..., description="The question the study asks (shown at the top of the report).")
    base: str | None = Field(None, description="Config YAML every variant starts from, relative to the experiment file.")
    base_overrides: dict[str, Any] = Field(default_factory=dict, description="Dotted overrides for all variants.")
    variants: dict[str, dict[str, Any]] | None = Field(None, description="Named variants: name -> dotted overrides.")
    grid: dict[str, list[Any]] | None = Field(None, description="Product of values per dotted key (auto-named variants).")
    seeds: list[int] = Field(default_factory=lambda: [0], description="Seeds; an integer n means 0..n-1.")
    baseline: str | None = Field(None, description="Variant the report compares against (default: the first).")
    rounds_override: int | None = Field(None, ge=1, description="loop.rounds for every variant (applied last).")
    primary: Endpoint | None = Field(None, description="The endpoint the Answer is computed from: each variant vs the baseline, "
                                     "paired by seed (report/stats.py).")
    secondary: list[Endpoint] = Field(default_factory=list, description="Further endpoints; Holm-corrected across all of "
                                      "them and all variants.")
    headline: list[str] = Field(default_factory=list, description="Figure ids shown in the Answer box (experiment/ids.py figure_ids()).")
    design: Literal["ab", "dose", "overopt", "calibration", "phase", "iterated", "audit"] | None = Field(
        None, description="The study's design kind, which shapes its report page (report/kinds.py): ab (each arm against the "
        "baseline), dose (dose-response), overopt (over-optimisation), calibration (measured quality against the knob), phase "
        "(phase diagram), iterated (iterated RLHF), audit (do the reward-model alarms warn before gold falls). Left out: inferred from the factors, headline and primary endpoint.")
    factors: dict[str, str | LabelFactor] = Field(default_factory=dict, description="Design factors: name -> dotted config "
                                                  "key, or {levels: [...], keys: [...]} for a factor set by several keys (its "
                                                  "level read from the variant's name, LabelFactor); the report facets figures by "
                                                  "them.")

    @field_validator("headline")
    @classmethod
    def _headline(cls, v: list[str]) -> list[str]:
        bad = [x for x in v if x not in figure_ids()]
        if bad:
            raise ValueError(f"unknown figure id(s) {', '.join(map(repr, bad))}; valid: {', '.join(figure_ids())}")
        return v
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Per-run resources on Ray (--backend ray).")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v != safe_name(v):
            raise ValueError(f"must be a plain directory name of letters, digits, '.', '_' or '-', e.g. {safe_name(v)!r}")
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
                raise ValueError(f"secondary[{i}] ({e.endpoint}): {', '.join(bad)} belong(s) to the primary endpoint only "
                                 "(the equivalence test and the dose contrast are the primary test's)")
        if self.base is None and not self.base_overrides:
            raise ValueError("give `base` (a config YAML) and/or `base_overrides`")
        if self.variants is not None and self.grid is not None:
            raise ValueError("give either `variants` (named) or `grid` (a product), not both")
        if self.variants is not None and not self.variants:
            raise ValueError("`variants` is empty")
        for name, level in ((self.primary.where or {}) if self.primary else {}).items():
            f = self.factors.get(name)
            if f is None:
                raise ValueError(f"primary.where: {name!r} is not a design factor (factors: {', '.join(self.factors) or 'none'})")
            if isinstance(f, LabelFactor) and str(level) not in f.levels:
                raise ValueError(f"primary.where.{name}: {level!r} is not one of its levels ({', '.join(f.levels)})")
        return self


@dataclass
class Variant:
    name: str  # safe directory name
    label: str  # as written in the experiment file (or generated from the grid)
    overrides: dict[str, Any]  # dotted key -> value (variant only)


@dataclass
class RunSpec:
    variant: str
    seed: int
    path: Path
    config: Any  # rlhfsim.config.Config
    config_text: str


@dataclass
class Experiment:
    spec: ExperimentSpec
    path: Path | None
    variants: list[Variant]
    base_raw: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def baseline(self) -> str:
        return baseline_name(self.spec.baseline, self.variants)

    def raw_config(self, variant: Variant, seed: int, sets: list[str] | None = None, out_root: str | Path = "runs") -> dict:
        raw = json.loads(json.dumps(self.base_raw))  # deep copy
        for k, v in self.spec.base_overrides.items():
            set_dotted(raw, k, v, "base_overrides: ")
        for k, v in variant.overrides.items():
            set_dotted(raw, k, v, f"variant {variant.label!r}: ")
        apply_overrides(raw, list(sets or []))
        if self.spec.rounds_override is not None:
            set_dotted(raw, "loop.rounds", self.spec.rounds_override)
        raw["seed"] = seed
        set_dotted(raw, "output.dir", str(out_root))
        set_dotted(raw, "output.experiment", self.name)
        set_dotted(raw, "output.variant", variant.name)
        return raw

    def config(self, variant: Variant, seed: int, sets: list[str] | None = None, out_root: str | Path = "runs"):
        try:
            return config_from_dict(self.raw_config(variant, seed, sets, out_root))
        except ConfigError as e:
            where = f"{self.path}: " if self.path else ""
            raise ConfigError(f"{where}variant {variant.label!r} (seed {seed}): {e}") from None

    def runs(self, out_root: str | Path = "runs", sets: list[str] | None = None) -> list[RunSpec]:
        """Every variant x seed, seed-major (all variants of seed 0 first: partial sweeps still compare)."""
        out = []
        for seed in self.spec.seeds:
            for v in self.variants:
                cfg = self.config(v, seed, sets, out_root)
                out.append(RunSpec(v.name, seed, Path(out_root) / self.name / v.name / f"seed{seed}", cfg, dump_config(cfg)))
        return out

    def resolved(self, sets: list[str] | None = None) -> dict:
        """The experiment with variants expanded, `base` absolute and --set overrides folded into base_overrides:
        itself a valid experiment file that reproduces the sweep."""
        d = self.spec.model_dump(exclude_none=True)
        d.pop("grid", None)
        if self.spec.base is not None and self.path is not None:
            d["base"] = str((self.path.parent / self.spec.base).resolve())
        for item in sets or []:
            path, value = parse_override(item)
            key = ".".join(path)
            if not any(key == r or key.startswith(r + ".") for r in RESERVED_KEYS):
                d.setdefault("base_overrides", {})[key] = value
        d["variants"] = {v.name: v.overrides for v in self.variants}
        d["baseline"] = self.baseline
        return d


def baseline_name(baseline: str | None, variants: list[Variant]) -> str:
    if baseline is None:
        return variants[0].name
    for v in variants:
        if baseline in (v.name, v.label):
            return v.name
    names = [v.name for v in variants]
    close = difflib.get_close_matches(baseline, names, n=1)
    hint = f" did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"baseline: {baseline!r} is not a variant.{hint} Variants: {', '.join(names)}")


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
        raise ConfigError(f"{where}the top level must be a mapping (name, question, base, variants/grid, seeds), got {type(raw).__name__}")
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_spec_error(e, where)) from None


def expand_variants(spec: ExperimentSpec) -> list[Variant]:
    if spec.grid is not None:
        return [Variant(n, n, ov) for n, ov in grid_variants(spec.grid).items()]
    if spec.variants is None:
        return [Variant("default", "default", {})]
    labels = list(spec.variants)
    names = dedup_names([safe_name(n) for n in labels])
    return [Variant(n, label, dict(spec.variants[label] or {})) for n, label in zip(names, labels)]


def _check_keys(overrides: dict[str, Any], where: str) -> None:
    for k in overrides:
        if not isinstance(k, str) or not k or any(not p for p in k.split(".")):
            raise ConfigError(f"{where}{k!r}: not a dotted config key (e.g. optimizer.kl_coef)")
        for r in RESERVED_KEYS:
            if k == r or k.startswith(r + ".") or r.startswith(k + "."):
                hint = "list them under `seeds`" if r == "seed" else "the sweep sets it (use --out for the root)"
                raise ConfigError(f"{where}{k!r}: may not be set by an experiment; {hint}")


def load_experiment(path: str | Path, validate_configs: bool = True, sets: list[str] | None = None) -> Experiment:
    """Read, validate and expand an experiment file.

    validate_configs: build every variant's run config (as `rlhfsim validate` would), so bad dotted
    keys or values fail here, before anything runs.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} not found; pass the path of a YAML file (see experiments/)")
    raw = read_yaml(path)
    spec = parse_experiment(raw, f"{path}: ")
    return build_experiment(spec, path, validate_configs, sets)


def build_experiment(spec: ExperimentSpec, path: Path | None, validate_configs: bool = True, sets: list[str] | None = None) -> Experiment:
    where = f"{path}: " if path else ""
    variants = expand_variants(spec)
    _check_keys(spec.base_overrides, f"{where}base_overrides: ")
    for k in spec.grid or {}:
        _check_keys({k: None}, f"{where}grid: ")
    for v in variants:
        _check_keys(v.overrides, f"{where}variant {v.label!r}: ")
    base_raw: dict = {}
    if spec.base is not None:
        base_path = Path(spec.base)
        if not base_path.is_absolute() and path is not None:
            base_path = path.parent / base_path
        if not base_path.is_file():
            raise ConfigError(f"{where}base: config file {str(base_path)!r} not found (paths are relative to the experiment file)")
        base_raw = read_yaml(base_path)
    exp = Experiment(spec, path, variants, base_raw)
    exp.baseline  # noqa: B018  (raises on an unknown baseline)
    check_factor_levels(spec.factors, variants, where)
    values = None
    if validate_configs:
        dumped = {}
        for v in variants:
            cfg = exp.config(v, spec.seeds[0], sets)
            _check_factors(spec.factors, cfg, where)
            dumped[v.name] = cfg.model_dump()
        values = check_factor_levels(spec.factors, variants, where, dumped)
    check_dose_primary(spec, variants, where)
    check_where(spec, variants, values, where)
    check_phase(spec, variants, where)
    return exp


def _check_factors(factors: dict[str, Any], cfg, where: str) -> None:
    """Each factor names a dotted key of the resolved run config (a label factor: each of its keys; a section that is
    null in this config, e.g. loop.noisy_gold of a learned-source arm, ends the path there)."""
    dumped = cfg.model_dump()
    pairs = [(name, key) for name, f in factors.items() for key in ([f] if isinstance(f, str) else f.keys)]
    for name, key in pairs:
        node: Any = dumped
        for part in key.split("."):
            if node is None and not isinstance(factors[name], str):
                break
            if not isinstance(node, dict) or part not in node:
                keys = ", ".join(sorted(node)) if isinstance(node, dict) else "(a value, not a section)"
                raise ConfigError(f"{where}factors.{name}: {key!r} is not a config key ({part!r} not found; valid there: {keys})")
            node = node[part]



def write_experiment_record(exp: Experiment, out_root: Path, sets: list[str] | None = None) -> Path:
    """runs/<experiment>/experiment.yaml: the question, variants and seeds, for reports that read only the runs tree."""
    root = out_root / exp.name
    root.mkdir(parents=True, exist_ok=True)
    src = f"# resolved from {exp.path} by `rlhfsim sweep`; a valid experiment file itself\n" if exp.path else ""
    text = src + yaml.safe_dump(exp.resolved(sets), sort_keys=False, allow_unicode=True)
    atomic_write_text(root / "experiment.yaml", text)
    return root / "experiment.yaml"

