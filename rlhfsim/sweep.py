"""Studies: an experiment file expands to variants x seeds; `rlhfsim sweep` runs them.

    experiments/<study>.yaml  ->  runs/<study>/<variant>/seed<k>/   (one `rlhfsim run` subprocess each)

An experiment file (format in experiments/README.md)::

    name: utility_ablation
    question: Does a prompt-aware utility keep open and closed reward profiles apart?
    base: ../configs/tiny.yaml          # relative to this file
    base_overrides: {loop.rounds: 3}    # dotted keys, applied to every variant
    variants:                           # named variants ...
      bt: {}
      prompt_aware: {reward.prompt_aware: {open: inv, closed: linear}}
    # grid: {ppo.kl_coef: [0.01, 0.1]} # ... or a product of values (auto-named)
    seeds: [0, 1]
    baseline: bt

Loading validates the file (unknown keys with suggestions) *and* every expanded variant as a run
config, so a typo in a dotted key fails before anything runs. Each run is a separate process:
one crash never stops the others, and `--jobs N` runs N at once (one GPU each where there are GPUs).
Finished runs are skipped, killed ones resumed from their checkpoint.
"""

from __future__ import annotations

import difflib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlhfsim.config import ConfigError

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 80
# sweep sets these itself; an experiment may not
RESERVED_KEYS = ("seed", "output.experiment", "output.variant", "output.dir")
# keys that may differ between a run directory's config.yaml and the experiment without losing the run
IGNORED_DIFF_PREFIXES = ("loop.rounds", "output.", "policy.cache_dir")


# ----------------------------------------------------------------------------- names


def safe_name(text: str) -> str:
    """A directory name made of [A-Za-z0-9._-] only: no separators, no '..', not hidden, not empty."""
    s = SAFE_CHARS.sub("_", str(text).strip())
    s = re.sub(r"\.{2,}", ".", s)  # never '..'
    s = re.sub(r"^[._-]+", "", s).rstrip(".")  # not hidden, not option-like
    if len(s) > MAX_NAME:
        import hashlib

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
    """Shortest unique dotted suffix of each key: ppo.kl_coef -> kl_coef unless another key ends the same way."""
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


