"""`rlhfsim sweep EXPERIMENT [--jobs N]`: plan, run, and end with a table of finished / failed / skipped runs."""

from __future__ import annotations

import time
from pathlib import Path

from rlhfsim.config import ConfigError
from rlhfsim.experiment import load_experiment, to_set_args, write_experiment_record
from rlhfsim.sweep.fork import pristine
from rlhfsim.sweep.plan import Decision, Job, plan
from rlhfsim.sweep.ray_backend import RayBackend
from rlhfsim.sweep.runner import execute
from rlhfsim.trackers import check_installed


def results_table(jobs: list[Job], title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title)
    for c in ("variant", "seed", "status", "s", "detail"):
        t.add_column(c, justify="right" if c in ("seed", "s") else "left", overflow="fold")
    style = {
        "finished": "green",
        "failed": "red",
        "skipped": "dim",
        "borrowed": "dim",
        "pending": "yellow",
        "running": "yellow",
    }
    for j in jobs:
        t.add_row(
            escape(j.spec.variant),
            str(j.spec.seed),
            f"[{style.get(j.status, 'default')}]{j.status}[/]",
            f"{j.seconds:.0f}" if j.seconds else "-",
            escape(j.detail),
        )
    return t


def plan_table(jobs: list[Job], title: str):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title)
    for c in ("variant", "seed", "directory", "action", "why"):
        t.add_column(c, overflow="fold")
    for j in jobs:
        t.add_row(
            escape(j.spec.variant),
            str(j.spec.seed),
            escape(str(j.spec.path)),
            j.decision.action,
            escape(j.decision.reason),
        )
    return t


# ----------------------------------------------------------------------------- CLI


def cmd_sweep(args) -> int:
    from rich.console import Console

    fork = not args.no_fork and pristine()  # first thing: no torch imported, so no OpenMP pool to copy into forks

    console = Console()
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1")
    if args.backend == "local" and (args.address or args.ray_cpus):
        raise ConfigError(
            f"{'--address' if args.address else '--ray-cpus'} is for --backend ray; add --backend ray or drop it"
        )
    if args.ray_cpus is not None and (args.ray_cpus < 1 or args.address):
        raise ConfigError(
            "--ray-cpus N (>= 1) sizes the local Ray started for the sweep; it cannot size a cluster "
            "given by --address: drop one of them"
        )
    exp = load_experiment(args.experiment, sets=args.set)
    out_root = Path(args.out)
    jobs = plan(exp, out_root, args.set)
    trackers = sorted({t for j in jobs for t in j.spec.config.output.report_to})
    if trackers:
        check_installed(trackers)
    if args.restart_changed:
        for j in jobs:
            if j.decision.action == "conflict":
                j.decision = Decision("start", "restarted: " + j.decision.reason.split(";")[0])
    n_var, n_seed = len(exp.variants), len(exp.spec.seeds)
    actions = ("start", "resume", "skip", "conflict", "busy", "borrow")
    counts = {a: sum(j.decision.action == a for j in jobs) for a in actions}
    head = (
        f"[bold]rlhfsim sweep[/bold] {exp.name}: {n_var} variants x {n_seed} seeds = {len(jobs)} runs -> {out_root / exp.name}  "
        f"(start {counts['start']}, resume {counts['resume']}, skip {counts['skip']}, conflict {counts['conflict']}"
        + "".join(f", {a} {counts[a]}" for a in ("busy", "borrow") if counts[a])
        + ")"
    )
    console.print(head, highlight=False)
    if args.dry_run:
        console.print(plan_table(jobs, f"{exp.name}: plan (dry run, nothing written)"))
        for v in exp.variants:
            lender = exp.lenders.get(v.name)
            took = f"; runs borrowed from {lender.file} (its arm {lender.variant.name})" if lender else ""
            text = f"  {v.name}: {' '.join(to_set_args(v.overrides)) or '(base config)'}{took}"
            console.print(text, highlight=False, markup=False)
        return 0
    backend = None
    if args.backend == "ray":
        backend = RayBackend(exp.spec.resources, args.address, args.ray_cpus, args.retries)
    n_jobs = args.jobs or (len(jobs) if backend is not None else 1)  # on Ray, the cluster's resources pace the runs
    write_experiment_record(exp, out_root, args.set)
    t0 = time.perf_counter()
    try:
        execute(jobs, n_jobs, console=console, backend=backend, fork=fork)
    except KeyboardInterrupt:
        console.print(results_table(jobs, f"{exp.name}: interrupted"))
        return 130
    finally:
        if backend is not None:
            backend.close()
    wall = time.perf_counter() - t0
    console.print(results_table(jobs, f"{exp.name}: {len(jobs)} runs in {wall:.0f} s"))
    n_fail = sum(j.status == "failed" for j in jobs)
    n_ok = sum(j.status == "finished" for j in jobs)
    n_skip = sum(j.status == "skipped" for j in jobs)
    n_borrow = sum(j.status == "borrowed" for j in jobs)
    console.print(
        f"{n_ok} finished, {n_fail} failed, {n_skip} skipped"
        + (f", {n_borrow} borrowed" if n_borrow else "")
        + f"; report: rlhfsim report {args.experiment} --runs {out_root} -o reports/{exp.name}/",
        highlight=False,
    )
    waiting = {}  # the lenders whose runs the report still needs (it refuses to build without them)
    for j in jobs:
        if j.status == "borrowed" and not j.decision.lender_done:
            waiting[str(j.spec.lender.file)] = j.spec.lender.sweep_command(out_root)
    for cmd in waiting.values():
        console.print(f"[yellow]borrowed runs not finished yet; the report needs them:[/yellow] {cmd}", highlight=False)
    return 1 if n_fail else 0


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run an experiment: every variant x seed, in parallel processes")
    p.add_argument("experiment", help="experiment YAML (see experiments/README.md)")
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        help="runs at once (local, default 1: each gets cores/jobs threads, one "
        "GPU each where there are GPUs; ray, default all: the experiment's resources: decide)",
    )
    p.add_argument(
        "--backend",
        choices=("local", "ray"),
        default="local",
        help="local: subprocesses on this machine; ray: one Ray task per run (pip install -e '.[ray]')",
    )
    p.add_argument(
        "--address", default=None, help="Ray cluster to join (e.g. ray://head:10001 or auto); default: a local Ray"
    )
    p.add_argument(
        "--ray-cpus", type=int, default=None, help="CPUs of the local Ray started for the sweep (default: all)"
    )
    p.add_argument(
        "--retries",
        type=int,
        default=3,
        help="Ray: times a run whose worker died is retried (resumed from its checkpoint)",
    )
    p.add_argument(
        "--out", default="runs", help="root of run directories (default: runs): runs/<experiment>/<variant>/seed<k>/"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override for every run, e.g. device=cpu"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would run, skip or resume, and stop")
    p.add_argument(
        "--no-fork",
        action="store_true",
        help="local: start each run as a fresh `python -m rlhfsim run` process "
        "instead of a fork of the sweep after its imports (the default on CPU-only POSIX machines; same results)",
    )
    p.add_argument(
        "--restart-changed",
        action="store_true",
        help="rerun from scratch runs whose results come from a different config",
    )
    p.set_defaults(func=cmd_sweep)
