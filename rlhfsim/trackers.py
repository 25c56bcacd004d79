"""Experiment trackers (`output.report_to`): TensorBoard, Weights & Biases, MLflow and trackio mirror the run directory.

The run directory stays the record; a tracker gets the same rows, under the same names: each round row of
metrics.jsonl at step = its round, each optimiser row of policy_steps.jsonl under `steps/<name>` at
step = its line number in policy_steps.jsonl (ppo_steps.jsonl in older run directories) (the round rows already hold per-round averages under the plain
names). The resolved config goes in as hyperparameters, the run's figure (figures/curves.png, drawn when the run
ends) as an image at step = the last round: a TensorBoard image summary, a W&B Image, an MLflow artifact at
figures/curves.png, a trackio Image (all four take images offline). Every row ends with a sentinel (`round`, resp.
`steps/round`), so a row whose sentinel is in the tracker's store is complete there.

Resume without duplicates: when a run (re)opens its trackers, each one reports the last round and step its own
store holds; rows already there are never sent again (a killed process may have sent rows after its last
checkpoint: the resumed run recomputes them identically), rows missing there (a tracker added on resume, or
rows lost in a kill) are sent from the run's files. A figure is sent only when the store lacks it (MLflow: the
artifact is replaced, one file either way). Each tracker is an optional extra, imported only when
asked for; a missing package is a ConfigError naming the extra.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import uuid
from pathlib import Path

from rlhfsim.config import ConfigError, dump_config
from rlhfsim.files import atomic_write_text
from rlhfsim.tracker_stores import (  # noqa: F401 - the readers are part of this module's interface
    STEP_PREFIX,
    caption_step,
    image_caption,
    read_tensorboard,
    read_tensorboard_images,
    read_tensorboard_last,
    read_trackio,
    read_trackio_last,
    read_wandb,
    read_wandb_last,
    use_trackio_dir,
)

log = logging.getLogger(__name__)

# tracker name -> (module imported to check it is installed, pyproject extra that installs it)
TRACKERS = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
    "trackio": ("trackio", "trackio"),
}
STATE_FILE = "trackers.json"  # tracker run ids, so a resumed run continues the same tracker run


def check_installed(names) -> None:
    """ConfigError (exit 2) naming the extra to install for every tracker in `names` whose package is missing."""
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(TRACKERS[n][0]) is None]
    if missing:
        extras = ",".join(TRACKERS[n][1] for n in missing)
        raise ConfigError(
            f"output.report_to: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed; install "
            f"{'it' if len(missing) == 1 else 'them'} with pip install -e '.[{extras}]', or drop "
            f"{'it' if len(missing) == 1 else 'them'} from output.report_to"
        )


def numeric(row: dict) -> dict[str, float]:
    """The row's finite numbers (None / NaN / strings are not metrics a tracker can plot)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        out[k] = float(v)
    return out


def round_metrics(row: dict) -> dict[str, float]:
    m = numeric(row)
    r = m.pop("round")
    return {**m, "round": r}  # sentinel last


def step_metrics(row: dict) -> dict[str, float]:
    m = {STEP_PREFIX + k: v for k, v in numeric(row).items()}
    r = m.pop(STEP_PREFIX + "round")
    return {**m, STEP_PREFIX + "round": r}  # sentinel last


