"""Forked sweep runs (rlhfsim.sweep.fork) equal subprocess runs, and a forked run behaves like a Popen."""

import json
import signal
import time
from pathlib import Path

import pytest

from rlhfsim.cli import main
from rlhfsim.sweep import fork

ROOT = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time/")} for line in path.read_text().splitlines()]


def test_forked_sweep_equals_subprocess_sweep(tmp_path, sft_cache, monkeypatch):
    if not fork.pristine():
        pytest.skip("this test process runs several torch threads: the sweep (rightly) does not fork from it")
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"name: fk\nquestion: q\nbase: {ROOT / 'configs' / 'tiny.yaml'}\nbase_overrides: {{loop.rounds: 1}}\n"
                   "variants: {a: {}}\nseeds: [0, 1]\nbaseline: a\nprimary: {endpoint: gold_gain, better: higher}\n")
    used = []
    real = fork.fork_run
    monkeypatch.setattr(fork, "fork_run", lambda *a, **k: used.append(1) or real(*a, **k))
    common = [str(exp), "--jobs", "2", "--set", f"policy.cache_dir={sft_cache}"]
    assert main(["sweep", *common, "--out", str(tmp_path / "forked")]) == 0
    assert len(used) == 2  # both runs were forks
    assert main(["sweep", *common, "--out", str(tmp_path / "spawned"), "--no-fork"]) == 0
    assert len(used) == 2
    for seed in (0, 1):
        for name in ("metrics.jsonl", "ppo_steps.jsonl"):
            a, b = (tmp_path / side / "fk" / "a" / f"seed{seed}" / name for side in ("forked", "spawned"))
            assert _rows(a) == _rows(b)
        log = (tmp_path / "forked" / "fk" / "a" / f"seed{seed}" / "run.log").read_text()
        assert "rlhfsim run ->" in log and "Traceback" not in log


def test_forked_run_reports_exit_codes_and_signals(tmp_path):
    log = open(tmp_path / "log", "w")
    ok = fork.fork_run(["validate", str(ROOT / "configs" / "tiny.yaml")], log.fileno(), {"RLHFSIM_THREADS": "1", "COLUMNS": "80"})
    assert ok.wait(timeout=120) == 0
    bad = fork.fork_run(["validate", str(tmp_path / "missing.yaml")], log.fileno(), {"RLHFSIM_THREADS": "1"})
    assert bad.wait(timeout=120) == 2
    slow = fork.fork_run(["run", str(ROOT / "configs" / "tiny.yaml"), "--out", str(tmp_path / "r")], log.fileno(), {"RLHFSIM_THREADS": "1"})
    time.sleep(0.5)
    slow.kill()
    assert slow.wait(timeout=60) == -signal.SIGKILL
    log.close()
