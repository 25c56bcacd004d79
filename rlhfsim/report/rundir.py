"""One run directory -> RunData (config, metrics, summary, which reward rounds exist, what is missing).

Reads only what `rlhfsim run` leaves behind; nothing here fails on a partial run: a missing or
unreadable file becomes a line in RunData.problems.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from rlhfsim.config import renamed_keys
from rlhfsim.diagnostics.summary import summarize
from rlhfsim.run_files import steps_path

RUN_MARKERS = ("config.yaml", "metrics.jsonl", "summary.json", "rewards")
SEED_DIR = re.compile(r"^seed(\d+)$")
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


def read_jsonl(path: Path) -> list[dict]:
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
    written_by: dict | None = (
        None  # summary.json's code_version / code_hash / metric_schema as written (None: older code)
    )
    recomputed: list[str] = field(default_factory=list)  # summary fields whose recomputed value differs from the file's
    lender: str | None = None  # a borrowed arm's run: the experiment file whose sweep ran it (report/borrowed.py)

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
    run = RunData(
        path,
        experiment_hint or path.parent.parent.name or "runs",
        path.parent.name or "default",
        int(m.group(1)) if m else None,
    )

    cfg_path = path / "config.yaml"
    if cfg_path.is_file():
        try:
            cfg = yaml.safe_load(cfg_path.read_text())
            if not isinstance(cfg, dict):
                raise ValueError("not a mapping")
            run.config = cfg = renamed_keys(cfg)  # an older run's renamed fields under their new names
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
    run_rows: list[dict] = []
    if mpath.is_file():
        try:
            rows = read_jsonl(mpath)
        except OSError as e:
            rows = []
            run.problems.append(f"metrics.jsonl unreadable ({e})")
        rows = [r for r in rows if isinstance(r.get("round"), (int, float))]
        if rows:
            run_rows = rows
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

    if run.summary is not None:
        _recompute_summary(run, run_rows)
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


STAMP_KEYS = ("code_version", "code_hash", "metric_schema")


def _norm(v):
    """summary.json writes non-finite numbers as null: compare values the way they are stored."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return float(v) if math.isfinite(v) else None
    return v


def _recompute_summary(run: RunData, rows: list[dict]) -> None:
    """Replace summary.json's derived fields by summarize() of metrics.jsonl with the current code (never stale);
    remember which code wrote the file and which fields changed."""
    old = run.summary or {}
    run.written_by = {k: old[k] for k in STAMP_KEYS if k in old} or None
    by_round: dict = {}
    for r in rows:
        by_round[r["round"]] = r  # a resumed run's repeated round: the last row counts
    rows = [by_round[k] for k in sorted(by_round)]
    if not rows:
        return
    try:
        steps_file = steps_path(run.path)  # per-iteration points for the Gao fit, as the run used them
        steps = read_jsonl(steps_file) if steps_file.is_file() else None
        new = summarize(rows, wall_time=old.get("wall_time_s", float("nan")), steps=steps)
    except Exception as e:  # noqa: BLE001 - odd metrics must not stop a report; the file's summary is kept
        run.problems.append(
            f"summary could not be recomputed from metrics.jsonl ({type(e).__name__}: {e}); summary.json as written is shown"
        )
        return
    for k, v in new.items():
        if k in old and not isinstance(v, (dict, list)) and _norm(v) != _norm(old[k]):
            a, b = _norm(v), _norm(old[k])
            if not (isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-9 * max(1.0, abs(a))):
                run.recomputed.append(k)
    run.summary = {**old, **new}


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