def set_dotted(raw: dict, key: str, value: Any, where: str = "") -> dict:
    """raw['a']['b'] = value for key 'a.b' (as `--set a.b=...` does: the value replaces what was there)."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"{where}{key!r}: not a dotted config key (e.g. ppo.kl_coef)")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{where}{key!r}: {p!r} is not a section")
    node[parts[-1]] = value
    return raw


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


# ----------------------------------------------------------------------------- the experiment file


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
    def _shape(self) -> "ExperimentSpec":
        if self.base is None and not self.base_overrides:
            raise ValueError("give `base` (a config YAML) and/or `base_overrides`")
        if self.variants is not None and self.grid is not None:
            raise ValueError("give either `variants` (named) or `grid` (a product), not both")
        if self.variants is not None and not self.variants:
            raise ValueError("`variants` is empty")
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
        from rlhfsim.config import apply_overrides

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
        from rlhfsim.config import config_from_dict

        try:
            return config_from_dict(self.raw_config(variant, seed, sets, out_root))
        except ConfigError as e:
            where = f"{self.path}: " if self.path else ""
            raise ConfigError(f"{where}variant {variant.label!r} (seed {seed}): {e}") from None

    def runs(self, out_root: str | Path = "runs", sets: list[str] | None = None) -> list[RunSpec]:
        """Every variant x seed, seed-major (all variants of seed 0 first: partial sweeps still compare)."""
        from rlhfsim.config import dump_config

        out = []
        for seed in self.spec.seeds:
            for v in self.variants:
                cfg = self.config(v, seed, sets, out_root)
                out.append(RunSpec(v.name, seed, Path(out_root) / self.name / v.name / f"seed{seed}", cfg, dump_config(cfg)))
        return out

    def resolved(self, sets: list[str] | None = None) -> dict:
        """The experiment with variants expanded, `base` absolute and --set overrides folded into base_overrides:
        itself a valid experiment file that reproduces the sweep."""
        from rlhfsim.config import parse_override

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
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"{loc}: unknown key. {hint}Valid keys: {', '.join(fields)}")
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
            raise ConfigError(f"{where}{k!r}: not a dotted config key (e.g. ppo.kl_coef)")
        for r in RESERVED_KEYS:
            if k == r or k.startswith(r + ".") or r.startswith(k + "."):
                hint = "list them under `seeds`" if r == "seed" else "the sweep sets it (use --out for the root)"
                raise ConfigError(f"{where}{k!r}: may not be set by an experiment; {hint}")


def load_experiment(path: str | Path, validate_configs: bool = True, sets: list[str] | None = None) -> Experiment:
    """Read, validate and expand an experiment file.

    validate_configs: build every variant's run config (as `rlhfsim validate` would), so bad dotted
    keys or values fail here, before anything runs.
    """
    from rlhfsim.config import read_yaml

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
        from rlhfsim.config import read_yaml

        base_path = Path(spec.base)
        if not base_path.is_absolute() and path is not None:
            base_path = path.parent / base_path
        if not base_path.is_file():
            raise ConfigError(f"{where}base: config file {str(base_path)!r} not found (paths are relative to the experiment file)")
        base_raw = read_yaml(base_path)
    exp = Experiment(spec, path, variants, base_raw)
    exp.baseline  # noqa: B018  (raises on an unknown baseline)
    if validate_configs:
        for v in variants:
            exp.config(v, spec.seeds[0], sets)
    return exp


# ----------------------------------------------------------------------------- skip / resume / start


@dataclass
class Decision:
    action: str  # "skip" | "resume" | "start" | "conflict"
    reason: str


def read_summary(run_dir: Path) -> dict | None:
    try:
        d = json.loads((run_dir / "summary.json").read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def checkpoint_round(run_dir: Path) -> int | None:
    """Round of the newest complete checkpoint (latest, or previous if a kill hit between renames)."""
    for cand in ("latest", "previous"):
        ck = run_dir / "checkpoints" / cand
        if (ck / "round.json").is_file() and (ck / "state.pt").is_file():
            try:
                return int(json.loads((ck / "round.json").read_text())["round"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    return None


def config_differences(run_dir: Path, cfg_dict: dict) -> list[str] | None:
    """Dotted keys where the run's config.yaml differs from cfg_dict (rounds and output.* ignored); None if unreadable."""
    try:
        old = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(old, dict):
        return None
    a, b = flatten(old), flatten(cfg_dict)
    keys = sorted(set(a) | set(b))
    return [k for k in keys if not k.startswith(IGNORED_DIFF_PREFIXES) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def decide(run_dir: str | Path, cfg_dict: dict) -> Decision:
    """What the sweep does with one run directory, given the config it should hold.

    skip:     summary.json says the configured number of rounds finished (same config);
    resume:   a checkpoint exists (killed, or rounds were raised since) and the config still matches;
    start:    nothing worth keeping (no dir, only config.yaml, no checkpoint);
    conflict: finished or checkpointed results of a *different* config (kept; --restart-changed reruns).
    """
    run_dir = Path(run_dir)
    rounds = int(cfg_dict["loop"]["rounds"])
    summary = read_summary(run_dir)
    ck = checkpoint_round(run_dir)
    if summary is None and ck is None:
        if not run_dir.exists():
            return Decision("start", "new")
        return Decision("start", "no summary.json and no checkpoint")
    diff = config_differences(run_dir, cfg_dict)
    if diff is None:
        diff = ["config.yaml (missing or unreadable)"]
    if diff:
        shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
        return Decision("conflict", f"results of a different config ({shown}); remove the directory or pass --restart-changed")
    done = None
    if summary is not None:
        try:
            done = int(summary.get("rounds_completed"))
        except (TypeError, ValueError):
            done = None
    if done is not None and done == rounds:
        return Decision("skip", f"finished ({done} rounds)")
    if done is not None and done > rounds:
        return Decision("conflict", f"has {done} rounds, more than the {rounds} configured; remove it or pass --restart-changed")
    if ck is not None and ck <= rounds:
        return Decision("resume", f"checkpoint at round {ck} of {rounds}")
    if ck is not None:
        return Decision("conflict", f"checkpoint at round {ck}, beyond the {rounds} configured; remove it or pass --restart-changed")
    return Decision("start", f"summary.json has {done} of {rounds} rounds and there is no checkpoint")


RUN_OUTPUTS = ("metrics.jsonl", "ppo_steps.jsonl", "summary.json", "run.log")
RUN_SUBDIRS = ("rewards", "samples", "checkpoints")


def clear_run_dir(run_dir: Path) -> None:
    """Remove a run's outputs (only the names a run writes), so stale files never mix with a fresh start."""
    for name in RUN_OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_SUBDIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


# ----------------------------------------------------------------------------- resources


def visible_gpus() -> list[str]:
    """GPU ids a child may be pinned to: CUDA_VISIBLE_DEVICES if set, else torch's count (no CUDA context made)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch / no driver: CPU only
        return []


def child_env(slot: int, jobs: int, gpus: list[str], cores: int | None = None) -> dict[str, str]:
    """Environment of the child in job slot `slot`: its share of CPU threads, and its own GPU where there are GPUs."""
    cores = cores or os.cpu_count() or 1
    threads = str(max(1, cores // max(1, jobs)))
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, RLHFSIM_THREADS=threads, COLUMNS="160", PYTHONUNBUFFERED="1")
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def run_command(run_dir: Path, action: str) -> list[str]:
    base = [sys.executable, "-m", "rlhfsim", "run"]
    if action == "resume":
        return base + ["--resume", str(run_dir)]
    return base + [str(run_dir / "config.yaml"), "--out", str(run_dir)]


def tail_reason(log_path: Path, n: int = 3, max_chars: int = 400) -> str:
    """Why a child failed, from the end of its run.log: the exception line(s) of a traceback, else the last lines."""
    try:
        lines = [ln.rstrip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no run.log)"
    if not lines:
        return "(run.log is empty)"
    exc = [i for i, ln in enumerate(lines) if re.match(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b|error:)", ln.strip())]
    if exc:
        text = " ".join(ln.strip() for ln in lines[exc[-1]:])
    else:
        text = "\n".join(lines[-n:])
    text = re.sub(r"[ \t]+", " ", text)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def metrics_round(run_dir: Path) -> int:
    """Highest round logged in metrics.jsonl (-1 if none): progress of a running child."""
    try:
        text = (run_dir / "metrics.jsonl").read_text()
    except OSError:
        return -1
    best = -1
    for line in text.splitlines():
        try:
            best = max(best, int(json.loads(line)["round"]))
        except (ValueError, KeyError, TypeError):
            continue
    return best


def sft_group(cfg) -> str:
    """Runs whose SFT warm start is the same (world + policy; the SFT seed is fixed): one trains it, the others load it."""
    pol = cfg.policy.model_dump(mode="json", exclude={"temperature"})
    return json.dumps({"world": cfg.world.model_dump(mode="json"), "policy": pol}, sort_keys=True)


# ----------------------------------------------------------------------------- the runner


@dataclass
class Job:
    spec: RunSpec
    decision: Decision
    status: str = "pending"  # pending | running | finished | failed | skipped
    detail: str = ""
    seconds: float = 0.0
    proc: Any = None
    slot: int = -1
    started: float = 0.0
    log: Any = None
    task: Any = None


def plan(exp: Experiment, out_root: str | Path, sets: list[str] | None = None) -> list[Job]:
    jobs = []
    for rs in exp.runs(out_root, sets):
        cfg_dict = rs.config.model_dump(mode="json")
        jobs.append(Job(rs, decide(rs.path, cfg_dict)))
    return jobs


def write_experiment_record(exp: Experiment, out_root: Path, sets: list[str] | None = None) -> Path:
    """runs/<experiment>/experiment.yaml: the question, variants and seeds, for reports that read only the runs tree."""
    root = out_root / exp.name
    root.mkdir(parents=True, exist_ok=True)
    src = f"# resolved from {exp.path} by `rlhfsim sweep`; a valid experiment file itself\n" if exp.path else ""
    text = src + yaml.safe_dump(exp.resolved(sets), sort_keys=False, allow_unicode=True)
    from rlhfsim.tracking import atomic_write_text

    atomic_write_text(root / "experiment.yaml", text)
    return root / "experiment.yaml"


def execute(jobs: list[Job], n_jobs: int, console=None, poll_s: float = 0.3, gpus: list[str] | None = None) -> list[Job]:
    """Run the start/resume jobs, n_jobs at once, each in its own `rlhfsim run` process."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rlhfsim.tracking import atomic_write_text

    gpus = visible_gpus() if gpus is None else gpus
    todo = [j for j in jobs if j.decision.action in ("start", "resume")]
    for j in jobs:
        if j.decision.action == "skip":
            j.status, j.detail = "skipped", j.decision.reason
        elif j.decision.action == "conflict":
            j.status, j.detail = "failed", j.decision.reason
    warm: set[str] = set()  # SFT groups whose warm start exists (a run of the group logged round 0)
    for j in jobs:
        if j.decision.action == "skip" or metrics_round(j.spec.path) >= 0:
            warm.add(sft_group(j.spec.config))
    queue = list(todo)
    running: list[Job] = []
    free_slots = list(range(n_jobs))
    total_rounds = sum(j.spec.config.loop.rounds for j in todo)

    def launch(job: Job) -> None:
        job.slot = free_slots.pop(0)
        d = job.spec.path
        if job.decision.action == "start":
            clear_run_dir(d)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "config.yaml", job.spec.config_text)
        job.log = open(d / "run.log", "a" if job.decision.action == "resume" else "w")
        job.log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(run_command(d, job.decision.action))}\n")
        job.log.flush()
        job.proc = subprocess.Popen(
            run_command(d, job.decision.action), stdout=job.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=child_env(job.slot, n_jobs, gpus),
        )
        job.started = time.perf_counter()
        job.status = "running"
        running.append(job)

    def startable(job: Job) -> bool:
        g = sft_group(job.spec.config)
        if g in warm:
            return True
        # another run of the same group is training the SFT policy: wait for its round 0 rather than train it twice
        return not any(sft_group(r.spec.config) == g for r in running)

    def finish(job: Job, rc: int) -> None:
        job.seconds = time.perf_counter() - job.started
        job.log.close()
        running.remove(job)
        free_slots.append(job.slot)
        free_slots.sort()
        summary = read_summary(job.spec.path)
        want = job.spec.config.loop.rounds
        if rc == 0 and summary is not None and summary.get("rounds_completed") == want:
            job.status = "finished"
            g = summary.get("gold_final")
            job.detail = f"gold {g:.3f}" if isinstance(g, (int, float)) else "ok"
        else:
            job.status = "failed"
            if rc < 0:
                import signal

                try:
                    why = f"killed by {signal.Signals(-rc).name}"
                except ValueError:
                    why = f"killed by signal {-rc}"
                last = tail_reason(job.spec.path / "run.log", n=1, max_chars=160)
                job.detail = f"{why}; last output: {last} (full log: {job.spec.path / 'run.log'})"
            else:
                why = f"exit code {rc}" if rc != 0 else "exited 0 without a complete summary.json"
                job.detail = f"{why}: {tail_reason(job.spec.path / 'run.log')} (full log: {job.spec.path / 'run.log'})"

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console, transient=False) as prog:
        overall = prog.add_task(f"runs ({len(todo)} to run, {n_jobs} at once)", total=len(todo))
        rounds_task = prog.add_task("rounds", total=max(total_rounds, 1))
        done_rounds: dict[int, int] = {}
        try:
            while queue or running:
                for job in list(running):
                    rc = job.proc.poll()
                    r = metrics_round(job.spec.path)
                    if r >= 0:
                        warm.add(sft_group(job.spec.config))
                    if job.task is not None:
                        prog.update(job.task, completed=max(r, 0))
                    done_rounds[id(job)] = max(r, 0)
                    if rc is not None:
                        finish(job, rc)
                        if job.task is not None:
                            prog.remove_task(job.task)
                        prog.advance(overall)
                        prog.console.print(f"{'[green]' if job.status == 'finished' else '[red]'}{job.status}[/] "
                                           f"{escape(job.spec.variant)}/seed{job.spec.seed} in {job.seconds:.0f} s: {escape(job.detail)}",
                                           highlight=False)
                while free_slots and queue:
                    nxt = next((j for j in queue if startable(j)), None)
                    if nxt is None:
                        break
                    queue.remove(nxt)
                    try:
                        launch(nxt)
                    except OSError as e:  # e.g. the run directory cannot be written: this run fails, the others go on
                        if nxt in running:
                            running.remove(nxt)
                        if nxt.slot >= 0 and nxt.slot not in free_slots:
                            free_slots.append(nxt.slot)
                        nxt.status, nxt.detail = "failed", f"could not start: {e}"
                        prog.advance(overall)
                        continue
                    nxt.task = prog.add_task(f"  {nxt.spec.variant}/seed{nxt.spec.seed} ({nxt.decision.action})",
                                             total=nxt.spec.config.loop.rounds)
                prog.update(rounds_task, completed=sum(done_rounds.values()))
                if queue or running:
                    time.sleep(poll_s)
        except KeyboardInterrupt:
            for job in running:
                job.proc.terminate()
            for job in list(running):
                try:
                    job.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    job.proc.kill()
                    job.proc.wait()
                finish(job, job.proc.returncode)
                job.detail = "interrupted; run the sweep again to resume. " + job.detail
            for job in queue:
                job.status, job.detail = "failed", "not started (interrupted)"
            raise
    return jobs


