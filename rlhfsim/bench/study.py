"""`rlhfsim bench --only study`: what a study run costs, by phase, and runs per hour.

Users wait for studies, not iterations. This section runs a fixed small study: `runs` runs (seeds 0..runs-1) of a
config at `rounds` rounds, `jobs` at a time, each a child process with `threads` intra-op threads (the sweep's rule,
rlhfsim.sweep.runner.child_env: cores // jobs). SFT (and an offline reward-model set) comes from a warmed cache and
is excluded. Each child is rlhfsim/bench/study_driver.py, which splits its run's seconds by phase. Reported: run
seconds per round by phase, each phase's share, its GEMM floor where it has products (one extra untimed run of the
current tree under a GEMM recorder), seconds per run and runs per hour.

`--baseline REV` unpacks REV's rlhfsim/ and configs/ (git archive) into a temporary folder and times it the same way,
interleaved with the current tree batch by batch (alternating which goes first), so both see the same machine load
and the ratio is measured in one command.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlhfsim.bench.study_driver import PHASES

DRIVER = Path(__file__).with_name("study_driver.py")
TREE = Path(__file__).resolve().parents[2]  # the current tree (holds rlhfsim/ and configs/)


def unpack(rev: str, dest: Path) -> Path:
    """REV's rlhfsim/ and configs/ under dest (git archive | tar); dest."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(TREE), "archive", rev, "rlhfsim", "configs"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def child_env(tree: Path, threads: int) -> dict[str, str]:
    env = dict(os.environ)
    t = str(threads)
    env.update(PYTHONPATH=str(tree), OMP_NUM_THREADS=t, MKL_NUM_THREADS=t, RLHFSIM_THREADS=t, PYTHONUNBUFFERED="1")
    return env


def batch(
    tree: Path,
    config: str,
    seeds: list[int],
    rounds: int,
    jobs: int,
    threads: int,
    sets: list[str],
    work: Path,
    floor: bool = False,
) -> dict:
    """Run one seed per child, `jobs` at once, from `tree`; wall seconds and each run's driver JSON."""
    work.mkdir(parents=True, exist_ok=True)
    queue, running, results = list(seeds), [], {}
    t0 = time.perf_counter()
    while queue or running:
        while queue and len(running) < jobs:
            s = queue.pop(0)
            out, js = work / f"seed{s}", work / f"seed{s}.json"
            args = [
                sys.executable,
                str(DRIVER),
                config,
                "--out",
                str(out),
                "--json",
                str(js),
                "--set",
                f"seed={s}",
                "--set",
                f"loop.rounds={rounds}",
                *[x for kv in sets for x in ("--set", kv)],
            ] + (["--floor"] if floor else [])
            log = open(work / f"seed{s}.log", "w")
            running.append(
                (
                    s,
                    js,
                    log,
                    subprocess.Popen(
                        args, cwd=tree, env=child_env(tree, threads), stdout=log, stderr=subprocess.STDOUT
                    ),
                )
            )
        time.sleep(0.05)
        for item in list(running):
            s, js, log, proc = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                if proc.returncode != 0:
                    tail = (work / f"seed{s}.log").read_text()[-2000:]
                    raise RuntimeError(f"study run seed {s} in {tree} failed (exit {proc.returncode}):\n{tail}")
                results[s] = json.loads(js.read_text())
    return {"wall_s": time.perf_counter() - t0, "runs": [results[s] for s in seeds]}


