"""A study's borrowed arms (`m1: {from: other.yaml}`, rlhfsim/experiment/borrow.py) read from the lender's run folder.

The lender's runs of the arm are loaded as this study's own arm (its experiment and variant names, paired by seed like
any arm), so every table, figure and test treats them alike; the run paths still point into the lender's folder.
Unlike a missing run of an own arm (a line under "Missing data"), a borrowed arm with an unfinished seed stops the
report: the gap would sit in the baseline every comparison is made against, and the fix is one command in another
file, which the error names.
"""

from __future__ import annotations

from pathlib import Path

from rlhfsim.config import ConfigError
from rlhfsim.report.rundir import RunData, load_run


def load_borrowed(name: str, where: Path, lenders: dict, seeds: list[int], runs_root: Path) -> list[RunData]:
    """The runs of every borrowed arm of study `name` (experiment file or record `where`), relabelled as its own; a
    ConfigError naming the lender's sweep when a seed's run is absent or unfinished."""
    out: list[RunData] = []
    for variant, lender in lenders.items():
        gaps, got = [], []
        for seed in seeds:
            d = lender.run_dir(runs_root, seed)
            if not d.is_dir():
                gaps.append(f"seed{seed} (no run directory)")
                continue
            r = load_run(d, lender.name)
            if r.status != "finished":
                logged = f", {r.rounds_logged} of {r.configured_rounds} rounds logged" if r.rounds_logged else ""
                gaps.append(f"seed{seed} ({r.status}{logged})")
                continue
            r.experiment, r.variant, r.lender = name, variant, str(lender.file)
            got.append(r)
        if gaps:
            raise ConfigError(
                f"{where}: arm {variant!r} is borrowed from {lender.file} (its arm {lender.variant.name!r}), whose runs "
                f"under {lender.run_dir(runs_root, 0).parent} are not complete: {', '.join(gaps)}. Run "
                f"`{lender.sweep_command(runs_root)}` first, then this report again"
            )
        out.extend(got)
    return out


def own_copies(runs: list[RunData], name: str, lenders: dict) -> tuple[list[RunData], list[str]]:
    """Drop run directories in this study's own folder for an arm it borrows (e.g. left from before the arm was
    borrowed): the lender's runs stand for the arm. Returns (kept runs, notes)."""
    kept, notes = [], []
    for r in runs:
        if r.experiment == name and r.variant in lenders and r.lender is None:
            notes.append(f"{r.path}: ignored; arm {r.variant!r} is borrowed from {lenders[r.variant].file}")
        else:
            kept.append(r)
    return kept, notes


def describe(lenders: dict, runs_root: Path, prefix: str = "") -> dict[str, dict]:
    """{arm: {file, variant, runs, sweep}} for the page's reproduction block."""
    return {
        f"{prefix}{variant}": {
            "file": str(lender.file),
            "variant": lender.variant.name,
            "runs": str(lender.run_dir(runs_root, 0).parent),
            "sweep": lender.sweep_command(runs_root),
        }
        for variant, lender in lenders.items()
    }
