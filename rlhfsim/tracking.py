"""The run directory: what every run leaves behind, written so that a kill at any moment loses at most a round.

    runs/<experiment>/<variant>/seed<k>/
        config.yaml                 resolved config
        status.json                 running | finished | diverged, with the rlhfsim version and checkpoint format
        metrics.jsonl               one row per round (round 0 = the SFT policy), append-only
        policy_steps.jsonl          one row per policy-optimiser iteration (ppo_steps.jsonl in older run directories)
        rewards/round_XXX.parquet   per held-out completion: prompt id, family, type, gold, proxy (per member), KL, length
        rewards/train_round_XXX.parquet  with loop.diagnose_train: the reward model on its training groups
        samples/round_XXX.jsonl     a few decoded completions with gold, proxy, KL
        checkpoints/latest/         the last complete round (models as safetensors, states via torch.save)
        figures/curves.png          gold, proxy and KL against round (rlhfsim/run_figure.py), drawn at the end
        summary.json                final and peak figures, stagnation round, wall time

Crash safety: whole files go through temp file + fsync + rename, appends are whole fsynced lines (a torn last
line is dropped on read), a checkpoint is published by renaming a complete folder. `status.json` says
`running` while a process holds the directory's lock: `running` with the lock free means killed, and
`--resume` continues from the last checkpoint (or starts over when there is none).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
from safetensors import safe_open
from safetensors.torch import load_model, save_model

from rlhfsim import __version__, faults
from rlhfsim.config import Config, ConfigError, apply_overrides, config_from_dict, load_config
from rlhfsim.files import (  # noqa: F401 (re-exported)
    _clean,
    _fsync_dir,
    _fsync_file,
    append_jsonl,
    atomic_write_bytes,
    atomic_write_text,
    read_jsonl,
)
from rlhfsim.run_files import steps_path
from rlhfsim.trackers import Trackers

try:  # POSIX; elsewhere runs go unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

RUN_FILES = ("config.yaml", "metrics.jsonl", "summary.json")
STATUS_FILE = "status.json"
# what a resumed run may change: how long it runs, where, and how it guards; never what it simulates
RESUME_MAY_CHANGE = ("loop.rounds", "device", "guards.", "output.", "policy.cache_dir")
CHECKPOINT_FORMAT = 1  # bump when the checkpoint layout changes: older run directories then refuse --resume


def read_status(path: str | Path) -> dict | None:
    """status.json of a run directory, or None (absent, unreadable, or a run from before status files)."""
    try:
        d = json.loads((Path(path) / STATUS_FILE).read_text())
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def check_writable(path: Path, what: str, fix: str) -> None:
    """Create `path` and write a probe file in it; a ConfigError naming the folder and the fix if that fails."""
    probe = Path(path) / f".write-test{os.getpid()}"
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r} is not writable ({e.strerror or e}); {fix}") from None


def _flatten(d, prefix: str = "") -> dict:
    if isinstance(d, dict) and d:
        return {k: v for key, val in d.items() for k, v in _flatten(val, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): d}


def resume_config(
    run_dir: str | Path, config_path: str | Path | None = None, overrides: list[str] | None = None
) -> Config:
    """The config a `--resume RUN_DIR` continues with: the run's own config.yaml, plus overrides that keep it the same run.

    A CONFIG file given beside --resume must match the run's config except RESUME_MAY_CHANGE.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(
            f"--resume {run_dir}: no such directory; pass a run directory written by `rlhfsim run` "
            "(runs/<experiment>/<variant>/seed<k>)"
        )
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError(
            f"--resume {run_dir}: no config.yaml there, so no run to continue (killed before it began?); "
            f"start it with `rlhfsim run CONFIG --out {run_dir}`"
        )
    try:
        saved = load_config(saved_path)
    except ConfigError as e:
        raise ConfigError(
            f"--resume {run_dir}: its config.yaml does not validate with rlhfsim {__version__} "
            f"(written by another version?); start a new run instead. {e}"
        ) from None
    if config_path is not None:
        cfg = load_config(config_path, overrides)
    else:
        cfg = config_from_dict(apply_overrides(saved.model_dump(mode="json"), list(overrides or [])))
    a, b = _flatten(saved.model_dump(mode="json")), _flatten(cfg.model_dump(mode="json"))
    changed = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k) and not k.startswith(RESUME_MAY_CHANGE)]
    if changed:
        src = config_path if config_path is not None else "--set"
        raise ConfigError(
            f"--resume {run_dir}: {src} changes {', '.join(changed)} of the run's config.yaml; a resumed run must simulate "
            f"the same thing (only {', '.join(RESUME_MAY_CHANGE)} may change). Start a new run with another --out instead"
        )
    return cfg


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = None
        self._preloaded = None  # checkpoint read (and so validated) by create(resume=True), before anything is written
        self._cfg, self._trackers = None, None  # output.report_to: opened on the first logged row (rlhfsim.trackers)

    @classmethod
    def for_config(cls, cfg, out: str | Path | None = None) -> RunDir:
        root = (
            Path(out)
            if out is not None
            else Path(cfg.output.dir) / cfg.output.experiment / cfg.output.variant / f"seed{cfg.seed}"
        )
        return cls(root)

    # ------------------------------------------------------------------ opening

    def create(self, cfg=None, resume: bool = False) -> None:
        """Make the folders, take the lock, refuse to overwrite results or resume what cannot be resumed, mark running."""
        check_writable(self.path, "run directory", "choose another --out (or output.dir) or fix its permissions")
        for sub in ("rewards", "samples", "checkpoints"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self.acquire()
        if not resume and self.has_results():
            raise ConfigError(
                f"{self.path} already holds results of a run; nothing was overwritten. Continue it with "
                f"`rlhfsim run --resume {self.path}`, or remove the directory / choose another --out to start over"
            )
        if resume and cfg is not None:
            self.check_resumable(cfg)
        if resume:
            self._preloaded = (self.load_checkpoint(),)
        self.clean_temp_files()
        self._cfg = cfg
        self.set_status("running", **({"rounds": cfg.loop.rounds} if cfg is not None else {}))

    def acquire(self) -> None:
        """Exclusive lock for this process's lifetime (released by the OS even on SIGKILL)."""
        if fcntl is None or self._lock is not None:
            return
        f = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            st = read_status(self.path) or {}
            raise ConfigError(
                f"{self.path} is in use by another rlhfsim process (pid {st.get('pid', '?')}); wait for it to finish, "
                "or choose another --out"
            ) from None
        self._lock = f

    def close(self) -> None:
        if self._trackers is not None:
            self._trackers.close(finished=(read_status(self.path) or {}).get("status") == "finished")
            self._trackers = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def has_results(self) -> bool:
        m = self.metrics_path
        return (
            (m.exists() and m.stat().st_size > 0)
            or (self.path / "summary.json").exists()
            or self.checkpoint_round() is not None
        )

    def clean_temp_files(self) -> None:
        """Temp files a killed process left behind (never read: only renamed files count)."""
        for folder in (self.path, self.path / "rewards", self.path / "samples"):
            for p in folder.glob(".*.tmp*"):
                p.unlink(missing_ok=True)
        for p in (self.path / "checkpoints").glob("tmp-*"):
            shutil.rmtree(p, ignore_errors=True)

    def check_resumable(self, cfg) -> None:
        """Refuse (ConfigError) a resume that would not continue the same run: other version, format, or a repeat divergence."""
        st = read_status(self.path)
        if st is not None:
            if st.get("format") != CHECKPOINT_FORMAT or st.get("version") != __version__:
                raise ConfigError(
                    f"{self.path} was written by rlhfsim {st.get('version')} (checkpoint format {st.get('format')}); this is "
                    f"rlhfsim {__version__} (format {CHECKPOINT_FORMAT}). Resume it with that version, or start a new run elsewhere"
                )
            if st.get("status") == "diverged" and st.get("guards") == cfg.guards.model_dump(mode="json"):
                d = st.get("divergence", {})
                raise ConfigError(
                    f"{self.path} diverged in round {d.get('round')} ({d.get('phase')}: {d.get('quantity')} = {d.get('value')}); "
                    "resuming with the same config would diverge again. Resume with --set guards.on_divergence=skip_round "
                    "(or a larger guards.max_abs_reward), or start a new run with a lower learning rate in another --out"
                )
        ck = self.checkpoint_round()
        if ck is not None and ck > cfg.loop.rounds:
            raise ConfigError(
                f"{self.path} has a checkpoint at round {ck}; loop.rounds ({cfg.loop.rounds}) must be at least that: "
                f"--set loop.rounds={ck} or more"
            )

    # ------------------------------------------------------------------ files

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def set_status(self, status: str, **extra) -> None:
        old = read_status(self.path) or {}
        keep = {k: old[k] for k in ("rounds",) if k in old}
        info = {
            "status": status,
            **keep,
            **extra,
            "version": __version__,
            "format": CHECKPOINT_FORMAT,
            "pid": os.getpid(),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(self.path / STATUS_FILE, json.dumps(info, indent=2))

    def write_config(self, text: str) -> None:
        atomic_write_text(self.path / "config.yaml", text)

    def trackers(self):
        """The run's experiment trackers (None without output.report_to, and on data-parallel ranks other than 0)."""
        cfg = self._cfg
        if self._trackers is None and cfg is not None and cfg.output.report_to and os.environ.get("RANK", "0") == "0":
            self._trackers = Trackers(
                cfg.output.report_to, self.path, cfg, self.metrics(), read_jsonl(steps_path(self.path))
            )
        return self._trackers

    def log_round(self, row: dict) -> None:
        t = self.trackers()  # opened before the row is appended: it backfills what the files held until now
        append_jsonl(self.metrics_path, [row])
        if t is not None:
            t.log_round(row)

    def log_steps(self, rows: list[dict]) -> None:
        t = self.trackers()
        append_jsonl(steps_path(self.path), rows)
        if t is not None:
            t.log_steps(rows)

    def log_inner(self, rows: list[dict]) -> None:
        """inner_eval.jsonl: evaluations inside a round's policy optimisation (loop.inner_eval; none when off)."""
        if rows:
            append_jsonl(self.path / "inner_eval.jsonl", rows)

    def metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def truncate_after(self, round_: int) -> None:
        """Drop rows of rounds after the checkpoint (written before a kill, but not checkpointed), and torn lines."""
        for p, key in (
            (self.metrics_path, "round"),
            (steps_path(self.path), "round"),
            (self.path / "inner_eval.jsonl", "round"),
        ):
            if p.name == "inner_eval.jsonl" and not p.exists():
                continue
            rows = [r for r in read_jsonl(p) if r.get(key, -1) <= round_]
            atomic_write_text(p, "".join(json.dumps(r) + "\n" for r in rows))

    def write_rewards(self, round_: int, df: pd.DataFrame, stem: str = "round") -> None:
        """rewards/<stem>_XXX.parquet: held-out completions ("round"), or training groups ("train_round")."""
        p = self.path / "rewards" / f"{stem}_{round_:03d}.parquet"
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        df.to_parquet(tmp, index=False)
        _fsync_file(tmp)
        faults.hit(p.name)
        os.replace(tmp, p)

    def write_samples(self, round_: int, rows: list[dict]) -> None:
        text = "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows)
        atomic_write_text(self.path / "samples" / f"round_{round_:03d}.jsonl", text)

    def write_summary(self, summary: dict) -> None:
        atomic_write_text(self.path / "summary.json", json.dumps({k: _clean(v) for k, v in summary.items()}, indent=2))
        self.set_status("finished", rounds_completed=summary.get("rounds_completed"))

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
        meta = {"round": round_, "models": sorted(models), "version": __version__, "format": CHECKPOINT_FORMAT}
        (tmp / "round.json").write_text(json.dumps(meta))
        for f in tmp.iterdir():
            _fsync_file(f)
        _fsync_dir(tmp)
        latest, old = ck / "latest", ck / "previous"
        shutil.rmtree(old, ignore_errors=True)
        if latest.exists():
            os.replace(latest, old)
        faults.hit("publish")  # a kill here leaves only 'previous': load_checkpoint falls back to it
        os.replace(tmp, latest)
        _fsync_dir(ck)
        shutil.rmtree(old, ignore_errors=True)

    def _candidates(self) -> list[Path]:
        ck = self.path / "checkpoints"
        return [
            c for c in (ck / "latest", ck / "previous") if (c / "round.json").is_file() and (c / "state.pt").is_file()
        ]

    def checkpoint_round(self) -> int | None:
        for cand in self._candidates():
            try:
                return int(json.loads((cand / "round.json").read_text())["round"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    def load_checkpoint(self) -> tuple[int, Path, dict] | None:
        """(round, checkpoint folder, state); load modules with `load_module(folder, name, module)`.

        'previous' survives a kill between the two renames of `save_checkpoint`. Only tensors and plain
        containers are unpickled (weights_only=True); an unreadable checkpoint is a ConfigError naming it.
        """
        if self._preloaded is not None:
            ck, self._preloaded = self._preloaded[0], None
            return ck
        problems = []
        for cand in self._candidates():
            current = cand / "round.json"
            try:
                meta = json.loads(current.read_text())
                if meta.get("format", CHECKPOINT_FORMAT) != CHECKPOINT_FORMAT:
                    raise ConfigError(
                        f"{cand} has checkpoint format {meta.get('format')}, this rlhfsim reads format {CHECKPOINT_FORMAT}; "
                        "resume with the rlhfsim version that wrote it, or start a new run elsewhere"
                    )
                current = cand / "state.pt"
                state = torch.load(current, weights_only=True)
                for name in meta.get("models", []):  # headers only: cheap, catches truncated or foreign files
                    current = cand / f"{name}.safetensors"
                    with safe_open(current, framework="pt"):
                        pass
                return int(meta["round"]), cand, state
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - any unreadable file: try the older checkpoint, then report both
                if "Unsupported global" in str(e):
                    why = "holds more than tensors (refused: checkpoints load with weights_only=True)"
                elif isinstance(e, pickle.UnpicklingError):
                    why = "corrupt or truncated"
                else:
                    why = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else 'unreadable'}"
                problems.append(f"{current}: {why}")
        if problems:
            raise ConfigError(
                "no readable checkpoint: "
                + "; ".join(problems)
                + f". Remove {self.path / 'checkpoints'} to start the run over, or resume from a backup"
            )
        return None


def load_module(folder: Path, name: str, module) -> None:
    path = Path(folder) / f"{name}.safetensors"
    try:
        load_model(module, str(path), strict=True)
    except Exception as e:  # noqa: BLE001 - missing file, wrong shapes (another config), corrupt bytes
        raise ConfigError(
            f"checkpoint file {path} does not fit this run ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
            "was the run directory written with another config? Start a new run elsewhere"
        ) from None


@contextmanager
def rank_out_dir(cfg, out, resume: bool):
    """The run directory this process writes: `out` on rank 0 (and on one process), a private temporary copy on the
    other ranks (with the run's checkpoints when resuming, so every rank restores the same round), removed at the end."""
    rank = int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    if rank == 0:
        yield out
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"rlhfsim-rank{rank}-"))
    private = tmp / "run"
    real = RunDir.for_config(cfg, out).path
    if resume and real.exists():
        shutil.copytree(real, private, ignore=shutil.ignore_patterns(".lock", "samples", "rewards"))
    try:
        yield private
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
