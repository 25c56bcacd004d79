"""Forked sweep runs (rlhfsim.sweep.fork) equal subprocess runs, and a forked run behaves like a Popen."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhfsim import cli
from rlhfsim.sweep import fork

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict]:
    return [
        {k: v for k, v in json.loads(line).items() if not k.startswith("time/")}
        for line in path.read_text().splitlines()
    ]


@pytest.mark.slow
def test_forked_sweep_equals_subprocess_sweep(tmp_path, sft_cache):
    """`rlhfsim sweep` as users start it (a fresh process: it forks) against `--no-fork`: the same metrics."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        f"name: fk\nquestion: q\nbase: {ROOT / 'configs' / 'tiny.yaml'}\nbase_overrides: {{loop.rounds: 1}}\n"
        "variants: {a: {}}\nseeds: [0]\nbaseline: a\nprimary: {endpoint: gold_gain, better: higher}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    common = [
        sys.executable,
        "-m",
        "rlhfsim",
        "sweep",
        str(exp),
        "--jobs",
        "2",
        "--set",
        f"policy.cache_dir={sft_cache}",
    ]
    forked = subprocess.run(
        [*common, "--out", str(tmp_path / "forked")], env=env, cwd=ROOT, capture_output=True, text=True
    )
    spawned = subprocess.run(
        [*common, "--out", str(tmp_path / "spawned"), "--no-fork"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert forked.returncode == 0 and spawned.returncode == 0, forked.stdout + spawned.stdout
    assert "forks of this process" in forked.stdout and "forks of this process" not in spawned.stdout
    for seed in (0,):  # one run per sweep: the fork and the spawn of one child give the same rows
        for name in ("metrics.jsonl", "policy_steps.jsonl"):
            a, b = (tmp_path / side / "fk" / "a" / f"seed{seed}" / name for side in ("forked", "spawned"))
            assert _rows(a) == _rows(b)
        log = (tmp_path / "forked" / "fk" / "a" / f"seed{seed}" / "run.log").read_text()
        assert "rlhfsim run ->" in log and "Traceback" not in log


def test_a_process_that_imported_torch_does_not_fork():
    """GNU OpenMP is not fork-safe once torch has run a parallel region: only a process without torch forks."""
    import torch  # noqa: F401 - this test session has computed with torch

    assert not fork.pristine()


def test_forked_run_reports_exit_codes_and_signals(tmp_path):
    log = open(tmp_path / "log", "w")
    # validate through the whole CLI's entry point (the sweep's children run `rlhfsim run` only): quick exit codes
    ok = fork.fork_run(
        ["validate", str(ROOT / "configs" / "tiny.yaml")],
        log.fileno(),
        {"RLHFSIM_THREADS": "1", "COLUMNS": "80"},
        main=cli.main,
    )
    assert ok.wait(timeout=120) == 0
    bad = fork.fork_run(
        ["validate", str(tmp_path / "missing.yaml")], log.fileno(), {"RLHFSIM_THREADS": "1"}, main=cli.main
    )
    assert bad.wait(timeout=120) == 2
    bad = fork.fork_run(
        ["run", str(tmp_path / "missing.yaml")], log.fileno(), {"RLHFSIM_THREADS": "1"}
    )  # the sweep's entry
    assert bad.wait(timeout=120) == 2
    slow = fork.fork_run(
        ["run", str(ROOT / "configs" / "tiny.yaml"), "--out", str(tmp_path / "r")],
        log.fileno(),
        {"RLHFSIM_THREADS": "1"},
    )
    time.sleep(0.5)
    slow.kill()
    assert slow.wait(timeout=60) == -signal.SIGKILL
    log.close()
