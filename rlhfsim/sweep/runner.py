"""Runs the planned jobs as `rlhfsim run` subprocesses, N at once, with overall progress.

Each run is a separate process, so one crash never stops the others; each child gets its share of
CPU threads and, where there are GPUs, one GPU of its own (round-robin over job slots).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rlhfsim.files import atomic_write_text
from rlhfsim.sweep import fork as forking
from rlhfsim.sweep.plan import Job, clear_run_dir, read_summary

# ----------------------------------------------------------------------------- resources


def visible_gpus() -> list[str]:
    """GPU ids a child may be pinned to: CUDA_VISIBLE_DEVICES if set, else torch's count (no CUDA context made)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch / no driver: CPU only
        return []


def child_env(slot: int, jobs: int, gpus: list[str], cores: int | None = None) -> dict[str, str]:
    """Environment of the child in job slot `slot`: its share of CPU threads, and its own GPU where there are GPUs.

    Threads: cores // jobs intra-op threads per run (OMP_NUM_THREADS, MKL_NUM_THREADS, and RLHFSIM_THREADS, which a
    forked run reads), at least 1: `--jobs 2` on 2 cores runs two 1-thread runs, `--jobs 1` one 2-thread run. Runs at
    these sizes are small GEMMs and many small ops that a second thread speeds up far less than 2x, so the cores a study
    is given go furthest as one thread per run (docs/performance.md, "Study throughput", measures runs/hour at jobs 1
    and 2 x threads 1 and 2). Oversubscribing (jobs x threads > cores) makes a parallel region's threads wait for each
    other's time slices. The thread count is part of the SFT cache key, so it is the same for every run of a sweep."""
    cores = cores or os.cpu_count() or 1
    threads = str(max(1, cores // max(1, jobs)))
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, RLHFSIM_THREADS=threads, COLUMNS="160", PYTHONUNBUFFERED="1"
    )
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    return env


def run_command(run_dir: Path, action: str) -> list[str]:
    base = [sys.executable, "-m", "rlhfsim", "run"]
    if action == "resume":
        return base + ["--resume", str(run_dir)]
    return base + [str(run_dir / "config.yaml"), "--out", str(run_dir)]


def tail_reason(log_path: Path, n: int = 3, max_chars: int = 400) -> str:
    """Why a child failed, from the end of its run.log: the exception line(s) of a traceback, else the last lines."""
    try:
        lines = [ln.rstrip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no run.log)"
    if not lines:
        return "(run.log is empty)"
    exc = [
        i
        for i, ln in enumerate(lines)
        if re.match(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b|error:)", ln.strip())
    ]
    if exc:
        text = " ".join(ln.strip() for ln in lines[exc[-1] :])
    else:
        text = "\n".join(lines[-n:])
    text = re.sub(r"[ \t]+", " ", text)
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def metrics_round(run_dir: Path) -> int:
    """Highest round logged in metrics.jsonl (-1 if none): progress of a running child."""
    try:
        text = (run_dir / "metrics.jsonl").read_text()
    except OSError:
        return -1
    best = -1
    for line in text.splitlines():
        try:
            best = max(best, int(json.loads(line)["round"]))
        except (ValueError, KeyError, TypeError):
            continue
    return best


def sft_group(cfg) -> str:
    """Runs whose SFT warm start is the same (world + policy; the SFT seed is fixed): one trains it, the others load it."""
    pol = cfg.policy.model_dump(mode="json", exclude={"temperature"})
    return json.dumps({"world": cfg.world.model_dump(mode="json"), "policy": pol}, sort_keys=True)


def warm_groups(cfg) -> tuple[str, ...]:
    """What a run's start builds once and caches for others: its SFT group and, with an offline preference set
    (reward.offline), the offline set and pre-trained reward model(s) of its seed (rlhfsim.reward.offline.cache_inputs:
    e.g. an ensemble's mean, WCO and UWO arms of one seed share one). Both exist once a run of the group logs round 0."""
    groups = [sft_group(cfg)]
    if cfg.reward.offline.comparisons > 0 and cfg.loop.reward_source == "learned":
        from rlhfsim.reward.offline import cache_inputs  # torch-importing module: only for runs that have one

        groups.append("offline:" + json.dumps(cache_inputs(cfg), sort_keys=True))
    return tuple(groups)


def may_start(groups: tuple[str, ...], warm: set[str], running: list[tuple[str, ...]]) -> bool:
    """A run may start unless one of its groups is neither built (`warm`) nor free: a running run of the same group is
    building it (wait for its round 0 rather than train it twice)."""
    return all(g in warm or not any(g in r for r in running) for g in groups)


def execute(
    jobs: list[Job],
    n_jobs: int,
    console=None,
    poll_s: float = 0.3,
    gpus: list[str] | None = None,
    backend=None,
    fork: bool | None = None,
) -> list[Job]:
    """Run the start/resume jobs, n_jobs at once, each in its own `rlhfsim run` process (or, with a `backend` such as
    ray_backend.RayBackend, as whatever backend.start(job) returns: an object with Popen's poll/terminate/wait/kill).
    fork: True: each process a fork of this one after the imports every run needs (rlhfsim.sweep.fork), where that is
    possible (POSIX, no GPU, RLHFSIM_SWEEP_FORK not 0); the caller vouches that this process has run no torch op (the
    sweep command checks `fork.pristine()` first thing). None: the same if this process is pristine now. False: a fresh
    `python -m rlhfsim run` subprocess per run."""
    safe = forking.pristine() if fork is None else bool(fork)  # before visible_gpus imports torch
    gpus = visible_gpus() if gpus is None else gpus
    todo = [j for j in jobs if j.decision.action in ("start", "resume")]
    use_fork = backend is None and bool(todo) and forking.available(gpus, safe)
    if use_fork:
        forking.preload()  # once here instead of once per run
        if console is not None:
            console.print(
                "[dim]runs start as forks of this process after its imports (--no-fork: fresh processes)[/dim]"
            )
    for j in jobs:
        if j.decision.action == "skip":
            j.status, j.detail = "skipped", j.decision.reason
        elif j.decision.action in ("conflict", "busy"):
            j.status, j.detail = "failed", j.decision.reason
        elif j.decision.action == "borrow":
            j.status, j.detail = "borrowed", j.decision.reason
    warm: set[str] = set()  # SFT / offline groups whose cache exists (a run of the group logged round 0)
    groups = {id(j): warm_groups(j.spec.config) for j in jobs}
    for j in jobs:
        if j.decision.action == "skip" or metrics_round(j.spec.path) >= 0:
            warm.update(groups[id(j)])
    queue = list(todo)
    running: list[Job] = []
    free_slots = list(range(n_jobs))
    total_rounds = sum(j.spec.config.loop.rounds for j in todo)

    def launch(job: Job) -> None:
        job.slot = free_slots.pop(0)
        d = job.spec.path
        if job.decision.action == "start":
            clear_run_dir(d)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write_text(d / "config.yaml", job.spec.config_text)
        if backend is not None:  # the backend's worker writes run.log
            job.proc, job.started, job.status = backend.start(job), time.perf_counter(), "running"
            running.append(job)
            return
        job.log = open(d / "run.log", "a" if job.decision.action == "resume" else "w")
        job.log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(run_command(d, job.decision.action))}\n")
        job.log.flush()
        cmd = run_command(d, job.decision.action)
        if use_fork and cmd[:3] == [sys.executable, "-m", "rlhfsim"]:  # the rlhfsim command itself: run it in a fork
            job.proc = forking.fork_run(cmd[3:], job.log.fileno(), child_env(job.slot, n_jobs, gpus))
        else:
            job.proc = subprocess.Popen(
                cmd,
                stdout=job.log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=child_env(job.slot, n_jobs, gpus),
            )
        job.started = time.perf_counter()
        job.status = "running"
        running.append(job)

    def startable(job: Job) -> bool:
        return may_start(groups[id(job)], warm, [groups[id(r)] for r in running])

    def finish(job: Job, rc: int) -> None:
        job.seconds = time.perf_counter() - job.started
        if job.log is not None:
            job.log.close()
        running.remove(job)
        free_slots.append(job.slot)
        free_slots.sort()
        summary = read_summary(job.spec.path)
        want = job.spec.config.loop.rounds
        if rc == 0 and summary is not None and summary.get("rounds_completed") == want:
            job.status = "finished"
            g = summary.get("gold_final")
            job.detail = f"gold {g:.3f}" if isinstance(g, (int, float)) else "ok"
        else:
            job.status = "failed"
            if rc < 0:
                try:
                    why = f"killed by {signal.Signals(-rc).name}"
                except ValueError:
                    why = f"killed by signal {-rc}"
                last = tail_reason(job.spec.path / "run.log", n=1, max_chars=160)
                job.detail = f"{why}; last output: {last} (full log: {job.spec.path / 'run.log'})"
            else:
                why = f"exit code {rc}" if rc != 0 else "exited 0 without a complete summary.json"
                job.detail = f"{why}: {tail_reason(job.spec.path / 'run.log')} (full log: {job.spec.path / 'run.log'})"

    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console, transient=False) as prog:
        overall = prog.add_task(f"runs ({len(todo)} to run, {n_jobs} at once)", total=len(todo))
        rounds_task = prog.add_task("rounds", total=max(total_rounds, 1))
        done_rounds: dict[int, int] = {}
        try:
            while queue or running:
                for job in list(running):
                    rc = job.proc.poll()
                    r = metrics_round(job.spec.path)
                    if r >= 0:
                        warm.update(groups[id(job)])
                    if job.task is not None:
                        prog.update(job.task, completed=max(r, 0))
                    done_rounds[id(job)] = max(r, 0)
                    if rc is not None:
                        finish(job, rc)
                        if job.task is not None:
                            prog.remove_task(job.task)
                        prog.advance(overall)
                        prog.console.print(
                            f"{'[green]' if job.status == 'finished' else '[red]'}{job.status}[/] "
                            f"{escape(job.spec.variant)}/seed{job.spec.seed} in {job.seconds:.0f} s: {escape(job.detail)}",
                            highlight=False,
                        )
                while free_slots and queue:
                    nxt = next((j for j in queue if startable(j)), None)
                    if nxt is None:
                        break
                    queue.remove(nxt)
                    try:
                        launch(nxt)
                    except OSError as e:  # e.g. the run directory cannot be written: this run fails, the others go on
                        if nxt in running:
                            running.remove(nxt)
                        if nxt.slot >= 0 and nxt.slot not in free_slots:
                            free_slots.append(nxt.slot)
                        nxt.status, nxt.detail = "failed", f"could not start: {e}"
                        prog.advance(overall)
                        continue
                    nxt.task = prog.add_task(
                        f"  {nxt.spec.variant}/seed{nxt.spec.seed} ({nxt.decision.action})",
                        total=nxt.spec.config.loop.rounds,
                    )
                prog.update(rounds_task, completed=sum(done_rounds.values()))
                if queue or running:
                    time.sleep(poll_s)
        except KeyboardInterrupt:
            for job in running:
                job.proc.terminate()
            for job in list(running):
                try:
                    job.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    job.proc.kill()
                    job.proc.wait()
                finish(job, job.proc.returncode)
                job.detail = "interrupted; run the sweep again to resume. " + job.detail
            for job in queue:
                job.status, job.detail = "failed", "not started (interrupted)"
            raise
    return jobs
