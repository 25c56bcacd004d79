"""The run directory: what every run leaves behind, written so that a kill at any moment loses at most a round.

    runs/<experiment>/<variant>/seed<k>/
        config.yaml                 resolved config
        metrics.jsonl               one row per round (round 0 = the SFT policy), append-only
        ppo_steps.jsonl             one row per PPO iteration
        rewards/round_XXX.parquet   per held-out completion: prompt id, family, type, gold, proxy (per member), KL, length
        samples/round_XXX.jsonl     a few decoded completions with gold, proxy, KL
        checkpoints/latest/         the last complete round (models as safetensors, states via torch.save)
        summary.json                final and peak figures, stagnation round, wall time
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_model, save_model

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


def atomic_write_text(path: Path, text: str) -> None:
    """Temp file + fsync + rename: readers see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
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
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
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


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def for_config(cls, cfg, out: str | Path | None = None) -> "RunDir":
        root = Path(out) if out is not None else Path(cfg.output.dir) / cfg.output.experiment / cfg.output.variant / f"seed{cfg.seed}"
        return cls(root)

    def create(self) -> None:
        for sub in ("rewards", "samples", "checkpoints"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def write_config(self, text: str) -> None:
        atomic_write_text(self.path / "config.yaml", text)

    def log_round(self, row: dict) -> None:
        append_jsonl(self.metrics_path, [row])

    def log_steps(self, rows: list[dict]) -> None:
        append_jsonl(self.path / "ppo_steps.jsonl", rows)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def truncate_after(self, round_: int) -> None:
        """Drop rows of rounds after the checkpoint (written before a kill, but not checkpointed)."""
        for name, key in (("metrics.jsonl", "round"), ("ppo_steps.jsonl", "round")):
            p = self.path / name
            rows = [r for r in read_jsonl(p) if r.get(key, -1) <= round_]
            atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in rows))

    def write_rewards(self, round_: int, df: pd.DataFrame) -> None:
        p = self.path / "rewards" / f"round_{round_:03d}.parquet"
        tmp = p.with_name(f".{p.name}.tmp")
        df.to_parquet(tmp, index=False)
        os.replace(tmp, p)

    def write_samples(self, round_: int, rows: list[dict]) -> None:
        text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
        atomic_write_text(self.path / "samples" / f"round_{round_:03d}.jsonl", text)

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2))

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, round_: int, models: dict, state: dict) -> None:
        """models: name -> nn.Module (safetensors; tied weights handled); state: optimiser/RNG/controller state (torch.save)."""
        ck = self.path / "checkpoints"
        tmp = ck / f"tmp-{round_:03d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, module in models.items():
            save_model(module, str(tmp / f"{name}.safetensors"))
        torch.save(state, tmp / "state.pt")
        (tmp / "round.json").write_text(json.dumps({"round": round_}))
        _fsync_dir(tmp)
        latest, old = ck / "latest", ck / "previous"
        shutil.rmtree(old, ignore_errors=True)
        if latest.exists():
            os.replace(latest, old)
        os.replace(tmp, latest)
        _fsync_dir(ck)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self) -> tuple[int, "Path", dict] | None:
        """(round, checkpoint folder, state); load modules with `load_module(folder, name, module)`."""
        ck = self.path / "checkpoints"
        for cand in (ck / "latest", ck / "previous"):  # 'previous' survives a kill between the two renames
            if (cand / "round.json").exists() and (cand / "state.pt").exists():
                round_ = json.loads((cand / "round.json").read_text())["round"]
                state = torch.load(cand / "state.pt", weights_only=True)
                return round_, cand, state
        return None


def load_module(folder: Path, name: str, module) -> None:
    load_model(module, str(Path(folder) / f"{name}.safetensors"), strict=True)
