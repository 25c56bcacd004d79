"""Experiment files, variant expansion and naming, skip/resume/start decisions, and the process runner."""

import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from rlhfsim import sweep
from rlhfsim.cli import main
from rlhfsim.config import ConfigError, config_from_dict, dump_config
from rlhfsim.sweep import Decision, Job, decide, grid_variants, load_experiment, safe_name

ROOT = Path(__file__).resolve().parents[1]
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def write_exp(tmp_path: Path, body: str, name: str = "exp.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(body))
    return p


BASE = f"base: {ROOT / 'configs' / 'tiny.yaml'}\n"


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "raw", ["../../etc/passwd", "..", ".", "a/b\\c", ".hidden", "-rf", "x y:z*?", "", "é ü", "a..b", "a" * 300]
)
def test_safe_name_is_a_plain_directory_name(raw):
    n = safe_name(raw)
    assert SAFE.match(n), n
    assert "/" not in n and "\\" not in n and ".." not in n
    assert len(n) <= sweep.MAX_NAME


def test_long_names_stay_distinct():
    assert safe_name("a" * 200 + "x") != safe_name("a" * 200 + "y")


def test_grid_product_size_order_and_values():
    grid = {"optimizer.kl_coef": [0.01, 0.1, 1e-5], "reward.utility": ["logsigmoid", "inv"]}
    vs = grid_variants(grid)
    assert len(vs) == 6
    names = list(vs)
    assert all(SAFE.match(n) for n in names) and len(set(names)) == 6
    assert names[0] == "kl_coef-0.01__utility-logsigmoid"
    assert vs["kl_coef-1e-05__utility-inv"] == {"optimizer.kl_coef": 1e-5, "reward.utility": "inv"}


def test_grid_names_use_longer_keys_when_leaves_collide_and_handle_dict_values():
    vs = grid_variants(
        {
            "policy.n_layer": [1],
            "reward.n_layer": [1, 2],
            "reward.prompt_aware": [None, {"open": "inv", "closed": "linear"}],
        }
    )
    names = list(vs)
    assert len(names) == 4
    assert names[0] == "policy.n_layer-1__reward.n_layer-1__prompt_aware-null"
    assert names[1] == "policy.n_layer-1__reward.n_layer-1__prompt_aware-open-inv_closed-linear"


def test_grid_values_that_sanitize_alike_are_deduplicated():
    vs = grid_variants({"reward.utility.name": ["a/b", "a b", "a:b"]})
    assert list(vs) == ["name-a_b", "name-a_b-2", "name-a_b-3"]


def test_named_variants_become_safe_unique_directories(tmp_path):
    p = write_exp(
        tmp_path,
        BASE
        + textwrap.dedent("""
        name: study
        question: q?
        variants:
          "BT / logsigmoid": {}
          "BT : logsigmoid": {optimizer.kl_coef: 0.1}
          "../escape": {optimizer.kl_coef: 0.2}
        seeds: [0]
        baseline: "BT / logsigmoid"
    """),
    )
    exp = load_experiment(p)
    names = [v.name for v in exp.variants]
    assert names == ["BT_logsigmoid", "BT_logsigmoid-2", "escape"]
    assert exp.baseline == "BT_logsigmoid"
    runs = exp.runs(tmp_path / "runs")
    for r in runs:
        assert r.path.resolve().is_relative_to((tmp_path / "runs" / "study").resolve())
        assert r.config.output.variant == r.path.parent.name


def test_smoke_experiment_expands_to_validated_runs(tmp_path):
    exp = load_experiment(ROOT / "experiments" / "smoke.yaml")
    assert exp.name == "smoke" and [v.name for v in exp.variants] == ["bradley_terry", "prompt_aware"]
    assert exp.baseline == "bradley_terry"
    runs = exp.runs(tmp_path / "r")
    assert len(runs) == 4
    assert [(r.variant, r.seed) for r in runs] == [
        ("bradley_terry", 0),
        ("prompt_aware", 0),
        ("bradley_terry", 1),
        ("prompt_aware", 1),
    ]
    for r in runs:
        assert r.path == tmp_path / "r" / "smoke" / r.variant / f"seed{r.seed}"
        assert (
            r.config.seed == r.seed and r.config.output.experiment == "smoke" and r.config.output.variant == r.variant
        )
        assert r.config.loop.rounds == 4 and r.config.loop.prompts_per_round == 32
        assert yaml.safe_load(r.config_text)["seed"] == r.seed
    pa = [r for r in runs if r.variant == "prompt_aware"][0].config
    assert pa.reward.prompt_aware["open"].name == "inv"


