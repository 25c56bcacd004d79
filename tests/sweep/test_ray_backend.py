"""`rlhfsim sweep --backend ray`: the run directories of a local Ray (2 CPUs) equal the local backend's, also for a run whose
worker is killed once mid-run (Ray retries the task; the retry resumes the run from its checkpoint)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rlhfsim.cli import main
from rlhfsim.faults import ENV
from rlhfsim.tracking import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TIMINGS = ("time/",)


def experiment(tmp_path: Path, sft_cache: str, extra: str = "") -> Path:
    p = tmp_path / "tiny4.yaml"
    p.write_text(
        f"name: tiny4\nquestion: same runs on Ray?\nbase: {ROOT / 'configs' / 'tiny.yaml'}\n"
        f"base_overrides: {{policy.cache_dir: {sft_cache}}}\nvariants: {{a: {{loop.rounds: 1}}, b: {{optimizer.kl_coef: 0.2}}}}\n"
        f"seeds: [0]\n{extra}"
    )
    return p


def strip(rows):
    return [{k: v for k, v in r.items() if not k.startswith(TIMINGS)} for r in rows]


@pytest.mark.slow
def test_ray_sweep_with_killed_workers_equals_the_local_sweep(tmp_path, sft_cache):
    pytest.importorskip("ray")
    exp = experiment(tmp_path, sft_cache)
    # local backend, one thread per run (cores // jobs), as a Ray task with resources.cpus = 1
    assert main(["sweep", str(exp), "--out", str(tmp_path / "local"), "--jobs", str(os.cpu_count() or 1)]) == 0
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", COLUMNS="200")
    # b's run (2 rounds) loses its first worker after round 2's rows, before its checkpoint; a's (1 round) runs through:
    # every process start costs seconds of imports, and one seed, one killed run and one that is not prove the retry
    # and the resume as well as more would (both runs go at once on the 2 Ray CPUs)
    env[ENV] = "evaluate:2:publish"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlhfsim",
            "sweep",
            str(exp),
            "--out",
            str(tmp_path / "ray"),
            "--backend",
            "ray",
            "--ray-cpus",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    runs = sorted(d.relative_to(tmp_path / "local") for d in (tmp_path / "local").glob("tiny4/*/seed*"))
    assert len(runs) == 2 and runs == sorted(
        d.relative_to(tmp_path / "ray") for d in (tmp_path / "ray").glob("tiny4/*/seed*")
    )
    for rel in runs:
        a, b = tmp_path / "local" / rel, tmp_path / "ray" / rel
        files = lambda d: sorted(
            str(f.relative_to(d)) for f in d.rglob("*") if f.is_file() and "checkpoints" not in f.parts
        )
        assert files(a) == files(b)
        for name in ("metrics.jsonl", "policy_steps.jsonl"):
            assert strip(read_jsonl(a / name)) == strip(read_jsonl(b / name)), (rel, name)
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
        for s in (sa, sb):  # timing, and bookkeeping: which sweep trained the shared SFT warm start first
            (
                s.pop("wall_time_s"),
                s.pop("sft_cached"),
                s.pop("code_version"),
            )  # git describe: a commit meanwhile; code_hash stays
        assert sa == sb
        for f in sorted((a / "rewards").glob("*.parquet")):
            pd.testing.assert_frame_equal(pd.read_parquet(f), pd.read_parquet(b / "rewards" / f.name))
        log = (b / "run.log").read_text()
        killed = rel.parts[1] == "b"
        assert (
            log.count("(Ray task, pid") == 1 + killed and ("--resume" in log) == killed
        )  # b: killed once, resumed by the retry
        assert json.loads((b / "status.json").read_text())["status"] == "finished"


def test_bad_backend_settings_exit_2_with_the_fix(tmp_path, sft_cache, capsys, monkeypatch):
    exp = experiment(tmp_path, sft_cache)

    def err(args):
        assert main(["sweep", str(exp), "--out", str(tmp_path / "runs"), *args]) == 2
        e = capsys.readouterr()
        return " ".join((e.out + e.err).split())

    assert "is for --backend ray" in err(["--address", "auto"])
    assert "is for --backend ray" in err(["--ray-cpus", "2"])
    with pytest.raises(SystemExit) as ex:
        main(["sweep", str(exp), "--backend", "slurm"])
    assert ex.value.code == 2 and "'local', 'ray'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert "pip install -e '.[ray]'" in err(["--backend", "ray"])
    monkeypatch.undo()
    exp = experiment(tmp_path, sft_cache, "resources: {cpus: 1, gpu: 1}\n")
    assert "resources.gpu: unknown key" in err([])


def test_a_run_larger_than_the_cluster_is_a_config_error_naming_the_field():
    from rlhfsim.config import ConfigError
    from rlhfsim.experiment.spec import ResourcesSpec
    from rlhfsim.sweep.ray_backend import check_fits

    cluster = {"CPU": 2.0, "memory": 4 * 2**30}  # Ray's cluster_resources() of a 2-CPU node without GPUs
    check_fits(ResourcesSpec(cpus=2, memory_gb=4), cluster)  # exactly the whole cluster fits
    for spec, field, numbers in (
        (dict(cpus=3), "cpus", "3 CPU but the Ray cluster has 2"),
        (dict(gpus=0.5), "gpus", "0.5 GPU but the Ray cluster has 0"),
        (dict(memory_gb=4.5), "memory_gb", "4.5 GiB memory but the Ray cluster has 4 GiB"),
    ):
        with pytest.raises(ConfigError) as e:
            check_fits(ResourcesSpec(**spec), cluster)
        msg = str(e.value)
        assert msg.startswith(f"resources.{field}:") and numbers in msg and f"lower resources.{field}" in msg
