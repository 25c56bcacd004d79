"""The run configuration: the root model, YAML loading with dotted overrides, and the checks across sections.

Each section is declared beside the code it configures, in a light module that imports no torch, transformers or
implementation code: world (rlhfsim/world/config.py, text_config.py: a registry of plug-in worlds, each section
with its own checks against the rest of the run), policy and compute (rlhfsim/models/config.py),
reward, recalibration and surgery (rlhfsim/reward/config.py), optimizer (rlhfsim/optim/config.py),
loop, output and guards (rlhfsim/loop_config.py), audit (rlhfsim/diagnostics/config.py). Every field has its type,
default, range and description there; `docs/config.md` is generated from them (`rlhfsim validate --schema`). Unknown
keys are errors, so a typo can never silently fall back to a default. The sections' names are re-exported here.

    cfg = load_config("configs/quickstart.yaml", overrides=["optimizer.kl_coef=0.1"])
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from rlhfsim.diagnostics.config import AuditConfig, FamilySpec
from rlhfsim.loop_config import GuardsConfig, LoopConfig, OutputConfig
from rlhfsim.models.config import ComputeConfig, LoraSpec, PolicyConfig
from rlhfsim.optim.config import PPOConfig, all_configs
from rlhfsim.reward.config import EarlyStopConfig, RecalibrationConfig, RewardConfig, SurgeryConfig, UtilitySpec
from rlhfsim.schema import ConfigError, Strict
from rlhfsim.world.config import (
    WORLD_SECTIONS,
    AnnotatorConfig,
    GradedWorldConfig,
    SyntheticWorldConfig,
    on_world_registry_change,
)
from rlhfsim.world.text_config import TextWorldConfig  # registers the text world before the union below is built

__all__ = [  # the sections' names stay importable from here (from rlhfsim.config import RewardConfig)
    "AnnotatorConfig",
    "AuditConfig",
    "ComputeConfig",
    "Config",
    "ConfigError",
    "EarlyStopConfig",
    "FamilySpec",
    "GradedWorldConfig",
    "GuardsConfig",
    "LoopConfig",
    "LoraSpec",
    "OptimizerConfig",
    "OutputConfig",
    "PPOConfig",
    "PolicyConfig",
    "RecalibrationConfig",
    "RewardConfig",
    "SurgeryConfig",
    "SyntheticWorldConfig",
    "TextWorldConfig",
    "UtilitySpec",
    "WorldConfig",
    "apply_overrides",
    "config_from_dict",
    "dump_config",
    "load_config",
    "parse_override",
    "read_yaml",
    "set_dotted",
]

OptimizerConfig = Union[all_configs()]  # noqa: UP007  (built from rlhfsim.optim.config.OPTIMIZER_CONFIGS)
WorldConfig = Union[tuple(WORLD_SECTIONS.values())]  # noqa: UP007  (rebuilt by _sync_worlds when a world registers)


def _world_description() -> str:
    return f"The world, by world.name: {', '.join(WORLD_SECTIONS)} (synthetic is the default); rlhfsim/world/config.py."


class Config(Strict):
    """One run."""

    seed: int = Field(0, ge=0, description="Seed of everything random in the run (the world has its own seed).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")
    world: WorldConfig = Field(
        default_factory=SyntheticWorldConfig, discriminator="name", description=_world_description()
    )
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    optimizer: OptimizerConfig = Field(
        default_factory=PPOConfig,
        discriminator="name",
        description="Phase 7, the policy optimiser: name ppo (default), grpo, dr_grpo, rloo or online_dpo, and its fields.",
    )
    loop: LoopConfig = Field(default_factory=LoopConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    guards: GuardsConfig = Field(default_factory=GuardsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    recalibration: RecalibrationConfig = Field(default_factory=RecalibrationConfig)
    surgery: SurgeryConfig = Field(default_factory=SurgeryConfig)
    compute: ComputeConfig = Field(default_factory=ComputeConfig)

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, v: Any) -> Any:
        # a world section without `name` is the synthetic world (as before worlds were a tagged union); an optimizer
        # section without `name` is PPO. Then the audit fields the world sets when the config leaves them out
        # (WorldBase.audit_defaults: the audit section's own defaults read the synthetic world's tables)
        if isinstance(v, dict):
            for key, name in (("world", "synthetic"), ("optimizer", "ppo")):
                if isinstance(v.get(key), dict) and "name" not in v[key]:
                    v = {**v, key: {"name": name, **v[key]}}
            if "ppo" in v:
                raise ValueError(
                    "the `ppo:` section is now `optimizer:` with `name: ppo` (same fields), e.g. "
                    "optimizer: {name: ppo, kl_coef: 0.2}; --set ppo.X=... is --set optimizer.X=..."
                )
            world, audit = v.get("world"), v.get("audit")
            section = WORLD_SECTIONS.get(world.get("name")) if isinstance(world, dict) else None
            if section is not None and (audit is None or isinstance(audit, dict)):
                v = {**v, "audit": {**section.audit_defaults(world), **(audit or {})}}
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        self.world.check_run(self)  # the world's own checks against the other sections (WorldBase.check_run)
        if self.policy.lora is not None and self.policy.checkpoint is None:
            raise ValueError("policy.lora needs policy.checkpoint")
        self._reward_start()
        opt = self.optimizer
        if (
            opt.name == "ppo"
            and opt.value_init == "reward"
            and (self.reward.checkpoint is None or opt.value_model == "shared")
        ):
            raise ValueError("optimizer.value_init: reward needs reward.checkpoint and optimizer.value_model: separate")
        ng = self.loop.noisy_gold
        if self.loop.reward_source == "noisy_gold" and (ng.rho is None) == (ng.sigma is None):
            raise ValueError(
                "loop.reward_source: noisy_gold needs exactly one of loop.noisy_gold.rho (a target within-prompt "
                "rank correlation with gold, calibrated per world) or loop.noisy_gold.sigma (the noise std)"
            )
        if self.loop.reward_source != "noisy_gold" and (ng.rho is not None or ng.sigma is not None):
            raise ValueError(
                f"loop.noisy_gold sets the noise of loop.reward_source: noisy_gold; this run's source is "
                f"{self.loop.reward_source}: drop loop.noisy_gold or set the source"
            )
        self._iterated()
        if self.surgery.profile == "optimum" and self.reward.prompt_aware:
            raise ValueError(
                "surgery.profile optimum is one prompt-independent profile of reward.utility; with "
                "reward.prompt_aware set use surgery.profile: pooled"
            )
        return self

    def _iterated(self) -> None:
        """Issue 36's choices: each needs what it reads."""
        L = self.loop
        if L.buffer in ("equal_share", "prompt_once") and L.buffer_total is None:
            raise ValueError(
                f"loop.buffer: {L.buffer} draws a fixed-size sample; set loop.buffer_total (groups, e.g. 64)"
            )
        if L.buffer not in ("equal_share", "prompt_once") and L.buffer_total is not None:
            raise ValueError(
                f"loop.buffer_total sizes the equal_share / prompt_once sample; loop.buffer is {L.buffer}: "
                "drop loop.buffer_total or set the buffer"
            )
        if L.inner_eval.every > 0 and L.inner_eval.prompts > L.eval_prompts:
            raise ValueError(
                f"loop.inner_eval.prompts ({L.inner_eval.prompts}) is a subset of loop.eval_prompts "
                f"({L.eval_prompts}); lower it"
            )
        if self.reward.across_rounds != "last" and L.reward_source != "learned":
            raise ValueError(
                f"reward.across_rounds {self.reward.across_rounds!r} combines trained reward models; "
                f"loop.reward_source is {L.reward_source}: set it to learned or across_rounds: last"
            )
        # a non-default eta without interpolate is a mistake (not the field being set: resolved configs list every field)
        if L.liti_eta != type(L).model_fields["liti_eta"].default and L.policy_start != "interpolate":
            raise ValueError(
                "loop.liti_eta is the weight of policy_start: interpolate; set loop.policy_start: interpolate or drop it"
            )

    def _reward_start(self) -> None:
        """reward.backbone: policy copies the built-in policy's trunk, so the shapes must match; an offline set needs
        the built-in reward model's trainer (and a world that can write reference answers: the world's check_run)."""
        R, P = self.reward, self.policy
        if R.backbone == "policy":
            if P.checkpoint is not None:
                raise ValueError(
                    "reward.backbone: policy copies the built-in GPT-2 policy's trunk; with policy.checkpoint use reward.backbone: random"
                )
            if (R.n_embd, R.n_head) != (P.n_embd, P.n_head) or R.n_layer > P.n_layer:
                raise ValueError(
                    f"reward.backbone: policy needs reward.n_embd = policy.n_embd ({P.n_embd}), reward.n_head = "
                    f"policy.n_head ({P.n_head}) and reward.n_layer <= policy.n_layer ({P.n_layer}); got "
                    f"n_embd {R.n_embd}, n_head {R.n_head}, n_layer {R.n_layer}"
                )
        if R.offline.comparisons > 0:
            if R.checkpoint is not None:
                raise ValueError(
                    "reward.offline is for the built-in reward model; set reward.offline.comparisons: 0 with reward.checkpoint"
                )

    @property
    def prompt_types(self) -> list[str]:
        return list(getattr(self.world, "prompt_types", ["open", "closed"]))

    @field_validator("output")
    @classmethod
    def _safe_names(cls, v: OutputConfig) -> OutputConfig:
        for field in ("experiment", "variant"):
            name = getattr(v, field)
            if not name or "/" in name or "\\" in name or name in (".", ".."):
                raise ValueError(f"output.{field} must be a plain name without path separators, got {name!r}")
        return v

    def types_check(self, prompt_types: list[str]) -> None:
        """Prompt-aware utilities must name prompt types the world has."""
        for t in self.reward.prompt_aware or {}:
            if t not in prompt_types:
                raise ConfigError(f"reward.prompt_aware: unknown prompt type {t!r}; this world has {prompt_types}")


