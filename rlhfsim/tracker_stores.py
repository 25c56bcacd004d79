"""Reading a tracker's store back, with the tracker's own reader where it has one: TensorBoard's EventAccumulator,
trackio's SQLiteStorage, W&B's protobuf records (its offline transaction log is parsed here: wandb has no public
reader for it). Used when a run reopens its trackers (what do they already hold?) and by the tests.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

STEP_PREFIX = "steps/"


def read_tensorboard(logdir) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] from every event file under logdir, read with TensorBoard's own EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def read_tensorboard_images(logdir) -> dict[str, list[tuple[int, int, int]]]:
    """tag -> [(step, width, height)] of every image summary under logdir, read with EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"images": 0})
    acc.Reload()
    return {t: [(e.step, e.width, e.height) for e in acc.Images(t)] for t in acc.Tags()["images"]}


def read_tensorboard_last(logdir) -> tuple[int, int]:
    tags = read_tensorboard(logdir)
    return (
        max((s for s, _ in tags.get("round", [])), default=-1),
        max((s for s, _ in tags.get(STEP_PREFIX + "round", [])), default=-1),
    )


def _wandb_records(path: Path):
    """Payloads of a W&B transaction log (.wandb): a 7-byte header (':W&B', magic 0xBEE1, version), then LevelDB-log
    records in 32 KiB blocks, each with a 7-byte header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B transaction log")
    pos, block, parts = 7, 32768, []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer: padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        payload = data[pos + 7 : pos + 7 + length]
        if len(payload) < length:
            break  # torn tail of a killed process
        pos += 7 + length
        if kind == 1:
            yield payload
        elif kind == 2:
            parts = [payload]
        elif kind == 3:
            parts.append(payload)
        elif kind == 4:
            parts.append(payload)
            yield b"".join(parts)
            parts = []


def read_wandb(wandb_dir, run_id: str) -> list[dict]:
    """History rows of every offline W&B run with this id under wandb_dir (first run and resumes, in order)."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows = []
    for f in sorted(Path(wandb_dir).glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for payload in _wandb_records(f):
            rec = pb.Record()
            try:
                rec.ParseFromString(payload)
            except Exception:  # noqa: BLE001 - a record cut by a kill
                continue
            if rec.WhichOneof("record_type") == "history":
                row = {}
                for it in rec.history.item:  # a logged dict (an image) comes as one item per leaf, keyed by its path
                    *parents, leaf = [it.key] if it.key else list(it.nested_key)
                    node = row
                    for k in parents:
                        node = node.setdefault(k, {})
                    node[leaf] = json.loads(it.value_json)
                rows.append(row)
    return rows


def read_wandb_last(wandb_dir, run_id: str) -> tuple[int, int]:
    rows = read_wandb(wandb_dir, run_id)
    return (
        max((int(r["round"]) for r in rows if "round" in r), default=-1),
        max((int(r[STEP_PREFIX + "index"]) for r in rows if STEP_PREFIX + "index" in r), default=-1),
    )


def use_trackio_dir(path: Path):
    """Point trackio's store at `path`. trackio reads TRACKIO_DIR once, at import, into module globals, so a second
    run in the same process (tests, report) needs those globals moved too. SQLite mode, not trackio's JSONL inbox
    (its choice on network filesystems): the store has one writer, the run, and the resume reads its database."""
    path = Path(path).resolve()
    os.environ["TRACKIO_DIR"], os.environ["TRACKIO_STORAGE_MODE"] = str(path), "sqlite"
    import trackio

    dirs = {"TRACKIO_DIR": path, "MEDIA_DIR": path / "media", "ARTIFACTS_DIR": path / "artifacts"}
    for name, mod in list(sys.modules.items()):
        if mod is not None and (name == "trackio" or name.startswith("trackio.")):
            for attr, value in dirs.items():
                if isinstance(getattr(mod, attr, None), Path):
                    setattr(mod, attr, value)
    return trackio


def read_trackio(store, project: str, run: str) -> list[dict]:
    """The run's logged rows (metrics plus `step`) from a local trackio store, read with trackio's SQLiteStorage."""
    use_trackio_dir(store)
    from trackio.sqlite_storage import SQLiteStorage

    return SQLiteStorage.get_logs(project, run=run)


def read_trackio_last(store, project: str, run: str) -> tuple[int, int]:
    rows = read_trackio(store, project, run) if Path(store).exists() else []
    return (
        max((r["step"] for r in rows if "round" in r), default=-1),
        max((r["step"] for r in rows if STEP_PREFIX + "round" in r), default=-1),
    )


def image_caption(step: int) -> str:
    """A figure's caption in W&B and trackio; W&B numbers its own steps, so its store is read back through this."""
    return f"up to round {step}"


def caption_step(caption) -> int | None:
    try:
        return int(str(caption).rsplit(" ", 1)[-1])
    except ValueError:
        return None
