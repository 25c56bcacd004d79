"""Files written so that a kill at any moment leaves the old version or the new one: temp file + fsync + rename for
whole files, whole fsynced lines for appends (a torn last line is dropped on read). Light (standard library only), so
that the experiment-file model and the trackers use it without the run directory's torch and pandas."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from rlhfsim import faults


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Temp file + fsync + rename: readers see the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    faults.hit(path.name)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN: missing values are null (e.g. undefined pairwise accuracy)
    if hasattr(v, "item"):
        return _clean(v.item())
    return v


def append_jsonl(path: Path, rows: list[dict]) -> None:
    """Whole lines, flushed and fsynced: a kill leaves complete rows only (a torn last line is dropped on read)."""
    if not rows:
        return
    text = "".join(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n" for row in rows)
    with open(path, "a") as f:
        if faults.armed(path.name):  # under test only: die half way through, leaving a torn line
            f.write(text[: len(text) // 2])
            f.flush()
            faults.hit(path.name)
            text = text[len(text) // 2 :]
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # torn final line of a killed run
    return rows
