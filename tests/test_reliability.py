"""Crash safety and resume (SIGKILL at named moments) and divergence guards (issue 9).

Kills use the test-only hook rlhfsim.faults (RLHFSIM_KILL_AT=<phase>:<round>:<event>[:<n>]). Each chain kills one
`rlhfsim run` process after another, resuming each time, and the finished run must equal an uninterrupted one
(timings and SFT bookkeeping aside). The first process of a chain is a real `python -m rlhfsim run`; the rest are
forked from a forkserver that imported rlhfsim once (each fresh interpreter spends seconds importing transformers)
and run the same CLI entry, `rlhfsim.cli.main`, in their own process.
"""

import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rlhfsim.cli import main
from rlhfsim.config import load_config
from rlhfsim.faults import ENV
from rlhfsim.guards import Diverged
from rlhfsim.loop import run
from rlhfsim.tracking import read_jsonl, read_status

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "configs" / "tiny.yaml")
VOLATILE = ("time/", "sft/")  # wall-clock timings; SFT stats differ between a trained and a cached warm start


def strip(rows):
    return [{k: v for k, v in r.items() if not k.startswith(VOLATILE)} for r in rows]


def same_run(a: Path, b: Path) -> None:
    for name in ("metrics.jsonl", "policy_steps.jsonl"):
        assert strip(read_jsonl(a / name)) == strip(read_jsonl(b / name)), name
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    for s in (
        sa,
        sb,
    ):  # bookkeeping: wall time, whether this invocation found SFT in the cache, and the git describe of
        (
            s.pop("wall_time_s"),
            s.pop("sft_cached", None),
            s.pop("code_version"),
        )  # the checkout (a commit meanwhile); code_hash stays
    assert sa == sb
    for f in sorted((a / "rewards").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(f), pd.read_parquet(b / "rewards" / f.name))
    assert sorted(p.name for p in (a / "samples").iterdir()) == sorted(p.name for p in (b / "samples").iterdir())


@pytest.fixture(scope="module")
def reference(tmp_path_factory, sft_cache):
    """The uninterrupted tiny run (2 rounds), in-process with one thread like the subprocesses below."""
    out = tmp_path_factory.mktemp("reference") / "seed0"
    run(load_config(TINY, [f"policy.cache_dir={sft_cache}"]), out=out)
    return out