def flat_config(cfg_dict: dict, prefix: str = "") -> dict[str, str]:
    out = {}
    for k, v in cfg_dict.items():
        if isinstance(v, dict) and v:
            out.update(flat_config(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if not isinstance(v, str) else v
    return out


# ----------------------------------------------------------------------------- backends


class Backend:
    """A tracker: `last` = (last round, last step index) its store held when opened (-1: none); log(kind, step, metrics)
    with kind "round" or "step"; flush() after each batch of rows; close(finished) at the end of the process;
    image_steps(tag): the steps whose image `tag` its store holds; log_image(tag, png path, step)."""

    last = (-1, -1)

    def image_steps(self, tag: str) -> set[int]:
        return set()

    def log_image(self, tag: str, path: Path, step: int) -> None:
        raise NotImplementedError

    def flush(self):
        pass

    def close(self, finished):
        pass


class TensorBoard(Backend):
    def __init__(self, ctx: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(ctx["path"]) / "tensorboard"
        self.last = read_tensorboard_last(self.dir) if self.dir.exists() else (-1, -1)
        self.writer = SummaryWriter(log_dir=str(self.dir))
        if self.last == (-1, -1):
            self.writer.add_text("config", "```yaml\n" + ctx["config_yaml"] + "\n```", 0)

    def log(self, kind, step, metrics):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)

    def image_steps(self, tag):
        self.writer.flush()
        return {s for s, _, _ in read_tensorboard_images(self.dir).get(tag, [])}

    def log_image(self, tag, path, step):
        import numpy as np
        from PIL import Image

        self.writer.add_image(
            tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC"
        )  # H x W x 3 uint8

    def flush(self):
        self.writer.flush()

    def close(self, finished):
        self.writer.close()


class MLflow(Backend):
    """A file store at <output.dir>/mlruns (all runs of a sweep in one store), or MLFLOW_TRACKING_URI when set."""

    def __init__(self, ctx: dict):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or Path(ctx["tracker_root"]).resolve().joinpath("mlruns").as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        state = ctx["state"].setdefault("mlflow", {})
        run_id = state.get("run_id") if state.get("uri") == uri else None
        if run_id is None:
            exp_id = self._experiment(ctx["experiment"])
            run_id = self.client.create_run(exp_id, run_name=ctx["name"]).info.run_id
            params = [Param(k, v[:6000]) for k, v in flat_config(ctx["config"]).items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self.client.log_batch(run_id, params=params[i : i + 100])
            state.update(uri=uri, run_id=run_id)
            ctx["save_state"]()
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = run_id
        hist = self.client.get_metric_history
        self.last = (
            max((m.step for m in hist(run_id, "round")), default=-1),
            max((m.step for m in hist(run_id, STEP_PREFIX + "round")), default=-1),
        )

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # noqa: BLE001 - another run of the sweep created it a moment ago
            return self.client.get_experiment_by_name(name).experiment_id

    def log(self, kind, step, metrics):
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, v, ts, step) for k, v in metrics.items()]
        body, sentinel = items[:-1], items[-1:]  # the sentinel goes in after the rest of the row is stored
        for i in range(0, len(body), 1000):
            self.client.log_batch(self.run_id, metrics=body[i : i + 1000])
        self.client.log_batch(self.run_id, metrics=sentinel)

    def log_image(self, tag, path, step):
        # an artifact at <tag's folder>/<file name>: a resume replaces it (one file), and the artifact view shows PNGs
        self.client.log_artifact(self.run_id, str(path), artifact_path=str(Path(tag).parent))

    def close(self, finished):
        if finished:
            self.client.set_terminated(self.run_id, "FINISHED")


class WandB(Backend):
    """Offline (files under <run>/wandb/, `wandb sync` uploads them) unless WANDB_MODE says otherwise or the user is logged in."""

    def __init__(self, ctx: dict):
        import wandb

        state = ctx["state"].setdefault("wandb", {})
        if "id" not in state:
            state["id"] = uuid.uuid4().hex[:12]
            ctx["save_state"]()
        self.dir = Path(ctx["path"]) / "wandb"
        self.dir.mkdir(exist_ok=True)
        mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
        self.offline = mode in ("offline", "dryrun")
        self.state, self.save_state = state, ctx["save_state"]
        self.last = read_wandb_last(self.dir, state["id"]) if self.offline else (-1, -1)
        self.run = wandb.init(
            project=ctx["experiment"],
            name=ctx["name"],
            id=state["id"],
            dir=str(ctx["path"]),
            mode=mode,
            config=ctx["config"],
            resume="allow",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run.define_metric("round")
        self.run.define_metric(STEP_PREFIX + "index")

    def log(self, kind, step, metrics):
        if kind == "step":
            metrics = {STEP_PREFIX + "index": step, **metrics}
        self.run.log(metrics)

    def image_steps(self, tag):
        if not self.offline:  # an online run's history is on the server: trackers.json remembers what was sent
            return set(self.state.get("images", {}).get(tag, []))
        return {
            caption_step(r[tag].get("caption"))
            for r in read_wandb(self.dir, self.state["id"])
            if isinstance(r.get(tag), dict)
        }

    def log_image(self, tag, path, step):
        import wandb

        # W&B numbers its own steps: the round goes in the caption
        self.run.log({tag: wandb.Image(str(path), caption=image_caption(step))})
        self.state.setdefault("images", {}).setdefault(tag, []).append(step)
        self.save_state()

    def close(self, finished):
        self.run.finish(exit_code=0 if finished else 1)


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class Trackio(Backend):
    """A local trackio store at <run>/trackio (one SQLite file per store; `TRACKIO_DIR=<run>/trackio trackio show` opens
    it). Project = output.experiment, run name = <variant>/seed<seed>; a resume reopens the run by that name."""

    def __init__(self, ctx: dict):
        self.dir = Path(ctx["path"]) / "trackio"
        trackio = use_trackio_dir(self.dir)
        self.project, self.name = ctx["experiment"], ctx["name"]
        self.last = read_trackio_last(self.dir, self.project, self.name)
        with _stdout_to_log():  # trackio prints its banners; the CLI's stdout is rlhfsim's
            self.run = trackio.init(
                project=ctx["experiment"],
                name=ctx["name"],
                config=ctx["config"],
                resume="allow",
                auto_log_cpu=False,
                auto_log_gpu=False,
                embed=False,
            )

    def log(self, kind, step, metrics):
        self.run.log(
            metrics, step=step
        )  # queued; trackio's thread writes it (a kill may lose the tail: backfilled on resume)

    def image_steps(self, tag):
        return {r["step"] for r in read_trackio(self.dir, self.project, self.name) if tag in r}

    def log_image(self, tag, path, step):
        import trackio

        self.run.log({tag: trackio.Image(str(path), caption=image_caption(step))}, step=step)  # copied to <store>/media

    def close(self, finished):
        import trackio

        with _stdout_to_log():
            trackio.finish()  # writes what is queued


@contextlib.contextmanager
def _stdout_to_log():
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        for line in buf.getvalue().splitlines():
            log.debug("trackio: %s", line)


BACKENDS = {"tensorboard": TensorBoard, "wandb": WandB, "mlflow": MLflow, "trackio": Trackio}


# ----------------------------------------------------------------------------- the run's set of trackers


class Trackers:
    """The trackers of one run, opened by RunDir on the first row it logs (so the run's files hold what came before)."""

    def __init__(self, names, path: Path, cfg, rounds: list[dict], steps: list[dict]):
        check_installed(names)
        path = Path(path)
        state_path = path / STATE_FILE
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}

        def save_state():
            atomic_write_text(state_path, json.dumps(state, indent=2))

        out = cfg.output
        root = Path(out.dir)
        in_root = root.resolve() in path.resolve().parents
        ctx = {
            "path": path,
            "state": state,
            "save_state": save_state,
            "experiment": out.experiment,
            "name": f"{out.variant}/seed{cfg.seed}",
            "config": cfg.model_dump(mode="json"),
            "config_yaml": dump_config(cfg),
            "tracker_root": root if in_root else path,
        }
        self.open = {}
        self.last = {}
        for n in names:
            b = BACKENDS[n](ctx)
            self.open[n] = b
            self.last[n] = list(b.last)
        self.next_step = len(steps)
        for n in self.open:  # backfill what the run's files hold and the tracker lacks
            self._send(
                n,
                [("round", int(r["round"]), round_metrics(r)) for r in rounds]
                + [("step", i, step_metrics(s)) for i, s in enumerate(steps)],
            )

    def _send(self, name: str, items) -> None:
        b, last = self.open[name], self.last[name]
        for kind, step, m in items:
            k = 0 if kind == "round" else 1
            if step > last[k]:
                b.log(kind, step, m)
                last[k] = step
        b.flush()

    def log_round(self, row: dict) -> None:
        for n in self.open:
            self._send(n, [("round", int(row["round"]), round_metrics(row))])

    def log_steps(self, rows: list[dict]) -> None:
        items = [("step", self.next_step + i, step_metrics(r)) for i, r in enumerate(rows)]
        self.next_step += len(rows)
        for n in self.open:
            self._send(n, items)

    def log_image(self, tag: str, path: Path, step: int) -> None:
        """A PNG to every tracker whose store lacks this tag at this step (a resume after the figure was sent skips it)."""
        for n, b in self.open.items():
            try:
                if step not in b.image_steps(tag):
                    b.log_image(tag, Path(path), step)
                    b.flush()
            except Exception as e:  # noqa: BLE001 - a figure a tracker refuses never costs the run its results
                log.warning("sending %s to %s failed: %s", tag, n, e)

    def close(self, finished: bool) -> None:
        for n, b in self.open.items():
            try:
                b.close(finished)
            except Exception as e:  # noqa: BLE001 - a tracker failing at exit never costs the run its results
                log.warning("closing %s failed: %s", n, e)
        self.open = {}
