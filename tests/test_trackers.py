"""Experiment trackers (output.report_to): each tracker read back with its own reader holds every round and PPO step
of the run's files once, with the same values, and the run's figure once, also after a kill between a round's rows
and its checkpoint and a kill after the figure was sent."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rlhfsim import trackers as T
from rlhfsim.faults import ENV
from rlhfsim.run_figure import FIGURE, TAG, draw_curves
from rlhfsim.tracking import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")


def rlhfsim(args, home, kill_at=None):
    """`rlhfsim ARGS` in a subprocess, one thread, with HOME at `home` (no W&B login there: offline)."""
    env = {k: v for k, v in os.environ.items() if k not in (ENV, "WANDB_MODE", "WANDB_API_KEY", "MLFLOW_TRACKING_URI")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200", PYTHONPATH=str(ROOT), HOME=str(home))
    if kill_at:
        env[ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "rlhfsim", *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_rows_become_numeric_metrics_with_the_sentinel_last():
    row = {
        "round": 2,
        "eval/gold": 0.5,
        "rm/pairwise_acc": None,
        "x": float("nan"),
        "audit/alarm": "shift",
        "ok": True,
        "n": 3,
    }
    assert list(T.round_metrics(row).items()) == [("eval/gold", 0.5), ("n", 3.0), ("round", 2.0)]
    step = {"round": 1, "iteration": 0, "loss/policy_avg": -0.1}
    assert list(T.step_metrics(step)) == ["steps/iteration", "steps/loss/policy_avg", "steps/round"]
    assert T.flat_config({"a": {"b": 1, "c": [1, 2]}, "d": "x", "e": {}}) == {
        "a.b": "1",
        "a.c": "[1, 2]",
        "d": "x",
        "e": "{}",
    }


def test_missing_tracker_package_is_a_config_error_naming_the_extra(monkeypatch, capsys):
    import importlib.util

    from rlhfsim.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "mlflow", "trackio") else real(name, *a)
    )
    assert (
        main(
            ["run", TINY, "--set", "output.report_to=[tensorboard,wandb,mlflow,trackio]", "--out", "/nonexistent/never"]
        )
        == 2
    )
    err = capsys.readouterr()
    msg = " ".join((err.out + err.err).split())
    assert "wandb, mlflow, trackio are not installed" in msg and "pip install -e '.[wandb,mlflow,trackio]'" in msg
    assert main(["run", TINY, "--set", "output.report_to=[tensorboard,neptune]"]) == 2
    msg = " ".join((lambda e: e.out + e.err)(capsys.readouterr()).split())
    assert "report_to" in msg and "neptune" in msg and "'tensorboard'" in msg


@pytest.mark.slow
def test_trackers_hold_every_round_once_after_a_kill_and_resume(tmp_path, sft_cache, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    pytest.importorskip("trackio")
    from mlflow.tracking import MlflowClient

    run = tmp_path / "runs" / "tiny" / "default" / "seed0"
    sets = [
        "--set",
        "output.report_to=[tensorboard,mlflow,wandb,trackio]",
        "--set",
        f"output.dir={tmp_path / 'runs'}",
        "--set",
        f"policy.cache_dir={sft_cache}",
        "--set",
        "loop.rounds=3",
    ]
    # killed after round 2's rows reached the trackers, before its checkpoint: the resume recomputes round 2
    p = rlhfsim(["run", TINY, "--out", str(run), *sets], tmp_path, kill_at="evaluate:2:publish")
    assert p.returncode == -9, p.stderr[-2000:]
    assert [s for s, _ in T.read_tensorboard(run / "tensorboard")["round"]] == [
        0,
        1,
        2,
    ]  # round 2 sent, not checkpointed
    assert not (run / FIGURE).exists()
    # killed again once the figure went to the trackers, before summary.json: the last resume redraws it, sends it nowhere
    p = rlhfsim(["run", "--resume", str(run)], tmp_path, kill_at="evaluate:3:summary.json")
    assert p.returncode == -9, p.stderr[-2000:]
    assert [s for s, _, _ in T.read_tensorboard_images(run / "tensorboard")[TAG]] == [3]  # flushed before the kill
    figure = (run / FIGURE).read_bytes()
    p = rlhfsim(["run", "--resume", str(run)], tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (run / FIGURE).read_bytes() == figure  # the same rows draw the same PNG

    rounds, steps = read_jsonl(run / "metrics.jsonl"), read_jsonl(run / "policy_steps.jsonl")
    assert [r["round"] for r in rounds] == [0, 1, 2, 3]
    gold = [r["eval/gold"] for r in rounds]
    loss = [s["loss/policy_avg"] for s in steps]
    state = json.loads((run / "trackers.json").read_text())

    tb = T.read_tensorboard(run / "tensorboard")
    assert [s for s, _ in tb["round"]] == [0, 1, 2, 3]
    assert [s for s, _ in tb["eval/gold"]] == [0, 1, 2, 3]
    assert [v for _, v in tb["eval/gold"]] == pytest.approx(gold, rel=1e-6)  # float32 in event files
    assert [s for s, _ in tb["steps/loss/policy_avg"]] == list(range(len(steps)))
    assert [v for _, v in tb["steps/loss/policy_avg"]] == pytest.approx(loss, rel=1e-5, abs=1e-7)
    from PIL import Image

    width, height = Image.open(run / FIGURE).size
    assert T.read_tensorboard_images(run / "tensorboard") == {TAG: [(3, width, height)]}  # one image, the last round's

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    exp = client.get_experiment_by_name("tiny")
    assert len(client.search_runs([exp.experiment_id])) == 1  # the resume continued the same MLflow run
    info = client.get_run(state["mlflow"]["run_id"])
    assert info.info.status == "FINISHED" and info.info.run_name == "default/seed0"
    assert (
        info.data.params["seed"] == "0"
        and info.data.params["output.report_to"] == '["tensorboard", "mlflow", "wandb", "trackio"]'
    )
    hist = sorted((m.step, m.value) for m in client.get_metric_history(info.info.run_id, "eval/gold"))
    assert hist == list(enumerate(gold))
    hist = sorted((m.step, m.value) for m in client.get_metric_history(info.info.run_id, "steps/loss/policy_avg"))
    assert hist == list(enumerate(loss))
    assert [(f.path, f.file_size) for f in client.list_artifacts(info.info.run_id, "figures")] == [
        (FIGURE, len(figure))
    ]

    wb = T.read_wandb(run / "wandb", state["wandb"]["id"])
    assert (
        len(list((run / "wandb").glob(f"offline-run-*-{state['wandb']['id']}"))) == 3
    )  # first process and two resumes
    images = [r[TAG] for r in wb if TAG in r]
    assert [(i["_type"], T.caption_step(i["caption"]), i["width"], i["height"]) for i in images] == [
        ("image-file", 3, width, height)
    ]
    # the PNG beside the log (the killed process may have copied its own before its record was lost with it)
    assert list((run / "wandb").glob(f"offline-run-*/files/{images[0]['path']}"))
    wb_rounds = [r for r in wb if "round" in r]
    assert sorted(r["round"] for r in wb_rounds) == [0, 1, 2, 3]
    assert [r["eval/gold"] for r in sorted(wb_rounds, key=lambda r: r["round"])] == gold
    wb_steps = sorted((r["steps/index"], r["steps/loss/policy_avg"]) for r in wb if "steps/index" in r)
    assert wb_steps == list(enumerate(loss))

    tk = T.read_trackio(run / "trackio", "tiny", "default/seed0")  # trackio's own SQLiteStorage reader
    assert sorted((r["step"], r["eval/gold"]) for r in tk if "round" in r) == list(enumerate(gold))
    assert sorted((r["step"], r["steps/loss/policy_avg"]) for r in tk if "steps/round" in r) == list(enumerate(loss))
    images = [(r["step"], r[TAG]["_type"], T.caption_step(r[TAG]["caption"])) for r in tk if TAG in r]
    assert images == [(3, "trackio.image", 3)]
    assert Image.open(run / "trackio" / "media" / tk[[TAG in r for r in tk].index(True)][TAG]["file_path"]).size == (
        width,
        height,
    )
    from trackio.sqlite_storage import SQLiteStorage

    assert SQLiteStorage.get_runs("tiny") == ["default/seed0"]  # the resume continued the same trackio run
    assert SQLiteStorage.get_run_config("tiny", "default/seed0")["seed"] == 0


def test_trackio_store_is_read_back_and_never_sent_a_row_twice(tmp_path):
    """A reopened trackio run skips the rows its store holds (a kill after sending them) and sends the rest."""
    pytest.importorskip("trackio")
    from rlhfsim.config import load_config

    cfg = load_config(TINY, [f"output.dir={tmp_path}", "output.report_to=[trackio]"])
    rounds = [{"round": r, "eval/gold": 0.1 * r} for r in range(4)]
    steps = [{"round": 1 + i // 2, "loss/policy_avg": -i} for i in range(6)]
    t = T.Trackers(["trackio"], tmp_path, cfg, rounds[:3], steps[:4])  # the store gets rounds 0-2 and steps 0-3
    png = tmp_path / "curves.png"
    png.write_bytes(draw_curves(rounds))
    t.log_image(TAG, png, 2)  # a figure sent before the kill
    t.close(finished=False)
    assert T.read_trackio_last(tmp_path / "trackio", "tiny", "default/seed0") == (2, 3)
    changed = [{**r, "eval/gold": -1.0} for r in rounds]  # what a resend would show
    t = T.Trackers(["trackio"], tmp_path, cfg, changed[:2], steps[:2])  # files cut back to the checkpoint (round 1)
    assert t.last["trackio"] == [2, 3]
    for r in changed[2:]:
        t.log_round(r)
    t.log_steps(steps[2:])
    t.log_image(TAG, png, 2)  # held: skipped
    t.log_image(TAG, png, 3)  # a longer run's figure: sent
    t.close(finished=True)
    rows = T.read_trackio(tmp_path / "trackio", "tiny", "default/seed0")
    assert sorted((r["step"], r["eval/gold"]) for r in rows if "round" in r) == [
        (0, 0.0),
        (1, 0.1),
        (2, 0.2),
        (3, -1.0),
    ]
    assert sorted((r["step"], r["steps/loss/policy_avg"]) for r in rows if "steps/round" in r) == [
        (i, -i) for i in range(6)
    ]
    assert sorted(r["step"] for r in rows if TAG in r) == [2, 3]


@pytest.mark.slow
def test_no_trackers_leave_no_tracker_files(tmp_path, sft_cache):
    from rlhfsim.config import load_config
    from rlhfsim.loop import run

    out = tmp_path / "seed0"
    run(load_config(TINY, [f"policy.cache_dir={sft_cache}", "loop.rounds=1"]), out=out)
    names = {p.name for p in out.iterdir()}
    assert not names & {"tensorboard", "wandb", "mlruns", "trackio", T.STATE_FILE} and "metrics.jsonl" in names
    assert (out / FIGURE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the run's figure needs no tracker
