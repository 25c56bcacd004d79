"""What the sweep does with each run directory: skip (finished), resume (checkpoint), start, or conflict.

Decisions read only the run directory (config.yaml, summary.json, checkpoints/), so a killed sweep
picks up where it stopped and a changed experiment never overwrites results of another config.
"""

from __future__ import annotations

import json
import shutil

try:  # POSIX; elsewhere the in-use check is skipped
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlhfsim.config import renamed_keys
from rlhfsim.experiment import Experiment, RunSpec, flatten
from rlhfsim.run_files import STEPS_FILES

# keys that may differ between a run directory's config.yaml and the experiment without losing the run
IGNORED_DIFF_PREFIXES = ("loop.rounds", "output.", "policy.cache_dir")

# ----------------------------------------------------------------------------- skip / resume / start


@dataclass
class Decision:
    action: str  # "skip" | "resume" | "start" | "conflict" | "busy" | "borrow" (another file's sweep runs it)
    reason: str
    lender_done: bool = False  # "borrow" only: the lender's run of it has finished (the report can read it)


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
    a, b = flatten(renamed_keys(old)), flatten(cfg_dict)  # an older run's renamed fields read as the new names
    keys = sorted(set(a) | set(b))
    return [k for k in keys if not k.startswith(IGNORED_DIFF_PREFIXES) and a.get(k, "<absent>") != b.get(k, "<absent>")]


def read_status(run_dir: Path) -> dict:
    try:
        d = json.loads((run_dir / "status.json").read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def in_use(run_dir: Path) -> bool:
    """True while another process holds the run directory's lock (`rlhfsim run` takes it for its lifetime)."""
    lock = run_dir / ".lock"
    if fcntl is None or not lock.is_file():
        return False
    with open(lock, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def decide(run_dir: str | Path, cfg_dict: dict) -> Decision:
    """What the sweep does with one run directory, given the config it should hold.

    skip:     summary.json says the configured number of rounds finished (same config);
    resume:   a checkpoint exists (killed, or rounds were raised since) and the config still matches;
    start:    nothing worth keeping (no dir, only config.yaml, no checkpoint);
    conflict: finished or checkpointed results of a *different* config, or a run that diverged (kept;
              --restart-changed reruns it from scratch);
    busy:     another process is writing the directory now (never touched, whatever the flags).
    """
    run_dir = Path(run_dir)
    if in_use(run_dir):
        pid = read_status(run_dir).get("pid", "?")
        return Decision("busy", f"in use by another rlhfsim process (pid {pid}); left alone")
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
        return Decision(
            "conflict", f"results of a different config ({shown}); remove the directory or pass --restart-changed"
        )
    status = read_status(run_dir)
    if status.get("status") == "diverged":
        d = status.get("divergence") or {}
        return Decision(
            "conflict",
            f"diverged in round {d.get('round', '?')} ({d.get('phase', '?')}: {d.get('quantity', '?')} = "
            f"{d.get('value', '?')}); the same config would diverge again: change it or pass --restart-changed",
        )
    done = None
    if summary is not None:
        try:
            done = int(summary.get("rounds_completed"))
        except (TypeError, ValueError):
            done = None
    if done is not None and done == rounds:
        return Decision("skip", f"finished ({done} rounds)")
    if done is not None and done > rounds:
        return Decision(
            "conflict", f"has {done} rounds, more than the {rounds} configured; remove it or pass --restart-changed"
        )
    if ck is not None and ck <= rounds:
        return Decision("resume", f"checkpoint at round {ck} of {rounds}")
    if ck is not None:
        return Decision(
            "conflict", f"checkpoint at round {ck}, beyond the {rounds} configured; remove it or pass --restart-changed"
        )
    return Decision("start", f"summary.json has {done} of {rounds} rounds and there is no checkpoint")


RUN_OUTPUTS = ("metrics.jsonl", *STEPS_FILES, "summary.json", "status.json", "run.log", "trackers.json")
RUN_SUBDIRS = ("rewards", "samples", "checkpoints", "tensorboard", "wandb")


def clear_run_dir(run_dir: Path) -> None:
    """Remove a run's outputs (only the names a run writes), so stale files never mix with a fresh start."""
    for name in RUN_OUTPUTS:
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_SUBDIRS:
        shutil.rmtree(run_dir / name, ignore_errors=True)


@dataclass
class Job:
    spec: RunSpec
    decision: Decision
    status: str = "pending"  # pending | running | finished | failed | skipped | borrowed
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
        d = decide(rs.path, cfg_dict)
        if rs.lender is not None:  # never run here: the lender's own sweep owns that directory
            d = borrowed(rs.lender, d)
        jobs.append(Job(rs, d))
    return jobs


def borrowed(lender, d: Decision) -> Decision:
    """A borrowed run's line in the plan: whose sweep runs it, and what that sweep would do with it now."""
    state = "finished" if d.action == "skip" else f"not finished ({d.action}: {d.reason})"
    return Decision(
        "borrow",
        f"{lender.name}/{lender.variant.name}, run by `rlhfsim sweep {lender.file}`: {state}",
        d.action == "skip",
    )
