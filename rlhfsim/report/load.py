"""Run directories -> tidy pandas tables. Reads only what runs leave behind (see rlhfsim.tracking).

    study = load_study(["runs/utility_ablation"])        # or run dirs, or experiments/utility_ablation.yaml
    study.metrics          # one row per (run, round): experiment, variant, seed, run, round, <metric columns>
    study.summary          # one row per run: summary.json fields + final metrics + status
    study.rewards([1, 8])  # per-completion rewards of the given rounds (rewards/round_XXX.parquet)
    study.missing          # what could not be read, in words (the report's "Missing data" section)

Nothing here fails on a partial run: a missing or unreadable file becomes a line in `missing`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from rlhfsim.config import ConfigError

RUN_MARKERS = ("config.yaml", "metrics.jsonl", "summary.json", "rewards")
SEED_DIR = re.compile(r"^seed(\d+)$")
# config keys that name a run rather than describe what it does
CONFIG_IDENTITY_KEYS = ("seed", "output.experiment", "output.variant", "output.dir")
MAX_DEPTH = 4


def is_run_dir(p: Path) -> bool:
    return p.is_dir() and (bool(SEED_DIR.match(p.name)) or any((p / m).exists() for m in RUN_MARKERS))


def find_run_dirs(root: Path, depth: int = 0) -> list[Path]:
    """Run directories at or below root (not descending into a run directory)."""
    if is_run_dir(root):
        return [root]
    if depth >= MAX_DEPTH or not root.is_dir():
        return []
    out: list[Path] = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            out.extend(find_run_dirs(child, depth + 1))
    return out


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: d}


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # torn last line of a killed run
        if isinstance(row, dict):
            rows.append(row)
    return rows


@dataclass
class RunData:
    path: Path
    experiment: str
    variant: str
    seed: int | None
    config: dict | None = None
    metrics: pd.DataFrame | None = None
    summary: dict | None = None
    reward_rounds: list[int] = field(default_factory=list)
    configured_rounds: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.variant}/seed{self.seed if self.seed is not None else '?'}"

    @property
    def rounds_logged(self) -> int | None:
        if self.metrics is None or self.metrics.empty or "round" not in self.metrics:
            return None
        return int(self.metrics["round"].max())

    @property
    def status(self) -> str:
        if self.summary is not None:
            done = self.summary.get("rounds_completed")
            if self.configured_rounds is not None and isinstance(done, (int, float)) and done < self.configured_rounds:
                return "partial"
            return "finished"
        if self.metrics is not None and not self.metrics.empty:
            return "unfinished"
        return "empty"


def load_run(path: str | Path, experiment_hint: str | None = None) -> RunData:
    """One run directory; every problem is recorded in .problems instead of raised."""
    path = Path(path)
    m = SEED_DIR.match(path.name)
    run = RunData(path, experiment_hint or path.parent.parent.name or "runs", path.parent.name or "default", int(m.group(1)) if m else None)

    cfg_path = path / "config.yaml"
    if cfg_path.is_file():
        try:
            cfg = yaml.safe_load(cfg_path.read_text())
            if not isinstance(cfg, dict):
                raise ValueError("not a mapping")
            run.config = cfg
            out = cfg.get("output") or {}
            run.variant = str(out.get("variant") or run.variant)
            run.experiment = str(out.get("experiment") or run.experiment)
            if isinstance(cfg.get("seed"), int):
                run.seed = cfg["seed"]
            rounds = (cfg.get("loop") or {}).get("rounds")
            run.configured_rounds = int(rounds) if isinstance(rounds, int) else None
        except (OSError, ValueError, yaml.YAMLError) as e:
            run.problems.append(f"config.yaml unreadable ({e}); variant and seed taken from the path")
    else:
        run.problems.append("no config.yaml: variant and seed taken from the path; left out of the config diff")

    mpath = path / "metrics.jsonl"
    if mpath.is_file():
        try:
            rows = _read_jsonl(mpath)
        except OSError as e:
            rows = []
            run.problems.append(f"metrics.jsonl unreadable ({e})")
        rows = [r for r in rows if isinstance(r.get("round"), (int, float))]
        if rows:
            df = pd.DataFrame(rows)
            df = df.drop_duplicates("round", keep="last").sort_values("round").reset_index(drop=True)
            for c in df.columns:
                if df[c].dtype == object:
                    conv = pd.to_numeric(df[c], errors="coerce")
                    if conv.notna().sum() == df[c].notna().sum():
                        df[c] = conv
            run.metrics = df
        else:
            run.problems.append("metrics.jsonl has no complete rows: left out of every curve")
    else:
        run.problems.append("no metrics.jsonl: left out of every curve")

    spath = path / "summary.json"
    if spath.is_file():
        try:
            s = json.loads(spath.read_text())
            if not isinstance(s, dict):
                raise ValueError("not an object")
            run.summary = s
        except (OSError, ValueError) as e:
            run.problems.append(f"summary.json unreadable ({e}): left out of the final table")
    else:
        logged = run.rounds_logged
        of = f" of {run.configured_rounds}" if run.configured_rounds is not None else ""
        done = f"{logged}{of} rounds logged" if logged is not None else "no rounds logged"
        run.problems.append(f"no summary.json (unfinished: {done}): left out of the final table")

    if run.summary is not None and run.configured_rounds is not None:
        done = run.summary.get("rounds_completed")
        if isinstance(done, (int, float)) and done < run.configured_rounds:
            run.problems.append(f"only {int(done)} of {run.configured_rounds} configured rounds completed")

    rdir = path / "rewards"
    if rdir.is_dir():
        for f in sorted(rdir.glob("round_*.parquet")):
            try:
                run.reward_rounds.append(int(f.stem.split("_", 1)[1]))
            except ValueError:
                continue
    if not run.reward_rounds:
        run.problems.append("no rewards/round_XXX.parquet: left out of the reward distributions")
    elif run.metrics is not None:
        lost = sorted(set(int(r) for r in run.metrics["round"]) - set(run.reward_rounds))
        if lost:
            run.problems.append(f"no rewards parquet for rounds {_ranges(lost)}")
    return run


def _ranges(xs: list[int]) -> str:
    if not xs:
        return ""
    out, start, prev = [], xs[0], xs[0]
    for x in xs[1:] + [None]:
        if x is not None and x == prev + 1:
            prev = x
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if x is not None:
            start = prev = x
    return ", ".join(out)


@dataclass
class Study:
    name: str
    question: str | None
    baseline: str
    variants: list[str]
    runs: list[RunData]
    missing: list[str]
    sources: list[str]
    expected_seeds: list[int] | None = None
    variant_overrides: dict[str, dict] = field(default_factory=dict)

    # ------------------------------------------------------------------ tables

    @property
    def metrics(self) -> pd.DataFrame:
        """Long over runs, wide over metrics: one row per run and round."""
        frames = []
        for r in self.runs:
            if r.metrics is None:
                continue
            df = r.metrics.copy()
            df.insert(0, "run", str(r.path))
            df.insert(0, "seed", r.seed)
            df.insert(0, "variant", r.variant)
            df.insert(0, "experiment", r.experiment)
            frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["experiment", "variant", "seed", "run", "round"])
        out = pd.concat(frames, ignore_index=True, sort=False)
        if "eval/sqrt_kl" not in out and "eval/kl" in out:
            out["eval/sqrt_kl"] = np.sqrt(out["eval/kl"].astype(float).clip(lower=0))
        return out

    @property
    def summary(self) -> pd.DataFrame:
        """One row per run: identity, status, summary.json fields, then final metrics (prefixed final/)."""
        rows = []
        for r in self.runs:
            row: dict[str, Any] = {
                "experiment": r.experiment, "variant": r.variant, "seed": r.seed, "status": r.status,
                "rounds_configured": r.configured_rounds, "rounds_logged": r.rounds_logged, "run": str(r.path),
            }
            for k, v in (r.summary or {}).items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    row[k] = v
            if r.metrics is not None and not r.metrics.empty:
                last = r.metrics.iloc[-1]
                for k, v in last.items():
                    if k != "round" and not str(k).startswith("time/") and isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                        row[f"final/{k}"] = v
            rows.append(row)
        return pd.DataFrame(rows)

    def rewards(self, rounds: list[int]) -> pd.DataFrame:
        """Per-completion rewards of the given rounds for every run that has them (unreadable files are noted)."""
        frames = []
        for r in self.runs:
            for rd in rounds:
                if rd not in r.reward_rounds:
                    continue
                f = r.path / "rewards" / f"round_{rd:03d}.parquet"
                try:
                    df = pd.read_parquet(f)
                except Exception as e:  # noqa: BLE001 - any unreadable file is a missing-data note
                    self.note(f"{r.label} ({r.path}): rewards/{f.name} unreadable ({type(e).__name__})")
                    continue
                df = df.copy()
                df["round"] = rd
                df.insert(0, "seed", r.seed)
                df.insert(0, "variant", r.variant)
                df.insert(0, "run", str(r.path))
                frames.append(df)
        if not frames:
            return pd.DataFrame()
        return pd.concat(frames, ignore_index=True, sort=False)

    def note(self, msg: str) -> None:
        if msg not in self.missing:
            self.missing.append(msg)

    def config_diff(self) -> tuple[pd.DataFrame, dict]:
        """(settings x variants table of what differs between variants, {setting: value} common to all).

        Compared section by section: where a setting is a section in one config and a value (e.g. null)
        in another, the whole setting is one row. Seeds and run names are left out.
        """
        per_variant: dict[str, list[dict]] = {}
        for r in self.runs:
            if r.config is not None:
                cfg = json.loads(json.dumps(r.config, default=str))
                for k in CONFIG_IDENTITY_KEYS:
                    node, *path = k.split(".")
                    if not path:
                        cfg.pop(node, None)
                    elif isinstance(cfg.get(node), dict):
                        cfg[node].pop(path[0], None)
                per_variant.setdefault(r.variant, []).append(cfg)
        variants = [v for v in self.variants if v in per_variant]
        rows: list[dict] = []
        common: dict[str, str] = {}
        absent = object()

        def walk(nodes: dict[str, list], prefix: str) -> None:
            flat = [x for xs in nodes.values() for x in xs]
            if all(isinstance(x, dict) and x for x in flat):
                keys = sorted({k for x in flat for k in x})
                for k in keys:
                    walk({v: [x.get(k, absent) for x in xs] for v, xs in nodes.items()}, f"{prefix}.{k}" if prefix else k)
                return
            cells = {}
            for v, xs in nodes.items():
                shown = sorted({"(absent)" if x is absent else _show(x) for x in xs})
                cells[v] = shown[0] if len(shown) == 1 else "mixed: " + " / ".join(shown)
            if len(set(cells.values())) > 1 or any(c.startswith("mixed: ") for c in cells.values()):
                rows.append({"setting": prefix, **cells})
            elif cells:
                common[prefix] = next(iter(cells.values()))

        if variants:
            walk({v: per_variant[v] for v in variants}, "")
        return pd.DataFrame(rows, columns=["setting", *variants]), common


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=False)
    return "null" if v is None else str(v)


# ----------------------------------------------------------------------------- inputs -> study


@dataclass
class _Record:
    question: str | None = None
    name: str | None = None
    baseline: str | None = None
    variants: list[str] | None = None
    seeds: list[int] | None = None
    overrides: dict[str, dict] | None = None
    root: Path | None = None


def _read_record(path: Path, validate: bool = False) -> _Record:
    """An experiment file (or the runs root's experiment.yaml) -> what the report needs from it."""
    from rlhfsim.sweep import baseline_name, expand_variants, parse_experiment

    from rlhfsim.config import read_yaml

    raw = read_yaml(path)
    spec = parse_experiment(raw, f"{path}: ")
    variants = expand_variants(spec)
    try:
        baseline = baseline_name(spec.baseline, variants)
    except ConfigError:
        if validate:
            raise
        baseline = None
    return _Record(spec.question, spec.name, baseline, [v.name for v in variants], list(spec.seeds),
                   {v.name: v.overrides for v in variants})


def load_study(inputs: list[str | Path], runs_root: str | Path = "runs", baseline: str | None = None) -> Study:
    """Resolve run directories, experiment roots and experiment files into one Study."""
    if not inputs:
        raise ConfigError("rlhfsim report: give run directories, experiment roots (runs/<experiment>) or experiment YAML files")
    run_dirs: list[Path] = []
    records: list[_Record] = []
    missing: list[str] = []
    sources: list[str] = []
    for item in inputs:
        p = Path(item)
        sources.append(str(p))
        if p.is_file():
            if p.suffix not in (".yaml", ".yml"):
                raise ConfigError(f"{p}: not an experiment YAML file nor a run directory")
            rec = _read_record(p, validate=True)
            rec.root = Path(runs_root) / str(rec.name)
            records.append(rec)
            if not rec.root.is_dir():
                missing.append(f"{rec.root}: no runs of experiment {rec.name!r} yet (run `rlhfsim sweep {p}`)")
                continue
            run_dirs.extend(find_run_dirs(rec.root))
        elif p.is_dir():
            if (p / "experiment.yaml").is_file() and not is_run_dir(p):
                try:
                    rec = _read_record(p / "experiment.yaml")
                    rec.root = p
                    records.append(rec)
                except ConfigError as e:
                    missing.append(f"{p / 'experiment.yaml'} unreadable ({str(e).splitlines()[0]})")
            found = find_run_dirs(p)
            if not found:
                missing.append(f"{p}: no run directories below it")
            run_dirs.extend(found)
        else:
            raise ConfigError(f"{p}: no such file or directory (give run directories, runs/<experiment> or an experiment YAML)")

    # run directories given one by one: their experiment root may still hold the question
    seen_roots = {r.root.resolve() for r in records if r.root is not None}
    for d in run_dirs:
        root = d.parent.parent
        if (root / "experiment.yaml").is_file() and root.resolve() not in seen_roots:
            seen_roots.add(root.resolve())
            try:
                rec = _read_record(root / "experiment.yaml")
                rec.root = root
                records.append(rec)
            except ConfigError:
                pass

    uniq, seen = [], set()
    for d in run_dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            uniq.append(d)
    if not uniq:
        hint = "".join(f"; {m}" for m in missing)
        raise ConfigError(f"no run directories found in {', '.join(map(str, inputs))}{hint}")

    names = [r.name for r in records if r.name]
    runs = [load_run(d, names[0] if len(set(names)) == 1 else None) for d in uniq]
    if len({r.experiment for r in runs}) > 1:  # several studies in one report: keep their variants apart
        for r in runs:
            r.variant = f"{r.experiment}/{r.variant}"
        for rec in records:
            rec.variants = [f"{rec.name}/{v}" for v in rec.variants or []]
            rec.overrides = {f"{rec.name}/{k}": v for k, v in (rec.overrides or {}).items()}
            rec.baseline = f"{rec.name}/{rec.baseline}" if rec.baseline else None
    claimed: dict[tuple, list[RunData]] = {}
    for r in runs:
        claimed.setdefault((r.variant, r.seed), []).append(r)
    for (v, sd), rs in claimed.items():
        if len(rs) > 1:
            missing.append(f"{v}/seed{sd}: {len(rs)} run directories claim it ({', '.join(str(r.path) for r in rs)}); all are shown")

    # variant order: the experiment's, then any others as they come
    order: list[str] = []
    for rec in records:
        for v in rec.variants or []:
            if v not in order:
                order.append(v)
    for r in runs:
        if r.variant not in order:
            order.append(r.variant)
    present = {r.variant for r in runs}
    variants = [v for v in order if v in present]

    # expected variant x seed pairs that have no run directory at all
    expected_seeds = None
    for rec in records:
        if rec.variants and rec.seeds is not None:
            expected_seeds = rec.seeds
            have = {(r.variant, r.seed) for r in runs}
            for s in rec.seeds:
                for v in rec.variants:
                    if (v, s) not in have:
                        missing.append(f"{v}/seed{s}: no run directory under {rec.root} (not run yet, or deleted)")

    for r in runs:
        for prob in r.problems:
            missing.append(f"{r.label} ({r.path}): {prob}")

    want = baseline or next((rec.baseline for rec in records if rec.baseline), None)
    if want is not None and want not in variants:
        if baseline is not None:
            raise ConfigError(f"--baseline {baseline!r}: no runs of that variant; variants: {', '.join(variants) or '(none)'}")
        missing.append(f"baseline variant {want!r}: no runs; comparing against {variants[0] if variants else '(none)'} instead")
        want = None
    base = want or (variants[0] if variants else "")
    if base:
        variants = [base] + [v for v in variants if v != base]  # the baseline leads every table and legend

    exp_names = sorted({r.experiment for r in runs}) or names
    if len(exp_names) > 1:
        name = "report"
    else:
        name = names[0] if len(set(names)) == 1 else (exp_names[0] if exp_names else "report")
    question = next((rec.question for rec in records if rec.question), None)
    if question is None:
        missing.append("the question: no experiment file or runs/<experiment>/experiment.yaml found (it is written by `rlhfsim sweep`)")
    overrides: dict[str, dict] = {}
    for rec in records:
        for k, v in (rec.overrides or {}).items():
            overrides.setdefault(k, v)
    return Study(name, question, base, variants, runs, missing, sources, expected_seeds, overrides)