def test_grid_base_overrides_rounds_override_and_cli_sets(tmp_path):
    p = write_exp(
        tmp_path,
        """
        name: g
        question: does beta matter?
        base_overrides: {loop.rounds: 5, device: cpu}
        grid: {optimizer.kl_coef: [0.0, 0.2]}
        seeds: 3
        rounds_override: 2
    """,
    )
    exp = load_experiment(p, sets=["loop.prompts_per_round=8"])
    runs = exp.runs(tmp_path / "r", sets=["loop.prompts_per_round=8"])
    assert len(runs) == 6 and exp.spec.seeds == [0, 1, 2]
    assert {r.config.optimizer.kl_coef for r in runs} == {0.0, 0.2}
    assert all(
        r.config.loop.rounds == 2 and r.config.loop.prompts_per_round == 8 and r.config.device == "cpu" for r in runs
    )
    assert exp.baseline == "kl_coef-0"


# ----------------------------------------------------------------------------- bad experiment files


@pytest.mark.parametrize(
    "body, expected",
    [
        ("name: x\nquestion: q\nseed: [0]\n" + BASE, ["seed", "did you mean 'seeds'"]),
        ("name: x\n" + BASE, ["question", "missing"]),
        (
            "name: x\nquestion: q\nvariants: {a: {optimizer.kl_cof: 0.1}}\n" + BASE,
            ["variant 'a'", "optimizer.kl_cof", "kl_coef"],
        ),
        ("name: x\nquestion: q\nvariants: {a: {loop.rounds: many}}\n" + BASE, ["variant 'a'", "loop.rounds", "many"]),
        ("name: x\nquestion: q\ngrid: {optimizer.kl_coef: 0.1}\n" + BASE, ["grid", "list"]),
        ("name: x\nquestion: q\ngrid: {optimizer.kl_coef: []}\n" + BASE, ["grid", "no values"]),
        ("name: x\nquestion: q\ngrid: {optimizer.kl_coef: [1]}\nvariants: {a: {}}\n" + BASE, ["not both"]),
        (
            "name: x\nquestion: q\nvariants: {alpha: {}, beta: {}}\nbaseline: alpah\n" + BASE,
            ["baseline", "alpah", "did you mean 'alpha'"],
        ),
        ("name: x\nquestion: q\nvariants: {a: {seed: 3}}\n" + BASE, ["variant 'a'", "'seed'", "seeds"]),
        ("name: x\nquestion: q\nvariants: {a: {output.variant: b}}\n" + BASE, ["output.variant", "may not"]),
        ("name: x\nquestion: q\nbase: nowhere.yaml\n", ["base", "nowhere.yaml", "not found"]),
        ("name: ../x\nquestion: q\n" + BASE, ["name", "plain directory name"]),
        ("name: x\nquestion: q\nseeds: [0, 0]\n" + BASE, ["seeds", "repeat"]),
        ("name: x\nquestion: q\nseeds: [-1]\n" + BASE, ["seeds", ">= 0"]),
        ("name: x\nquestion: q\n", ["base", "base_overrides"]),
        ("name: x\nquestion: q\nrounds_override: 0\n" + BASE, ["rounds_override"]),
        ("name: x\nquestion: q\nvariants: {a: {ppo..x: 1}}\n" + BASE, ["ppo..x", "dotted"]),
        ("- just a list\n", ["top level must be a mapping"]),
    ],
)
def test_bad_experiment_files_name_the_field(tmp_path, body, expected):
    p = write_exp(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    msg = str(e.value)
    for part in expected:
        assert part in msg, (part, msg)


def test_bad_experiment_exits_2_before_running(tmp_path, capsys):
    p = write_exp(tmp_path, "name: x\nquestion: q\nvariants: {a: {optimizer.kl_cof: 0.1}}\n" + BASE)
    assert main(["sweep", str(p), "--out", str(tmp_path / "runs")]) == 2
    assert "kl_coef" in capsys.readouterr().out
    assert not (tmp_path / "runs").exists()
    assert main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    assert main(["sweep", str(ROOT / "experiments" / "smoke.yaml"), "--jobs", "0"]) == 2


def test_dry_run_writes_nothing(tmp_path, capsys):
    assert main(["sweep", str(ROOT / "experiments" / "smoke.yaml"), "--out", str(tmp_path / "runs"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "start" in out and "prompt_aware" in out
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- skip / resume / start


def tiny_cfg(**over) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    raw["loop"]["rounds"] = 3
    for k, v in over.items():
        sweep.set_dotted(raw, k, v)
    return config_from_dict(raw).model_dump(mode="json")


def fab_run(d: Path, cfg: dict, summary_rounds=None, ckpt_round=None, metrics_rounds=None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    if metrics_rounds is not None:
        (d / "metrics.jsonl").write_text(
            "".join(json.dumps({"round": r, "eval/gold": 0.1}) + "\n" for r in range(metrics_rounds + 1))
        )
    if summary_rounds is not None:
        (d / "summary.json").write_text(json.dumps({"rounds_completed": summary_rounds, "gold_final": 0.2}))
    if ckpt_round is not None:
        ck = d / "checkpoints" / "latest"
        ck.mkdir(parents=True)
        (ck / "round.json").write_text(json.dumps({"round": ckpt_round}))
        (ck / "state.pt").write_bytes(b"x")
    return d


def test_decisions_on_fabricated_run_dirs(tmp_path):
    cfg = tiny_cfg()
    assert decide(tmp_path / "nope", cfg).action == "start"
    only_cfg = fab_run(tmp_path / "only_cfg", cfg)
    assert decide(only_cfg, cfg).action == "start"
    done = fab_run(tmp_path / "done", cfg, summary_rounds=3, ckpt_round=3, metrics_rounds=3)
    assert decide(done, cfg) == Decision("skip", "finished (3 rounds)")
    killed = fab_run(tmp_path / "killed", cfg, ckpt_round=1, metrics_rounds=2)
    d = decide(killed, cfg)
    assert d.action == "resume" and "round 1 of 3" in d.reason
    # a killed run whose checkpoint is unreadable: nothing to resume from
    (killed / "checkpoints" / "latest" / "round.json").write_text("{")
    assert decide(killed, cfg).action == "start"
    # 'previous' survives a kill between the two renames
    prev = fab_run(tmp_path / "prev", cfg)
    (prev / "checkpoints" / "previous").mkdir(parents=True)
    (prev / "checkpoints" / "previous" / "round.json").write_text('{"round": 2}')
    (prev / "checkpoints" / "previous" / "state.pt").write_bytes(b"x")
    assert decide(prev, cfg).action == "resume"
    # rounds raised since the run finished: resume from its last checkpoint
    more = tiny_cfg(**{"loop.rounds": 5})
    d = decide(done, more)
    assert d.action == "resume" and "round 3 of 5" in d.reason
    # finished with fewer rounds and no checkpoint: start again
    nock = fab_run(tmp_path / "nock", cfg, summary_rounds=2, metrics_rounds=2)
    assert decide(nock, cfg).action == "start"
    # finished with more rounds than configured, or results of another config: never overwritten silently
    assert decide(done, tiny_cfg(**{"loop.rounds": 2})).action == "conflict"
    d = decide(done, tiny_cfg(**{"optimizer.kl_coef": 0.3}))
    assert d.action == "conflict" and "optimizer.kl_coef" in d.reason
    # output.* (e.g. another --out root) is not a different experiment
    assert decide(done, tiny_cfg(**{"output.dir": "/elsewhere", "policy.cache_dir": "/c"})).action == "skip"
    # a crashed run of another config with nothing worth keeping simply starts
    assert decide(only_cfg, tiny_cfg(**{"optimizer.kl_coef": 0.3})).action == "start"


def test_diverged_and_in_use_run_dirs_are_not_rerun(tmp_path, capsys):
    import fcntl

    cfg = tiny_cfg()
    div = fab_run(tmp_path / "div", cfg, ckpt_round=1, metrics_rounds=2)
    (div / "status.json").write_text(
        json.dumps(
            {"status": "diverged", "divergence": {"round": 2, "phase": "ppo", "quantity": "loss", "value": "nan"}}
        )
    )
    d = decide(div, cfg)
    assert d.action == "conflict" and "diverged in round 2" in d.reason and "loss = nan" in d.reason
    # another process holds the run's lock: the sweep never touches it, even with --restart-changed
    exp = sweep.build_experiment(
        sweep.parse_experiment({"name": "t", "question": "q", "base": str(ROOT / "configs" / "tiny.yaml")}), None
    )
    rs = exp.runs(tmp_path / "runs")[0]
    busy = fab_run(rs.path, rs.config.model_dump(mode="json"), ckpt_round=1, metrics_rounds=1)
    (busy / "status.json").write_text(json.dumps({"status": "running", "pid": 4242}))
    with open(busy / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        [job] = sweep.plan(exp, tmp_path / "runs")
        assert job.decision.action == "busy" and "pid 4242" in job.decision.reason
        assert (
            main(
                [
                    "sweep",
                    str(write_exp(tmp_path, BASE + "name: t\nquestion: q\n")),
                    "--out",
                    str(tmp_path / "runs"),
                    "--restart-changed",
                ]
            )
            == 1
        )
        assert "in use" in capsys.readouterr().out
    assert (busy / "metrics.jsonl").is_file() and (busy / "checkpoints" / "latest" / "state.pt").is_file()
    assert sweep.plan(exp, tmp_path / "runs")[0].decision.action == "resume"  # lock released: a killed run is resumed
    assert (busy / "metrics.jsonl").is_file()


def test_plan_uses_decisions_per_run(tmp_path):
    exp = load_experiment(ROOT / "experiments" / "smoke.yaml")
    out = tmp_path / "runs"
    runs = exp.runs(out)
    n = runs[0].config.loop.rounds
    fab_run(runs[0].path, runs[0].config.model_dump(mode="json"), summary_rounds=n, metrics_rounds=n)
    fab_run(runs[1].path, runs[1].config.model_dump(mode="json"), ckpt_round=n - 1, metrics_rounds=n - 1)
    jobs = sweep.plan(exp, out)
    assert [j.decision.action for j in jobs] == ["skip", "resume", "start", "start"]


def test_child_env_threads_and_gpus():
    env = sweep.child_env(slot=1, jobs=2, gpus=["0", "1"], cores=16)
    assert env["OMP_NUM_THREADS"] == "8" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert sweep.child_env(slot=2, jobs=3, gpus=["4", "5"], cores=2)["CUDA_VISIBLE_DEVICES"] == "4"
    assert sweep.child_env(slot=0, jobs=4, gpus=[], cores=2)["OMP_NUM_THREADS"] == "1"
    assert sweep.child_env(0, 4, [], 2).get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")


# ----------------------------------------------------------------------------- the runner (with stand-in children)

FAKE_CHILD = r"""
import json, os, sys, time, yaml
from pathlib import Path
args = sys.argv[1:]
d = Path(args[args.index('--resume') + 1]) if '--resume' in args else Path(args[args.index('--out') + 1])
cfg = yaml.safe_load((d / 'config.yaml').read_text())
Path(d / 'env.json').write_text(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS'), 'resume': '--resume' in args, 'pid': os.getpid()}))
if cfg['optimizer']['kl_coef'] == 0.5:
    print('round 0 ...', flush=True)
    raise RuntimeError("deliberate failure for the test [{'x'}] [bold]")
with open(d / 'metrics.jsonl', 'w') as f:
    for r in range(cfg['loop']['rounds'] + 1):
        f.write(json.dumps({'round': r, 'eval/gold': 0.1 * r}) + '\n')
time.sleep(0.2)
(d / 'summary.json').write_text(json.dumps({'rounds_completed': cfg['loop']['rounds'], 'gold_final': 0.3}))
"""


def test_runner_isolates_failures_runs_in_parallel_and_skips_finished(tmp_path, monkeypatch, capsys):
    script = tmp_path / "child.py"
    script.write_text(FAKE_CHILD)

    def fake_command(run_dir, action):
        return [sys.executable, str(script)] + (
            ["--resume", str(run_dir)] if action == "resume" else ["--out", str(run_dir)]
        )

    monkeypatch.setattr(sweep.runner, "run_command", fake_command)
    p = write_exp(
        tmp_path,
        BASE
        + textwrap.dedent("""
        name: runner
        question: does the runner survive a crash?
        variants: {ok: {optimizer.kl_coef: 0.1}, boom: {optimizer.kl_coef: 0.5}, ok2: {optimizer.kl_coef: 0.2}}
        seeds: [0, 1]
        rounds_override: 2
    """),
    )
    out = tmp_path / "runs"
    exp = load_experiment(p)
    jobs = sweep.plan(exp, out)
    # a stale file from an earlier attempt is cleared before a fresh start
    stale = jobs[0].spec.path
    stale.mkdir(parents=True)
    for name in ("policy_steps.jsonl", "ppo_steps.jsonl"):  # the steps file under its name and the older one
        (stale / name).write_text("stale\n")
    sweep.execute(jobs, n_jobs=2, poll_s=0.05, gpus=[])
    status = {(j.spec.variant, j.spec.seed): j.status for j in jobs}
    assert status == {
        ("ok", 0): "finished",
        ("boom", 0): "failed",
        ("ok2", 0): "finished",
        ("ok", 1): "finished",
        ("boom", 1): "failed",
        ("ok2", 1): "finished",
    }
    boom = [j for j in jobs if j.spec.variant == "boom"][0]
    assert "exit code 1" in boom.detail and "deliberate failure for the test" in boom.detail
    assert "deliberate failure" in (boom.spec.path / "run.log").read_text()
    assert not (stale / "ppo_steps.jsonl").exists()
    assert not (stale / "policy_steps.jsonl").exists() or "stale" not in (stale / "policy_steps.jsonl").read_text()
    assert json.loads((jobs[0].spec.path / "env.json").read_text())["omp"] == str(max(1, (os.cpu_count() or 1) // 2))
    # resolved config written into every run dir
    assert yaml.safe_load((jobs[0].spec.path / "config.yaml").read_text())["output"]["variant"] == "ok"

    # second sweep through the CLI: finished runs skipped, failed ones retried (and fail again) -> exit 1
    capsys.readouterr()
    rc = main(["sweep", str(p), "--out", str(out), "--jobs", "2"])
    assert rc == 1
    printed = capsys.readouterr().out
    assert (
        "skipped" in printed and "[{'x'}]" in printed and "[bold]" in printed
    )  # reasons are shown literally, not as markup
    jobs2 = sweep.plan(exp, out)
    assert [j.decision.action for j in jobs2 if j.spec.variant != "boom"] == ["skip"] * 4
    assert (out / "runner" / "experiment.yaml").is_file()
    rec = yaml.safe_load((out / "runner" / "experiment.yaml").read_text())
    assert rec["question"] == "does the runner survive a crash?" and list(rec["variants"]) == ["ok", "boom", "ok2"]
    again = load_experiment(out / "runner" / "experiment.yaml")  # the record is itself a valid experiment
    assert [r.config_text for r in again.runs(out)] == [j.spec.config_text for j in jobs]

    # a checkpointed unfinished run is resumed with --resume
    d = [j for j in jobs2 if j.spec.variant == "ok" and j.spec.seed == 1][0].spec.path
    (d / "summary.json").unlink()
    (d / "checkpoints" / "latest").mkdir(parents=True)
    (d / "checkpoints" / "latest" / "round.json").write_text('{"round": 1}')
    (d / "checkpoints" / "latest" / "state.pt").write_bytes(b"x")
    jobs3 = [j for j in sweep.plan(exp, out) if j.spec.variant != "boom"]
    assert [j.decision.action for j in jobs3] == ["skip", "skip", "resume", "skip"]
    sweep.execute(jobs3, n_jobs=1, poll_s=0.05, gpus=[])
    assert json.loads((d / "env.json").read_text())["resume"] is True
    assert [j.status for j in jobs3] == ["skipped", "skipped", "finished", "skipped"]


def test_results_table_lists_every_run():
    from rich.console import Console

    exp = sweep.build_experiment(
        sweep.parse_experiment({"name": "t", "question": "q", "base_overrides": {"device": "cpu"}}), None
    )
    rs = exp.runs("runs")[0]
    jobs = [
        Job(rs, Decision("skip", "finished"), status="skipped", detail="finished (3 rounds)"),
        Job(rs, Decision("start", "new"), status="failed", detail="exit code 1: RuntimeError: x"),
    ]
    con = Console(record=True, width=200)
    con.print(sweep.results_table(jobs, "t"))
    text = con.export_text()
    assert "skipped" in text and "failed" in text and "RuntimeError: x" in text


@pytest.mark.slow
def test_real_tiny_sweep_then_skip(tmp_path, sft_cache):
    """One real `rlhfsim run` child (1 variant x 1 seed, 1 round); a second sweep skips it, a third resumes it."""
    p = write_exp(
        tmp_path,
        f"""
        name: real
        question: does a real run finish under the sweep?
        base: {ROOT / "configs" / "tiny.yaml"}
        base_overrides: {{policy.cache_dir: {sft_cache}, loop.rounds: 1}}
        seeds: [0]
    """,
    )
    out = tmp_path / "runs"
    assert main(["sweep", str(p), "--out", str(out)]) == 0, (out / "real" / "default" / "seed0" / "run.log").read_text()
    d = out / "real" / "default" / "seed0"
    s = json.loads((d / "summary.json").read_text())
    assert s["rounds_completed"] == 1
    assert (d / "rewards" / "round_001.parquet").is_file()
    assert (
        dump_config(config_from_dict(yaml.safe_load((d / "config.yaml").read_text())))
        == (d / "config.yaml").read_text()
    )
    jobs = sweep.plan(load_experiment(p), out)
    assert [j.decision.action for j in jobs] == ["skip"]
    # one more round asked for: the real child resumes from the round-1 checkpoint (`rlhfsim run --resume`)
    p.write_text(p.read_text().replace("loop.rounds: 1", "loop.rounds: 2"))
    assert [j.decision.action for j in sweep.plan(load_experiment(p), out)] == ["resume"]
    assert main(["sweep", str(p), "--out", str(out)]) == 0, (d / "run.log").read_text()
    assert "--resume" in (d / "run.log").read_text()
    assert json.loads((d / "summary.json").read_text())["rounds_completed"] == 2
    assert [json.loads(ln)["round"] for ln in (d / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    # the report reads what real runs write: every figure is drawn, nothing is missing
    rep = tmp_path / "rep"
    assert main(["report", str(p), "--runs", str(out), "-o", str(rep)]) == 0
    md = (rep / "report.md").read_text()
    assert "Not drawn" not in md and "Nothing missing" in md, md.split("## Figures", 1)[1]
    # an A/B page's 6 core figures (fig3 belongs to over-optimisation pages, report/registry.py), plus the diagnostics that apply
    assert len(list(rep.glob("fig*.png"))) >= 6


def test_runs_sharing_an_offline_reward_model_wait_for_one_to_build_it():
    """An ensemble's mean / WCO / UWO arms of one seed pre-train the same offline members (one cache entry): the runner
    starts one and holds the others until its round 0, as it does for a shared SFT policy; other seeds go on."""
    from rlhfsim.config import load_config
    from rlhfsim.sweep.runner import may_start, warm_groups

    def groups(*over):
        return warm_groups(load_config(ROOT / "configs" / "realistic.yaml", list(over)))

    mean, wco = groups("reward.ensemble_size=3"), groups("reward.ensemble_size=3", "reward.aggregation=wco")
    other_seed = groups("reward.ensemble_size=3", "reward.aggregation=wco", "seed=1")
    assert mean == wco and len(mean) == 2 and other_seed != wco and other_seed[0] == wco[0]  # one SFT for every seed
    assert not may_start(wco, set(), [mean])  # the mean arm is building the members: wait
    assert may_start(wco, set(mean), [mean])  # ... until it logged round 0
    assert not may_start(other_seed, set(), [mean])  # the SFT policy is shared and not built yet
    assert may_start(other_seed, {mean[0]}, [mean])  # SFT built: another seed's offline set may be built meanwhile
    assert len(groups("reward.offline.comparisons=0")) == 1  # no offline set: only the SFT group
