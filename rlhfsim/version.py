"""Which code wrote a run: recorded in summary.json so a report can tell runs of different code apart.

    stamp()  # {"code_version": "c51c15b-dirty" or "0.1.0", "code_hash": "<12 hex>", "metric_schema": 2}

`code_hash` hashes the rlhfsim sources that produce a run's numbers (everything but the report and bench
packages, which only read runs), so it identifies that code even without git (an installed package, a copied
tree), and editing the report while a sweep runs does not split the sweep into "versions". METRIC_SCHEMA_VERSION names what the metrics and summary fields mean: bump it
whenever a metric's definition changes (docs/metrics.md), so older runs are flagged as measured differently.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from pathlib import Path

from rlhfsim import __version__

METRIC_SCHEMA_VERSION = 2  # 1 = summaries written before the stamp existed (no field)
PACKAGE_DIR = Path(__file__).resolve().parent
NOT_RUN_CODE = ("report", "bench")  # subpackages that never run inside `rlhfsim run`


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """sha256 over rlhfsim/**/*.py outside NOT_RUN_CODE (relative path + bytes, sorted), first 12 hex digits."""
    h = hashlib.sha256()
    for f in sorted(PACKAGE_DIR.rglob("*.py")):
        if f.relative_to(PACKAGE_DIR).parts[0] in NOT_RUN_CODE:
            continue
        h.update(f.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always` of the source tree when it is a git checkout, else the package version; `-dirty` when the
    code a run executes (rlhfsim/ outside NOT_RUN_CODE) differs from the commit (edited docs or reports do not count)."""
    git = lambda *a: subprocess.run(
        ["git", *a], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10, check=False
    )  # noqa: E731
    try:
        out = git("describe", "--always")
        if out.returncode != 0 or not out.stdout.strip():
            return __version__
        dirty = git("diff", "--quiet", "HEAD", "--", ".", *(f":(exclude){d}" for d in NOT_RUN_CODE)).returncode == 1
    except (OSError, subprocess.SubprocessError):
        return __version__
    return out.stdout.strip() + ("-dirty" if dirty else "")


def stamp() -> dict:
    return {"code_version": code_version(), "code_hash": source_hash(), "metric_schema": METRIC_SCHEMA_VERSION}


# computed when the run imports its code, so edits made while a run goes on do not change what it records
stamp()
