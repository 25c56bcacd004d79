"""An experiment expanded: its variants, the run config of each variant x seed, and loading a file from disk.

Loading validates the file (spec.py: unknown keys with suggestions) *and* every expanded variant as a run config, so a
typo in a dotted key fails before anything runs; the study's design (design.py) is checked against the expanded
variants.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlhfsim.config import ConfigError, apply_overrides, config_from_dict, dump_config, parse_override, read_yaml
from rlhfsim.experiment.design import check_dose_primary, check_factor_levels, check_phase, check_where
from rlhfsim.experiment.names import dedup_names, grid_variants, safe_name, set_dotted
from rlhfsim.experiment.spec import BORROW_KEY, Borrow, ExperimentSpec, parse_experiment
from rlhfsim.files import atomic_write_text

# sweep sets these itself; an experiment may not
RESERVED_KEYS = ("seed", "output.experiment", "output.variant", "output.dir")


@dataclass
class Variant:
    name: str  # safe directory name
    label: str  # as written in the experiment file (or generated from the grid)
    overrides: dict[str, Any]  # dotted key -> value (variant only)
    borrow: Borrow | None = None  # `from:`: another experiment file runs this arm (experiment/borrow.py)


@dataclass
class RunSpec:
    variant: str
    seed: int
    path: Path
    config: Any  # rlhfsim.config.Config
    config_text: str
    lender: Any = None  # a borrowed arm: its experiment/borrow.Lender (path is in the lender's run folder); else None


@dataclass
class Experiment:
    spec: ExperimentSpec
    path: Path | None
    variants: list[Variant]
    base_raw: dict = field(default_factory=dict)
    lenders: dict[str, Any] = field(default_factory=dict)  # borrowed variant's name -> experiment/borrow.Lender

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def baseline(self) -> str:
        return baseline_name(self.spec.baseline, self.variants)

    def raw_config(
        self, variant: Variant, seed: int, sets: list[str] | None = None, out_root: str | Path = "runs"
    ) -> dict:
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
        """Every variant x seed, seed-major (all variants of seed 0 first: partial sweeps still compare). A borrowed
        variant's runs are the lender's: its directory and config (named for the lender) under the same root."""
        out = []
        for seed in self.spec.seeds:
            for v in self.variants:
                lender = self.lenders.get(v.name)
                if lender is not None:
                    cfg = lender.experiment.config(lender.variant, seed, sets, out_root)
                    path = lender.run_dir(out_root, seed)
                else:
                    cfg = self.config(v, seed, sets, out_root)
                    path = Path(out_root) / self.name / v.name / f"seed{seed}"
                out.append(RunSpec(v.name, seed, path, cfg, dump_config(cfg), lender))
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
        for name, lender in self.lenders.items():  # absolute, so the record under runs/<name>/ finds the lender
            d["variants"][name] = {BORROW_KEY: {"file": str(lender.file.resolve()), "variant": lender.variant.name}}
            d["variants"][name].update(next(v.overrides for v in self.variants if v.name == name))
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


def expand_variants(spec: ExperimentSpec) -> list[Variant]:
    if spec.grid is not None:
        return [Variant(n, n, ov) for n, ov in grid_variants(spec.grid).items()]
    if spec.variants is None:
        return [Variant("default", "default", {})]
    labels = list(spec.variants)
    names = dedup_names([safe_name(n) for n in labels])
    out = []
    for n, label in zip(names, labels):
        overrides = dict(spec.variants[label] or {})
        borrow = overrides.pop(BORROW_KEY, None)
        out.append(Variant(n, label, overrides, Borrow.model_validate(borrow) if borrow is not None else None))
    return out


def _check_keys(overrides: dict[str, Any], where: str) -> None:
    for k in overrides:
        if not isinstance(k, str) or not k or any(not p for p in k.split(".")):
            raise ConfigError(f"{where}{k!r}: not a dotted config key (e.g. optimizer.kl_coef)")
        for r in RESERVED_KEYS:
            if k == r or k.startswith(r + ".") or r.startswith(k + "."):
                hint = "list them under `seeds`" if r == "seed" else "the sweep sets it (use --out for the root)"
                raise ConfigError(f"{where}{k!r}: may not be set by an experiment; {hint}")


def load_experiment(
    path: str | Path, validate_configs: bool = True, sets: list[str] | None = None, borrows: bool = True
) -> Experiment:
    """Read, validate and expand an experiment file.

    validate_configs: build every variant's run config (as `rlhfsim validate` would), so bad dotted
    keys or values fail here, before anything runs.
    borrows: resolve and check the variants borrowed from other files (`from:`, experiment/borrow.py); False when
    this file is loaded as a lender, so two files lending to each other do not load each other forever.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"experiment file {str(path)!r} not found; pass the path of a YAML file (see experiments/)")
    raw = read_yaml(path)
    spec = parse_experiment(raw, f"{path}: ")
    return build_experiment(spec, path, validate_configs, sets, borrows)


def build_experiment(
    spec: ExperimentSpec,
    path: Path | None,
    validate_configs: bool = True,
    sets: list[str] | None = None,
    borrows: bool = True,
) -> Experiment:
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
            raise ConfigError(
                f"{where}base: config file {str(base_path)!r} not found (paths are relative to the experiment file)"
            )
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
    if borrows and any(v.borrow is not None for v in variants):
        from rlhfsim.experiment.borrow import resolve_lenders  # it loads the lenders with load_experiment (this module)

        exp.lenders = resolve_lenders(exp, sets, compare=validate_configs)
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
                raise ConfigError(
                    f"{where}factors.{name}: {key!r} is not a config key ({part!r} not found; valid there: {keys})"
                )
            node = node[part]


def write_experiment_record(exp: Experiment, out_root: Path, sets: list[str] | None = None) -> Path:
    """runs/<experiment>/experiment.yaml: the question, variants and seeds, for reports that read only the runs tree."""
    root = out_root / exp.name
    root.mkdir(parents=True, exist_ok=True)
    src = f"# resolved from {exp.path} by `rlhfsim sweep`; a valid experiment file itself\n" if exp.path else ""
    text = src + yaml.safe_dump(exp.resolved(sets), sort_keys=False, allow_unicode=True)
    atomic_write_text(root / "experiment.yaml", text)
    return root / "experiment.yaml"
