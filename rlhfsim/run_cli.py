"""`rlhfsim run`: one config in this process, with progress bars, a line per round, the final table and the exit codes
(0 ok, 2 bad input, 3 diverged). Below the sweep, which runs it in forked children and Ray workers (`run_main`), and
below rlhfsim/cli.py, which adds the other subcommands.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rlhfsim import faults
from rlhfsim.config import load_config
from rlhfsim.guards import Diverged, MissingWatched
from rlhfsim.schema import ConfigError
from rlhfsim.trackers import check_installed

console = Console()

ROUND_COLUMNS = [
    ("round", "round", "{:d}"),
    ("eval/gold", "gold", "{:.3f}"),
    ("eval/accuracy_closed", "closed acc", "{:.2f}"),
    ("eval/gold_open", "open gold", "{:.3f}"),
    ("eval/proxy", "proxy", "{:.3f}"),
    ("eval/kl", "KL", "{:.2f}"),
    ("rm/pairwise_acc", "RM acc", "{:.2f}"),
    ("collapse/probe_shape_rel", "collapse", "{:.3f}"),
    ("time/round", "s", "{:.1f}"),
]


def _fmt(row: dict, key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None:
        return "-"
    try:
        return fmt.format(int(v) if fmt == "{:d}" else v)
    except (TypeError, ValueError):
        return str(v)


def round_line(row: dict) -> str:
    return "  ".join(f"{label} {_fmt(row, key, fmt)}" for key, label, fmt in ROUND_COLUMNS)


def rounds_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title)
    for _, label, _ in ROUND_COLUMNS:
        t.add_column(label, justify="right")
    for r in rows:
        t.add_row(*[_fmt(r, k, f) for k, _, f in ROUND_COLUMNS])
    return t


class RichReporter:
    """Progress bars for rounds and phases, one summary line per round."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.rounds = progress.add_task("rounds", total=None)
        self.phase_task = progress.add_task("setup (SFT warm start)", total=None)

    def start(self, total_rounds: int, first_round: int) -> None:
        self.progress.update(self.rounds, total=total_rounds, completed=first_round - 1)

    def phase(self, round_: int, name: str) -> None:
        self.progress.update(self.phase_task, description=f"round {round_}: {name}")

    def round_done(self, row: dict) -> None:
        self.progress.console.print(round_line(row))
        if row["round"] > 0:
            self.progress.advance(self.rounds)


def cmd_run(args) -> int:
    # the run directory's module imports torch and pandas: inside the command, so `rlhfsim --help` starts in a moment
    from rlhfsim.tracking import RunDir, check_writable, read_status, resume_config

    # everything a user can get wrong is checked here, in seconds, before models are imported or trained
    if args.resume:
        if args.out:
            raise ConfigError(f"--out {args.out} with --resume: a resumed run stays in its own directory; drop --out")
        cfg = resume_config(args.resume, args.config, args.set)
        out = Path(args.resume)
    else:
        if args.config is None:
            raise ConfigError("rlhfsim run: give a CONFIG file (e.g. configs/quickstart.yaml) or --resume RUN_DIR")
        cfg = load_config(args.config, args.set)
        out = args.out
    if cfg.output.report_to:
        check_installed(cfg.output.report_to)
    check_writable(
        Path(cfg.policy.cache_dir),
        "SFT cache directory (policy.cache_dir)",
        "set policy.cache_dir to a writable folder, e.g. --set policy.cache_dir=/tmp/rlhfsim-cache",
    )
    run_dir = RunDir.for_config(cfg, out)
    st = read_status(run_dir.path) if args.resume else None
    if st and st.get("status") == "finished" and st.get("rounds_completed") == cfg.loop.rounds:
        console.print(
            f"{run_dir.path} already finished its {cfg.loop.rounds} rounds; nothing to do "
            "(resume with --set loop.rounds=N to run more)",
            soft_wrap=True,
            highlight=False,
        )
        return 0

    from rlhfsim.loop import run  # torch, transformers: after the checks above, which take seconds

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        console.quiet = True  # data-parallel launch: rank 0 reports for the run; the others only compute
    console.print(f"[bold]rlhfsim run[/bold] -> {run_dir.path}")
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as prog:
            summary = run(cfg, out=out, resume=bool(args.resume), reporter=faults.arm(RichReporter(prog)))
    except Diverged as e:
        console.print(f"[red]diverged:[/red] {e}", soft_wrap=True, highlight=False)
        console.print(
            f"earlier rounds are intact in {run_dir.path}; metrics.jsonl ends with the diagnostic row of round {e.round}",
            soft_wrap=True,
            highlight=False,
        )
        return 3
    except MissingWatched as e:  # an optimiser does not emit a metric its guard watches: stopped rather than unguarded
        console.print(f"[red]stopped:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
        console.print(
            f"earlier rounds are intact in {run_dir.path}; the optimiser's `watched` names must match the metrics "
            "its iteration returns",
            soft_wrap=True,
            highlight=False,
        )
        return 3
    console.print(rounds_table(run_dir.metrics(), f"{cfg.output.experiment}/{cfg.output.variant} seed {cfg.seed}"))
    console.print(
        f"gold {summary['gold_initial']:.3f} (SFT) -> {summary['gold_final']:.3f} (final), peak {summary['gold_peak']:.3f} "
        f"at round {summary['gold_peak_round']}; wall time {summary['wall_time_s']:.0f} s; files in {run_dir.path}"
    )
    return 0


def dispatch(args) -> int:
    """Run a parsed command (`args.func`) with the CLI's logging and exit codes: 2 for a ConfigError or an unreadable or
    unwritable file, 130 when interrupted."""
    if not args.verbose:  # the run's own progress display owns the terminal: no per-file weight-loading bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub and transformers at import
        if "transformers.utils.logging" in sys.modules:  # already imported (it read the variable too early)
            sys.modules["transformers.utils.logging"].disable_progress_bar()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.func(args)
    except ConfigError as e:
        console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except OSError as e:  # a file or folder the command needs cannot be read or written
        where = f"{e.filename}: " if e.filename else ""
        console.print(
            f"[red]error:[/red] {where}{e.strerror or e}; check the path and its permissions "
            "(a killed run continues with `rlhfsim run --resume RUN_DIR`)",
            highlight=False,
            soft_wrap=True,
        )
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; resume with `rlhfsim run --resume RUN_DIR`")
        return 130


def add_run_parser(sub) -> None:
    r = sub.add_parser("run", help="run one config")
    r.add_argument("config", nargs="?", help="YAML config (see configs/ and docs/config.md)")
    r.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. optimizer.kl_coef=0.1"
    )
    r.add_argument("--out", help="run directory (default: <output.dir>/<experiment>/<variant>/seed<seed>)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last complete round")
    r.set_defaults(func=cmd_run)


def run_main(argv: list[str]) -> int:
    """`rlhfsim run ...` (argv starts with "run") in this process, as `rlhfsim.cli.main` runs it: the sweep's forked
    children and Ray workers call this."""
    p = argparse.ArgumentParser(prog="rlhfsim")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_run_parser(p.add_subparsers(dest="command", required=True))
    return dispatch(p.parse_args(argv))