def _sync_worlds() -> None:
    """Rebuild Config's `world` union from the registry: a world registered after this module was imported (a plug-in
    outside the package, a test's toy world) loads at once, and an unknown name lists it among the valid ones."""
    field = Config.model_fields["world"]
    field.annotation = Union[tuple(WORLD_SECTIONS.values())]  # noqa: UP007
    field.description = _world_description()
    Config.model_rebuild(force=True)


on_world_registry_change(_sync_worlds)


# ----------------------------------------------------------------------------- loading


def _field_model(model, key: str, tag: str | None):
    """The sub-model a config key leads to; for a tagged union (world, world.gold) the member named by `tag`."""
    if model is None or key not in model.model_fields:
        return None, False
    field = model.model_fields[key]
    ann, tag_key = field.annotation, field.discriminator
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    for member in getattr(ann, "__args__", ()):
        if isinstance(member, type) and issubclass(member, BaseModel) and tag_key in member.model_fields:
            if member.model_fields[tag_key].default == tag:
                return member, True  # the tag is the next loc element: skip it
    return None, False


def _clean_loc(loc) -> tuple[list[str], type | None]:
    """pydantic's loc without union tags (world.text.gold -> world.gold), and the model the last key belongs to."""
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    out, model, i = [], Config, 0
    owner = Config
    while i < len(parts):
        owner = model
        out.append(parts[i])
        nxt = parts[i + 1] if i + 1 < len(parts) else None
        model, skip = _field_model(model, parts[i], nxt)
        i += 2 if skip else 1
    return out, owner