def sweep_wall(tree: Path, config: str, seeds: list[int], rounds: int, jobs: int, sets: list[str], work: Path) -> float:
    """Wall seconds of `rlhfsim sweep --jobs J` from `tree` over the same runs (one variant, these seeds): the study as
    users run it, with the sweep's own process handling (forks where the tree has them) and thread rule."""
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    exp = {
        "name": "study",
        "question": "how long does a study take?",
        "base": str((tree / config).resolve()),
        "base_overrides": {"loop.rounds": rounds},
        "variants": {"base": {}},
        "seeds": seeds,
        "baseline": "base",
        "primary": {"endpoint": "gold_gain", "better": "higher"},
    }
    (work / "study.yaml").write_text(yaml.safe_dump(exp))
    cmd = [
        sys.executable,
        "-m",
        "rlhfsim",
        "sweep",
        str(work / "study.yaml"),
        "--jobs",
        str(jobs),
        "--out",
        str(work / "runs"),
        *[x for kv in sets for x in ("--set", kv)],
    ]
    env = dict(os.environ, PYTHONPATH=str(tree))
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RLHFSIM_THREADS"):  # the sweep sets its children's threads itself
        env.pop(k, None)
    t0 = time.perf_counter()
    with open(work / "sweep.log", "w") as log:
        subprocess.run(cmd, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def summarise(b: dict) -> dict:
    """Per-round seconds by phase (mean over runs), their shares, seconds per run, runs per hour."""
    runs = b["runs"]
    per_round = {p: statistics.fmean(r["seconds"][p] / r["rounds"] for r in runs) for p in PHASES}
    total = sum(per_round.values())
    return {
        "wall_s": b["wall_s"],
        "runs_per_hour": len(runs) * 3600.0 / b["wall_s"],
        "run_s": statistics.fmean(r["total_s"] for r in runs),
        "round_s": total,
        "phases_s_per_round": per_round,
        "shares": {p: v / total for p, v in per_round.items()},
    }


def bench_study(
    config: str,
    sets: list[str],
    runs: int,
    rounds: int,
    jobs: int,
    threads: int | None,
    baseline: str | None,
    alternations: int,
    floor: bool,
    cache_dir: str | None,
    sweep: bool = False,
) -> dict:
    """The study section (module doc). threads None: the sweep's share, cores // jobs (at least 1). sweep: also time
    `rlhfsim sweep` itself over the same runs in each tree (runs per hour as users see them; interleaved too)."""
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, jobs))
    cache = str(Path(cache_dir or TREE / ".cache" / "rlhfsim").resolve())
    sets = [f"policy.cache_dir={cache}", "output.n_samples=2", *sets]
    seeds = list(range(runs))
    out: dict = {
        "config": config,
        "runs": runs,
        "rounds": rounds,
        "jobs": jobs,
        "threads": threads,
        "overrides": sets,
        "baseline_rev": baseline,
        "alternations": alternations,
    }
    with tempfile.TemporaryDirectory(prefix="rlhfsim-study-") as tmp:
        tmp = Path(tmp)
        trees = {"current": TREE}
        if baseline:
            trees["baseline"] = unpack(baseline, tmp / "baseline_tree")
        for name, tree in trees.items():  # warm the caches (SFT, offline sets per seed) and the disk: untimed
            batch(tree, config, seeds, 1, jobs, threads, sets, tmp / f"warm_{name}")
        per: dict[str, list[dict]] = {name: [] for name in trees}
        for a in range(alternations):
            order = list(trees) if a % 2 == 0 else list(trees)[::-1]
            for name in order:
                per[name].append(
                    summarise(batch(trees[name], config, seeds, rounds, jobs, threads, sets, tmp / f"{name}_{a}"))
                )
            if sweep:
                for name in order:
                    wall = sweep_wall(trees[name], config, seeds, rounds, jobs, sets, tmp / f"sweep_{name}_{a}")
                    out.setdefault("sweep_runs_per_hour", {}).setdefault(name, []).append(runs * 3600.0 / wall)
        for name, batches in per.items():
            out[name] = pooled(batches)
        if baseline:
            ratios = [b["run_s"] / c["run_s"] for b, c in zip(per["baseline"], per["current"])]
            out["speedup_run_s"] = statistics.median(ratios)
            out["speedup_range"] = [min(ratios), max(ratios)]
            out["runs_per_hour_ratio"] = out["current"]["runs_per_hour"] / out["baseline"]["runs_per_hour"]
        if floor:  # one untimed run of the current tree, one process, every GEMM recorded by phase
            f = batch(TREE, config, [0], rounds, 1, threads, sets, tmp / "floor", floor=True)["runs"][0]
            out["floor_s_per_round"] = {p: v["floor_s"] / rounds for p, v in f["floor"].items()}
            out["floor_gflop_per_round"] = {p: v["gflop"] / rounds for p, v in f["floor"].items()}
    return out


def pooled(batches: list[dict]) -> dict:
    """Medians over alternations of each batch summary's numbers (and of each phase)."""
    med = lambda key: statistics.median(b[key] for b in batches)
    phases = {p: statistics.median(b["phases_s_per_round"][p] for b in batches) for p in PHASES}
    total = sum(phases.values())
    return {
        "wall_s": med("wall_s"),
        "runs_per_hour": med("runs_per_hour"),
        "run_s": med("run_s"),
        "round_s": total,
        "run_s_each": [b["run_s"] for b in batches],
        "phases_s_per_round": phases,
        "shares": {p: v / total for p, v in phases.items()},
    }


def table_rows(res: dict, fmt) -> list[tuple[str, str, str]]:
    """(measure, value, note) rows: per phase current [baseline], share, floor; then run seconds and runs per hour."""
    cur, base = res["current"], res.get("baseline")
    floor = res.get("floor_s_per_round", {})
    shape = f"{res['runs']} runs x {res['rounds']} rounds, {res['jobs']} jobs x {res['threads']} threads"
    rows = [
        (
            "study round s (run-seconds per round)",
            fmt(cur["round_s"], "{:.2f}"),
            shape + (f"; baseline {res['baseline_rev']}: {base['round_s']:.2f}" if base else ""),
        )
    ]
    for p in PHASES:
        note = f"{cur['shares'][p]:.0%} of the round"
        if p in floor:
            note += f", GEMM floor {floor[p]:.3f} s"
        if base:
            note += f"; baseline {base['phases_s_per_round'][p]:.3f} s"
        rows.append((f"  {p} s/round", fmt(cur["phases_s_per_round"][p], "{:.3f}"), note))
    rows.append(
        (
            "study run s",
            fmt(cur["run_s"], "{:.1f}"),
            f"mean per run; baseline {base['run_s']:.1f}" if base else "mean per run",
        )
    )
    rows.append(
        (
            "study runs/hour",
            fmt(cur["runs_per_hour"], "{:.0f}"),
            f"baseline {base['runs_per_hour']:.0f}" if base else "",
        )
    )
    for name, rates in res.get("sweep_runs_per_hour", {}).items():
        rows.append(
            (
                f"sweep runs/hour, {name}",
                fmt(statistics.median(rates), "{:.0f}"),
                f"`rlhfsim sweep --jobs {res['jobs']}` end to end; each alternation "
                + " ".join(f"{r:.0f}" for r in rates),
            )
        )
    if base:
        lo, hi = res["speedup_range"]
        rows.append(
            (
                "study speedup (baseline run s / current)",
                fmt(res["speedup_run_s"], "{:.2f}x"),
                f"median of {res['alternations']} interleaved alternations, range {lo:.2f}-{hi:.2f}x",
            )
        )
    return rows