def rlhfsim(args: list[str], kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", COLUMNS="200")
    if kill_at:
        env[ENV] = kill_at
    return subprocess.run(
        [sys.executable, "-m", "rlhfsim", *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def _cli_child(args: list[str], kill_at: str | None) -> None:
    os.environ.pop(ENV, None)
    if kill_at:
        os.environ[ENV] = kill_at
    torch.set_num_threads(1)  # as the reference and the real subprocesses (OMP_NUM_THREADS=1)
    sys.stdout = sys.stderr = open(os.devnull, "w")
    from rlhfsim.cli import console

    console.file = sys.stdout
    os._exit(main(args))


@pytest.fixture(scope="module")
def forked():
    """Run `rlhfsim.cli.main(args)` in a child forked from a single-threaded, preloaded server; returns its exit code."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["rlhfsim.cli", "rlhfsim.loop"])

    def go(args: list[str], kill_at: str | None = None) -> int:
        proc = ctx.Process(target=_cli_child, args=(args, kill_at))
        proc.start()
        proc.join(300)
        return proc.exitcode

    return go


def checkpoint_round(d: Path) -> int | None:
    for c in ("latest", "previous"):
        if (d / "checkpoints" / c / "round.json").exists():
            return json.loads((d / "checkpoints" / c / "round.json").read_text())["round"]
    return None


# ordered by progress: each kill must be reached by the process resumed after the one before
CHAINS = {
    "sft_and_first_round": [  # a private SFT cache, so the first processes really train the warm start
        "setup:0:step:5",  # inside SFT
        "setup:0:metrics.jsonl",  # half way through round 0's metrics line
        "reward:1:step:1",  # inside reward-model training (tiny: one step per round)
        "evaluate:1:publish",  # first checkpoint written, not yet renamed into place
    ],
    "later_rounds": [
        "policy:1:step:2",  # inside the policy optimiser (PPO)
        "evaluate:1:policy_steps.jsonl",  # half way through the round's optimiser step rows
        "reward:2:step:1",  # inside reward training, resuming from the round-1 checkpoint
        "evaluate:2:publish",  # between the renames: only checkpoints/previous is left
        "evaluate:2:metrics.jsonl",  # torn metrics line of the last round
        "evaluate:2:summary.json",  # summary written to its temp file, not renamed
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_sigkill_then_resume_equals_uninterrupted(chain, reference, tmp_path, sft_cache, forked):
    cache = str(tmp_path / "sft") if chain == "sft_and_first_round" else sft_cache
    out = tmp_path / "run"
    passed = []
    for i, point in enumerate(CHAINS[chain]):
        ck = checkpoint_round(out) if out.exists() else None
        before = (
            [r for r in read_jsonl(out / "metrics.jsonl") if ck is not None and r["round"] <= ck]
            if ck is not None
            else []
        )
        if i == 0:
            p = rlhfsim(["run", TINY, "--out", str(out), "--set", f"policy.cache_dir={cache}"], kill_at=point)
            assert p.returncode == -9, f"{point}: not killed (rc {p.returncode}): {p.stdout[-500:]}{p.stderr[-2000:]}"
        else:
            rc = forked(["run", "--resume", str(out)], kill_at=point)
            assert rc == -9, f"{point}: not killed (exit code {rc})"
        # the killed directory is marked (status running, lock free) and its complete rows are readable
        assert read_status(out)["status"] == "running", point
        rows = read_jsonl(out / "metrics.jsonl")
        # rows of checkpointed rounds survive the resume untouched (timings included): it continued, not restarted
        assert rows[: len(before)] == before, point
        passed.append(point)
    assert forked(["run", "--resume", str(out)]) == 0
    assert read_status(out)["status"] == "finished"
    same_run(reference, out)
    assert passed == CHAINS[chain]
    assert not list(out.rglob(".*.tmp*")) and not list((out / "checkpoints").glob("tmp-*"))  # leftovers cleaned


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grpo", "dr_grpo", "rloo", "online_dpo"])
def test_every_optimizer_resumes_after_a_kill_in_its_updates_as_if_uninterrupted(name, tmp_path, sft_cache, forked):
    """Killed at round 2's first policy update, resumed from round 1's checkpoint (policy, the optimiser's own state,
    RNG streams), the run equals an uninterrupted one (PPO: the chains above)."""
    sets = [
        f"policy.cache_dir={sft_cache}",
        f"optimizer={{name: {name}, iterations: 2, batch_size: 16, group_size: 4}}",
    ]
    run(load_config(TINY, sets), out=tmp_path / "ref")
    out = tmp_path / "run"
    args = ["run", TINY, "--out", str(out)] + [x for s in sets for x in ("--set", s)]
    assert forked(args, kill_at="policy:2:step:1") == -9
    assert checkpoint_round(out) == 1
    assert forked(["run", "--resume", str(out)]) == 0
    same_run(tmp_path / "ref", out)


def test_a_missing_watched_metric_stops_the_run_at_the_first_iteration(tmp_path, sft_cache, monkeypatch, capsys):
    """Fail closed: an optimiser that does not emit a metric its guard watches is stopped, not silently unguarded."""
    from rlhfsim.guards import MissingWatched
    from rlhfsim.optim.group import GroupOptimizer

    real = GroupOptimizer.iteration

    def without_kl(self, *a, **k):
        stats = real(self, *a, **k)
        stats.pop("objective/kl")
        return stats

    monkeypatch.setattr(GroupOptimizer, "iteration", without_kl)
    cfg = load_config(TINY, [f"policy.cache_dir={sft_cache}", "optimizer={name: grpo, batch_size: 16}"])
    with pytest.raises(MissingWatched, match="round 1, phase policy: watched metric 'objective/kl' is missing"):
        run(cfg, out=tmp_path / "r")
    # the CLI: exit 3 (stopped for safety, as a divergence) with the message, not a traceback
    code = main(
        [
            "run",
            TINY,
            "--out",
            str(tmp_path / "c"),
            "--set",
            f"policy.cache_dir={sft_cache}",
            "--set",
            "optimizer={name: grpo, batch_size: 16}",
        ]
    )
    assert code == 3 and "watched metric 'objective/kl' is missing" in capsys.readouterr().out
    assert [r["round"] for r in read_jsonl(tmp_path / "r" / "metrics.jsonl")] == [0]  # nothing after the SFT row


# ----------------------------------------------------------------------------- divergence


@pytest.mark.slow
def test_reward_explosion_stops_with_exit_3_and_keeps_earlier_rounds(tmp_path, sft_cache, capsys):
    out = tmp_path / "run"
    base = ["--set", f"policy.cache_dir={sft_cache}"]
    assert main(["run", TINY, "--out", str(out), *base, "--set", "loop.rounds=1"]) == 0
    keep = {
        p: p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name not in ("config.yaml", "status.json", ".lock")
    }
    rows_before = read_jsonl(out / "metrics.jsonl")
    capsys.readouterr()

    # round 2 with a reward bound far below any logit: the guard must stop it in phase 6
    assert main(["run", "--resume", str(out), "--set", "loop.rounds=2", "--set", "guards.max_abs_reward=0.001"]) == 3
    msg = capsys.readouterr().out
    assert "round 2" in msg and "diagnose" in msg and "collapse/logit_absmax" in msg and "guards.max_abs_reward" in msg
    assert "Traceback" not in msg
    rows = read_jsonl(out / "metrics.jsonl")
    assert rows[:-1] == rows_before  # earlier rows intact
    assert rows[-1]["round"] == 2 and rows[-1]["guard/diverged"] == 1 and rows[-1]["guard/phase"] == "diagnose"
    assert rows[-1]["guard/quantity"] == "collapse/logit_absmax" and rows[-1]["guard/value"] > 0.001
    assert "eval/gold" not in rows[-1]  # the round never got to its evaluation
    for (
        p,
        data,
    ) in keep.items():  # every file of rounds 0-1 byte for byte (appended logs: as a prefix), checkpoint included
        assert (
            p.read_bytes().startswith(data) if p.suffix == ".jsonl" and p.parent == out else p.read_bytes() == data
        ), p
    assert not (out / "rewards" / "round_002.parquet").exists()
    st = read_status(out)
    assert st["status"] == "diverged" and st["divergence"]["round"] == 2 and st["divergence"]["phase"] == "diagnose"

    # resuming unchanged would diverge again: refused; skip_round lets it finish with round 2 marked skipped
    assert main(["run", "--resume", str(out)]) == 2
    assert "diverged in round 2" in capsys.readouterr().out
    assert main(["run", "--resume", str(out), "--set", "guards.on_divergence=skip_round"]) == 0
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["round"] for r in rows] == [0, 1, 2] and rows[-1]["guard/skipped"] == 1
    assert read_status(out)["status"] == "finished" and checkpoint_round(out) == 2


@pytest.mark.slow
def test_nan_in_ppo_skip_round_undoes_the_round(tmp_path, monkeypatch, reference):
    """A NaN policy loss in round 1: stop raises Diverged naming it; skip_round leaves round 1's weights = SFT's."""
    from rlhfsim.ppo.trainer import PPOTrainer

    real = PPOTrainer.iteration
    calls = {"n": 0}

    def poisoned(self, *a, **k):
        stats = real(self, *a, **k)
        calls["n"] += 1
        if calls["n"] == 2:  # second PPO iteration of round 1, after a real update
            stats["loss/policy_avg"] = float("nan")
        return stats

    monkeypatch.setattr(PPOTrainer, "iteration", poisoned)
    # a cache of its own: the session cache holds other tests' SFT policies, and the glob below must find this one
    sft_cache = tmp_path / "sft"
    cfg = load_config(TINY, [f"policy.cache_dir={sft_cache}", "loop.rounds=1"])
    with pytest.raises(Diverged) as e:
        run(cfg, out=tmp_path / "stop")
    assert (e.value.round, e.value.phase, e.value.quantity) == (1, "policy", "loss/policy_avg")
    steps = read_jsonl(tmp_path / "stop" / "policy_steps.jsonl")
    assert len(steps) == 2 and steps[-1]["loss/policy_avg"] is None  # the bad iteration is on record

    calls["n"] = 0
    cfg = load_config(TINY, [f"policy.cache_dir={sft_cache}", "loop.rounds=1", "guards.on_divergence=skip_round"])
    run(cfg, out=tmp_path / "skip")
    row = read_jsonl(tmp_path / "skip" / "metrics.jsonl")[-1]
    assert row["guard/skipped"] == 1 and row["guard/quantity"] == "loss/policy_avg"
    sft = load_file(next(Path(sft_cache).glob("sft-*/model.safetensors")))
    after = load_file(tmp_path / "skip" / "checkpoints" / "latest" / "policy.safetensors")
    key = "transformer.h.0.attn.c_attn.weight"
    assert torch.equal(sft[key], after[key]) and all(torch.equal(sft[k], after[k]) for k in set(sft) & set(after))
    # ...while PPO does move these weights when nothing is skipped
    moved = load_file(reference / "checkpoints" / "latest" / "policy.safetensors")
    assert not torch.equal(sft[key], moved[key])