def _format_error(err: ValidationError, raw: dict) -> str:
    lines = []
    for e in err.errors():
        parts, owner = _clean_loc(e["loc"])
        loc = ".".join(parts)
        if e["type"] == "extra_forbidden":
            key = parts[-1]
            valid = sorted(owner.model_fields) if owner is not None else []
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"{loc}: unknown key. {hint}Valid keys here: {', '.join(valid)}")
        elif not loc:  # a cross-field check: its message names the fields; the whole config is no help
            lines.append(f"(top level): {e['msg'].removeprefix('Value error, ')}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg} (got {e.get('input')!r})")
    return "invalid config:\n  " + "\n  ".join(lines)


def parse_override(item: str) -> tuple[list[str], Any]:
    """'optimizer.kl_coef=0.1' -> (['optimizer', 'kl_coef'], 0.1); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE with a dotted key, e.g. optimizer.kl_coef=0.1")
    key, value = item.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key.strip().split("."), parsed


# fields renamed since run directories were written (section -> {old: new}); a config that uses an old name loads with a
# deprecation warning (the section's validator), and readers of old config.yaml files see the new names (renamed_keys)
RENAMED = {"compute": ComputeConfig.RENAMED}


def renamed_keys(raw: dict) -> dict:
    """A copy of a raw config (an older run's config.yaml) with renamed fields under their new names, silently: what
    the sweep compares and the report tabulates is then the same for old and new run directories."""
    out = dict(raw)
    for section, names in RENAMED.items():
        sec = out.get(section)
        if isinstance(sec, dict) and any(old in sec for old in names):
            out[section] = {names.get(k, k): v for k, v in sec.items()}
    return out


def set_dotted(raw: dict, key: str, value: Any, where: str = "") -> dict:
    """raw['a']['b'] = value for key 'a.b' (as `--set a.b=...` does: the value replaces what was there)."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{where}{key!r}: not a dotted config key (e.g. optimizer.kl_coef)")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}{key!r}: {p!r} is not a section")
    node[parts[-1]] = value
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    for item in overrides:
        path, value = parse_override(item)
        set_dotted(raw, ".".join(path), value, "--set ")
    return raw


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config {str(path)!r} is a directory; pass the path of a YAML file in it (see configs/)")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass the path of a YAML file (see configs/)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if raw is None:  # an empty file (or only comments) is a mistake, not a request for every default
        raise ConfigError(
            f"{path}: the file is empty; write at least one section (see configs/quickstart.yaml), "
            "or run without a config file for every default"
        )
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections (world, policy, ...), got {type(raw).__name__}"
        )
    return raw


def config_from_dict(raw: dict) -> Config:
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_error(e, raw)) from None
    cfg.types_check(cfg.prompt_types)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    raw = read_yaml(path) if path is not None else {}
    return config_from_dict(apply_overrides(raw, list(overrides or [])))


def dump_config(cfg: Config) -> str:
    """The resolved config, every default filled in, as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
