"""`rlhfsim report RUNS_OR_EXPERIMENT... -o reports/<name>/`: run directories -> HTML + Markdown + summary.csv."""

from __future__ import annotations

from pathlib import Path

from rlhfsim.config import ConfigError


def _rounds(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--rounds {text!r}: expected comma-separated round numbers, e.g. 1,4,8") from None
    if any(r < 0 for r in out):
        raise ConfigError(f"--rounds {text!r}: rounds are >= 0")
    return out


def cmd_report(args) -> int:
    import time

    from rich.console import Console

    from rlhfsim.report.load import load_study
    from rlhfsim.report.render import build_report

    console = Console()
    t0 = time.perf_counter()
    study = load_study(args.inputs, runs_root=args.runs, baseline=args.baseline)
    out = Path(args.output) if args.output else Path("reports") / study.name
    rep = build_report(study, out, rounds=_rounds(args.rounds), band=args.band, title=args.title, runs_root=args.runs)
    n_fig = sum(getattr(f, "png", None) is not None for f in rep.figures)
    console.print(
        f"[bold]rlhfsim report[/bold] {study.name}: {len(study.runs)} runs, {len(study.variants)} variants, "
        f"{n_fig} figures -> {out}/report.html, report.md, summary.csv ({time.perf_counter() - t0:.1f} s)",
        highlight=False,
    )
    if study.missing:
        console.print(
            f"[yellow]missing data ({len(study.missing)} notes, listed in the report):[/yellow]", highlight=False
        )
        for m in study.missing[:8]:
            console.print(f"  - {m}", highlight=False, markup=False)
        if len(study.missing) > 8:
            console.print(f"  ... and {len(study.missing) - 8} more", highlight=False)
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="compare runs: HTML + Markdown report with figures, and summary.csv")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="RUNS_OR_EXPERIMENT",
        help="run directories, experiment roots (runs/<experiment>) or experiment YAML files (read from --runs)",
    )
    p.add_argument("-o", "--output", help="output directory (default: reports/<experiment>/)")
    p.add_argument("--runs", default="runs", help="root of run directories for experiment YAML inputs (default: runs)")
    p.add_argument(
        "--rounds", help="rounds for the reward-distribution figures, e.g. 1,4,8 (default: first, middle, last)"
    )
    p.add_argument("--baseline", help="variant to compare against (default: the experiment's baseline, else the first)")
    p.add_argument(
        "--band",
        choices=["sd", "ci"],
        default="ci",
        help="bands over seeds: 95%% bootstrap CI of the mean (default) or ±1 standard deviation (can leave a metric's range)",
    )
    p.add_argument("--title", help="report title")
    p.set_defaults(func=cmd_report)
