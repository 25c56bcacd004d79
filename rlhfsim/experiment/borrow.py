"""Arms borrowed from another experiment file (`m1: {from: other.yaml}`): one set of runs serves several files.

A study split into files that each fit one session (e.g. the realistic ensembles, one aggregation per file) would
otherwise run the identical baseline arm in every file: same resolved config, same seeds, bit-identical runs. A
variant that borrows takes the lender's runs instead: `rlhfsim sweep` skips it and `rlhfsim report` reads the lender's
run folder, pairing by seed as for its own arms.

Checked when the borrowing file loads, so a borrowed arm can never stand for a different experiment than the file
declares: the lender exists and is another file, has the arm (not itself borrowed: one hop, no chains or cycles) and
every seed of this file, and for every seed the arm's resolved run config equals the one this file's base +
base_overrides + variant (+ --set, + rounds_override) give, except the keys that only name the run (IDENTITY_KEYS).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfsim.config import ConfigError
from rlhfsim.experiment.expand import Experiment, Variant, load_experiment
from rlhfsim.experiment.names import flatten

# Keys that name a run (where its directory is, what trackers call it) and feed nothing it computes: the lender's runs
# carry the lender's names. Everything else, output.n_samples and loop.rounds included, must match.
IDENTITY_KEYS = ("output.dir", "output.experiment", "output.variant")


@dataclass
class Lender:
    """Where one borrowed arm's runs come from."""

    file: Path  # the lending experiment file: this file's folder joined with `from.file` (normalised, not resolved)
    experiment: Experiment = field(repr=False)  # the lender, loaded without resolving its own borrows
    variant: Variant = field(repr=False)  # its arm whose runs are taken

    @property
    def name(self) -> str:
        return self.experiment.name

    def run_dir(self, out_root: str | Path, seed: int) -> Path:
        """The lender's run directory of one seed under a runs root, as its own sweep writes it."""
        return Path(out_root) / self.experiment.name / self.variant.name / f"seed{seed}"

    def sweep_command(self, out_root: str | Path = "runs") -> str:
        out = f" --out {out_root}" if str(out_root) != "runs" else ""
        return f"rlhfsim sweep {self.file} --jobs 2{out}"


def config_differences(mine: dict, theirs: dict) -> list[tuple[str, Any, Any]]:
    """(dotted key, value here, value in the lender) wherever two resolved run configs differ, identity keys aside."""
    a, b = flatten(mine), flatten(theirs)
    absent = "<absent>"
    return [
        (k, a.get(k, absent), b.get(k, absent))
        for k in sorted(set(a) | set(b))
        if not k.startswith(IDENTITY_KEYS) and a.get(k, absent) != b.get(k, absent)
    ]


def _lender_variant(lender: Experiment, name: str) -> Variant | None:
    return next((v for v in lender.variants if name in (v.name, v.label)), None)


def resolve_lenders(exp: Experiment, sets: list[str] | None = None, compare: bool = True) -> dict[str, Lender]:
    """Every borrowed variant of `exp` -> its Lender, after the checks in the module docstring (ConfigError naming
    both files otherwise). compare=False (a load with validate_configs=False) builds no run config: the lender, its arm
    and its seeds are checked, the configs are not."""
    here = exp.path
    where = f"{here}: " if here else ""
    out: dict[str, Lender] = {}
    for v in exp.variants:
        if v.borrow is None:
            continue
        b = v.borrow
        who = f"{where}variant {v.label!r} (from: {b.file})"
        if here is None and not Path(b.file).is_absolute():
            raise ConfigError(f"{who}: a relative `from` needs the experiment file's path; load it from its file")
        path = Path(b.file) if Path(b.file).is_absolute() else Path(os.path.normpath(here.parent / b.file))
        if not path.is_file():
            raise ConfigError(f"{who}: lending experiment file {str(path)!r} not found (paths are relative to {here})")
        if here is not None and path.resolve() == here.resolve():
            raise ConfigError(f"{who}: a file cannot borrow from itself; give the arm its overrides instead")
        try:
            lender = load_experiment(path, validate_configs=compare, sets=sets, borrows=False)
        except ConfigError as e:
            raise ConfigError(f"{who}: the lending file does not load:\n{e}") from None
        if lender.name == exp.name:
            raise ConfigError(f"{who}: {path} has this study's name {exp.name!r}: its runs would be this study's own")
        want = b.variant or v.name
        lv = _lender_variant(lender, want)
        if lv is None:
            names = ", ".join(x.name for x in lender.variants)
            raise ConfigError(f"{who}: {path} has no variant {want!r} (its variants: {names})")
        if lv.borrow is not None:
            raise ConfigError(
                f"{who}: {path}'s {lv.name!r} is itself borrowed (from {lv.borrow.file}); borrow from that file directly"
            )
        lacking = [s for s in exp.spec.seeds if s not in lender.spec.seeds]
        if lacking:
            raise ConfigError(
                f"{who}: {path} runs seeds {lender.spec.seeds}, not this file's {', '.join(map(str, lacking))}; "
                "a borrowed arm pairs by seed, so the lender must run every seed this file declares"
            )
        for seed in exp.spec.seeds if compare else []:
            mine = exp.config(v, seed, sets).model_dump(mode="json")
            theirs = lender.config(lv, seed, sets).model_dump(mode="json")
            diff = config_differences(mine, theirs)
            if diff:
                shown = "; ".join(f"{k} ({mv!r} here, {tv!r} there)" for k, mv, tv in diff[:6])
                more = f"; and {', '.join(k for k, _, _ in diff[6:])}" if len(diff) > 6 else ""
                raise ConfigError(
                    f"{who}: the arm's resolved run config (seed {seed}) differs from {path}'s {lv.name!r} in: "
                    f"{shown}{more}. A borrowed arm must be the same runs: make the two files agree, or drop `from:` "
                    f"and run the arm in {here or 'this file'}"
                )
        out[v.name] = Lender(path, lender, lv)
    return out
