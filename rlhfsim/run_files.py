"""Names of the files a run directory holds, shared by its writer (rlhfsim/tracking.py) and its readers (the report,
the sweep's planning, scripts). Standard library only.

The steps file was `ppo_steps.jsonl` before every optimiser wrote one; run directories written then keep that name, and
everything that reads steps (summaries, reports, trackers, resume) finds it through `steps_path`.
"""

from __future__ import annotations

from pathlib import Path

STEPS_FILE = "policy_steps.jsonl"  # one row per policy-optimiser iteration (any optimizer.name)
OLD_STEPS_FILE = "ppo_steps.jsonl"  # the same file in run directories written before the rename
STEPS_FILES = (STEPS_FILE, OLD_STEPS_FILE)


def steps_path(run_dir: str | Path) -> Path:
    """The run's steps file: an older run's ppo_steps.jsonl where that is the one it holds (a resumed older run goes
    on appending there, so one run never splits its steps over two files), else policy_steps.jsonl."""
    run_dir = Path(run_dir)
    new, old = run_dir / STEPS_FILE, run_dir / OLD_STEPS_FILE
    return old if old.exists() and not new.exists() else new
