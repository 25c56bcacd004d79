"""Command line: rlhfsim run | validate | theory (| sweep | report | bench as they land).

Exit codes: 0 ok, 2 bad input (config, files, arguments), 3 the run diverged, 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rlhfsim.config import ConfigError

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
    from rlhfsim.config import load_config
    from rlhfsim.guards import Diverged, MissingWatched
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
        from rlhfsim.trackers import check_installed

        check_installed(cfg.output.report_to)
    check_writable(Path(cfg.policy.cache_dir), "SFT cache directory (policy.cache_dir)",
                   "set policy.cache_dir to a writable folder, e.g. --set policy.cache_dir=/tmp/rlhfsim-cache")
    run_dir = RunDir.for_config(cfg, out)
    st = read_status(run_dir.path) if args.resume else None
    if st and st.get("status") == "finished" and st.get("rounds_completed") == cfg.loop.rounds:
        console.print(f"{run_dir.path} already finished its {cfg.loop.rounds} rounds; nothing to do "
                      "(resume with --set loop.rounds=N to run more)", soft_wrap=True, highlight=False)
        return 0

    from rlhfsim import faults
    from rlhfsim.loop import run

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) != 0:
        console.quiet = True  # data-parallel launch: rank 0 reports for the run; the others only compute
    console.print(f"[bold]rlhfsim run[/bold] -> {run_dir.path}")
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console, transient=True) as prog:
            summary = run(cfg, out=out, resume=bool(args.resume), reporter=faults.arm(RichReporter(prog)))
    except Diverged as e:
        console.print(f"[red]diverged:[/red] {e}", soft_wrap=True, highlight=False)
        console.print(f"earlier rounds are intact in {run_dir.path}; metrics.jsonl ends with the diagnostic row of round {e.round}",
                      soft_wrap=True, highlight=False)
        return 3
    except MissingWatched as e:  # an optimiser does not emit a metric its guard watches: stopped rather than unguarded
        from rich.markup import escape

        console.print(f"[red]stopped:[/red] {escape(str(e))}", soft_wrap=True, highlight=False)
        console.print(f"earlier rounds are intact in {run_dir.path}; the optimiser's `watched` names must match the metrics "
                      "its iteration returns", soft_wrap=True, highlight=False)
        return 3
    console.print(rounds_table(run_dir.metrics(), f"{cfg.output.experiment}/{cfg.output.variant} seed {cfg.seed}"))
    console.print(
        f"gold {summary['gold_initial']:.3f} (SFT) -> {summary['gold_final']:.3f} (final), peak {summary['gold_peak']:.3f} "
        f"at round {summary['gold_peak_round']}; wall time {summary['wall_time_s']:.0f} s; files in {run_dir.path}"
    )
    return 0


def cmd_validate(args) -> int:
    from rlhfsim.config import dump_config, load_config, schema_markdown

    if args.schema:
        print(schema_markdown())
        return 0
    if args.config is None:
        raise ConfigError("rlhfsim validate: give a CONFIG file, or --schema for the reference")
    cfg = load_config(args.config, args.set)
    if args.print:
        print(dump_config(cfg), end="")
    else:
        print(f"{args.config}: ok")
    return 0


def cmd_theory(args) -> int:
    from rlhfsim.theory import theory_report

    params = {}
    for item in args.param or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE, e.g. --param g=0.5")
        k, v = item.split("=", 1)
        try:
            params[k] = float(v)
        except ValueError:
            raise ConfigError(f"--param {item!r}: value must be a number") from None
    try:
        text = theory_report(args.utility, params, args.n, out_png=args.plot)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlhfsim", description="Simulate the RLHF loop and measure reward-model collapse.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run one config")
    r.add_argument("config", nargs="?", help="YAML config (see configs/ and docs/config.md)")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. optimizer.kl_coef=0.1")
    r.add_argument("--out", help="run directory (default: <output.dir>/<experiment>/<variant>/seed<seed>)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last complete round")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="check a config without running it")
    v.add_argument("config", nargs="?")
    v.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--print", action="store_true", help="print the resolved config")
    v.add_argument("--schema", action="store_true", help="print the config reference (docs/config.md)")
    v.set_defaults(func=cmd_validate)

    t = sub.add_parser("theory", help="finite-n optimal rewards for a utility, beside the limit law")
    t.add_argument("--utility", required=True, help="utility name (logsigmoid, linear, power, log, neg_power, inv)")
    t.add_argument("--param", action="append", metavar="NAME=VALUE", help="utility parameter, e.g. g=0.5")
    t.add_argument("--n", type=int, default=8, help="completions per prompt")
    t.add_argument("--plot", metavar="PNG", help="draw the optimum beside the limit law")
    t.set_defaults(func=cmd_theory)

    # subcommands that live beside their implementation: each module's register(sub) adds its parser
    for register in _extra_commands():
        register(sub)
    return p


def _extra_commands():
    """register(subparsers) functions of the sweep/report/bench modules (imports inside stay lazy)."""
    from rlhfsim import commands

    return commands.REGISTERS


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:  # the run's own progress display owns the terminal: no per-file weight-loading bars
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read by huggingface_hub and transformers at import
        if "transformers.utils.logging" in sys.modules:  # already imported (it read the variable too early)
            sys.modules["transformers.utils.logging"].disable_progress_bar()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ConfigError as e:
        from rich.markup import escape  # messages quote things like pip install -e '.[wandb]'

        console.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 2
    except OSError as e:  # a file or folder the command needs cannot be read or written
        where = f"{e.filename}: " if e.filename else ""
        console.print(f"[red]error:[/red] {where}{e.strerror or e}; check the path and its permissions "
                      "(a killed run continues with `rlhfsim run --resume RUN_DIR`)", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; resume with `rlhfsim run --resume RUN_DIR`")
        return 130


if __name__ == "__main__":
    sys.exit(main())