def results_table(jobs: list[Job], title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title)
    for c in ("variant", "seed", "status", "s", "detail"):
        t.add_column(c, justify="right" if c in ("seed", "s") else "left", overflow="fold")
    style = {"finished": "green", "failed": "red", "skipped": "dim", "pending": "yellow", "running": "yellow"}
    for j in jobs:
        t.add_row(escape(j.spec.variant), str(j.spec.seed), f"[{style.get(j.status, 'default')}]{j.status}[/]",
                  f"{j.seconds:.0f}" if j.seconds else "-", escape(j.detail))
    return t


def plan_table(jobs: list[Job], title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title)
    for c in ("variant", "seed", "directory", "action", "why"):
        t.add_column(c, overflow="fold")
    for j in jobs:
        t.add_row(escape(j.spec.variant), str(j.spec.seed), escape(str(j.spec.path)), j.decision.action, escape(j.decision.reason))
    return t


# ----------------------------------------------------------------------------- CLI


def cmd_sweep(args) -> int:
    from rich.console import Console

    console = Console()
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1")
    exp = load_experiment(args.experiment, sets=args.set)
    out_root = Path(args.out)
    jobs = plan(exp, out_root, args.set)
    if args.restart_changed:
        for j in jobs:
            if j.decision.action == "conflict":
                j.decision = Decision("start", "restarted: " + j.decision.reason.split(";")[0])
    n_var, n_seed = len(exp.variants), len(exp.spec.seeds)
    counts = {a: sum(j.decision.action == a for j in jobs) for a in ("start", "resume", "skip", "conflict")}
    head = (f"[bold]rlhfsim sweep[/bold] {exp.name}: {n_var} variants x {n_seed} seeds = {len(jobs)} runs -> {out_root / exp.name}  "
            f"(start {counts['start']}, resume {counts['resume']}, skip {counts['skip']}, conflict {counts['conflict']})")
    console.print(head, highlight=False)
    if args.dry_run:
        console.print(plan_table(jobs, f"{exp.name}: plan (dry run, nothing written)"))
        for v in exp.variants:
            console.print(f"  {v.name}: {' '.join(to_set_args(v.overrides)) or '(base config)'}", highlight=False)
        return 0
    write_experiment_record(exp, out_root, args.set)
    t0 = time.perf_counter()
    try:
        execute(jobs, args.jobs, console=console)
    except KeyboardInterrupt:
        console.print(results_table(jobs, f"{exp.name}: interrupted"))
        return 130
    wall = time.perf_counter() - t0
    console.print(results_table(jobs, f"{exp.name}: {len(jobs)} runs in {wall:.0f} s"))
    n_fail = sum(j.status == "failed" for j in jobs)
    n_ok = sum(j.status == "finished" for j in jobs)
    n_skip = sum(j.status == "skipped" for j in jobs)
    console.print(f"{n_ok} finished, {n_fail} failed, {n_skip} skipped; report: rlhfsim report {args.experiment} "
                  f"--runs {out_root} -o reports/{exp.name}/", highlight=False)
    return 1 if n_fail else 0


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run an experiment: every variant x seed, in parallel processes")
    p.add_argument("experiment", help="experiment YAML (see experiments/README.md)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="runs at once (each gets cores/jobs threads, one GPU each where there are GPUs)")
    p.add_argument("--out", default="runs", help="root of run directories (default: runs): runs/<experiment>/<variant>/seed<k>/")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override for every run, e.g. device=cpu")
    p.add_argument("--dry-run", action="store_true", help="show what would run, skip or resume, and stop")
    p.add_argument("--restart-changed", action="store_true", help="rerun from scratch runs whose results come from a different config")
    p.set_defaults(func=cmd_sweep)
