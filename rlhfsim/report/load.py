"""Report inputs (run directories, experiment roots, experiment files) -> one Study.

    study = load_study(["runs/utility_ablation"])        # or run dirs, or experiments/utility_ablation.yaml

Expected variant x seed pairs without a run directory, and anything a run lacks, become lines in
study.missing: a report of partial or mixed runs says what is missing rather than failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhfsim.config import ConfigError, read_yaml
from rlhfsim.experiment import baseline_name, expand_variants, load_experiment, parse_experiment
from rlhfsim.report.borrowed import describe, load_borrowed, own_copies
from rlhfsim.report.rundir import RunData, find_run_dirs, is_run_dir, load_run
from rlhfsim.report.study import Study

__all__ = ["RunData", "Study", "load_run", "load_study"]


@dataclass
class _Record:
    question: str | None = None
    name: str | None = None
    baseline: str | None = None
    variants: list[str] | None = None
    seeds: list[int] | None = None
    overrides: dict[str, dict] | None = None
    root: Path | None = None
    design: dict | None = None  # primary, secondary, headline, kind, factors
    selection: bool = False  # found above run or variant directories given one by one: only their variants are expected
    path: Path | None = None  # the experiment file or record read
    lenders: dict | None = None  # borrowed arm -> experiment.borrow.Lender (checked as `rlhfsim sweep` checks them)


def _read_record(path: Path, validate: bool = False) -> _Record:
    """An experiment file (or the runs root's experiment.yaml) -> what the report needs from it."""
    raw = read_yaml(path)
    spec = parse_experiment(raw, f"{path}: ")
    variants = expand_variants(spec)
    try:
        baseline = baseline_name(spec.baseline, variants)
    except ConfigError:
        if validate:
            raise
        baseline = None
    design = {
        "primary": spec.primary.model_dump() if spec.primary else None,
        "secondary": [e.model_dump() for e in spec.secondary],
        "headline": list(spec.headline),
        "kind": spec.design,
        "factors": {n: f if isinstance(f, str) else f.model_dump() for n, f in spec.factors.items()},
    }
    # a borrowed arm is only as good as the check that its lender runs the same config: load it the sweep's way
    lenders = load_experiment(path).lenders if any(v.borrow is not None for v in variants) else None
    return _Record(
        spec.question,
        spec.name,
        baseline,
        [v.name for v in variants],
        list(spec.seeds),
        {v.name: v.overrides for v in variants},
        design=design,
        path=path,
        lenders=lenders,
    )


def load_study(inputs: list[str | Path], runs_root: str | Path = "runs", baseline: str | None = None) -> Study:
    """Resolve run directories, experiment roots and experiment files into one Study."""
    if not inputs:
        raise ConfigError(
            "rlhfsim report: give run directories, experiment roots (runs/<experiment>) or experiment YAML files"
        )
    run_dirs: list[Path] = []
    records: list[_Record] = []
    missing: list[str] = []
    sources: list[str] = []
    for item in inputs:
        p = Path(item)
        sources.append(str(p))
        if p.is_file():
            if p.suffix not in (".yaml", ".yml"):
                raise ConfigError(f"{p}: not an experiment YAML file nor a run directory")
            rec = _read_record(p, validate=True)
            rec.root = Path(runs_root) / str(rec.name)
            records.append(rec)
            if not rec.root.is_dir():
                missing.append(f"{rec.root}: no runs of experiment {rec.name!r} yet (run `rlhfsim sweep {p}`)")
                continue
            run_dirs.extend(find_run_dirs(rec.root))
        elif p.is_dir():
            if (p / "experiment.yaml").is_file() and not is_run_dir(p):
                try:
                    rec = _read_record(p / "experiment.yaml")
                    rec.root = p
                    records.append(rec)
                except ConfigError as e:
                    missing.append(f"{p / 'experiment.yaml'} unreadable ({str(e).splitlines()[0]})")
            found = find_run_dirs(p)
            if not found:
                missing.append(f"{p}: no run directories below it")
            run_dirs.extend(found)
        else:
            raise ConfigError(
                f"{p}: no such file or directory (give run directories, runs/<experiment> or an experiment YAML)"
            )

    # run directories given one by one: their experiment root may still hold the question
    seen_roots = {r.root.resolve() for r in records if r.root is not None}
    for d in run_dirs:
        root = d.parent.parent
        if (root / "experiment.yaml").is_file() and root.resolve() not in seen_roots:
            seen_roots.add(root.resolve())
            try:
                rec = _read_record(root / "experiment.yaml")
                rec.root, rec.selection = root, True
                records.append(rec)
            except ConfigError:
                pass

    uniq, seen = [], set()
    for d in run_dirs:
        key = d.resolve()
        if key not in seen:
            seen.add(key)
            uniq.append(d)
    if not uniq:
        hint = "".join(f"; {m}" for m in missing)
        raise ConfigError(f"no run directories found in {', '.join(map(str, inputs))}{hint}")

    names = [r.name for r in records if r.name]
    runs = [load_run(d, names[0] if len(set(names)) == 1 else None) for d in uniq]
    for rec in records:  # borrowed arms: the lender's runs, under the runs root the study's own runs are in
        if rec.lenders and rec.root is not None and not rec.selection:
            runs, notes = own_copies(runs, str(rec.name), rec.lenders)
            missing.extend(notes)
            runs += load_borrowed(str(rec.name), rec.path, rec.lenders, rec.seeds or [], rec.root.parent)
    if len({r.experiment for r in runs}) > 1:  # several studies in one report: keep their variants apart
        for r in runs:
            r.variant = f"{r.experiment}/{r.variant}"
        for rec in records:
            rec.variants = [f"{rec.name}/{v}" for v in rec.variants or []]
            rec.overrides = {f"{rec.name}/{k}": v for k, v in (rec.overrides or {}).items()}
            rec.baseline = f"{rec.name}/{rec.baseline}" if rec.baseline else None
    claimed: dict[tuple, list[RunData]] = {}
    for r in runs:
        claimed.setdefault((r.variant, r.seed), []).append(r)
    for (v, sd), rs in claimed.items():
        if len(rs) > 1:
            missing.append(
                f"{v}/seed{sd}: {len(rs)} run directories claim it ({', '.join(str(r.path) for r in rs)}); all are shown"
            )

    # variant order: the experiment's, then any others as they come
    order: list[str] = []
    for rec in records:
        for v in rec.variants or []:
            if v not in order:
                order.append(v)
    for r in runs:
        if r.variant not in order:
            order.append(r.variant)
    present = {r.variant for r in runs}
    variants = [v for v in order if v in present]

    # expected variant x seed pairs that have no run directory at all
    expected_seeds = None
    for rec in records:
        if rec.variants and rec.seeds is not None:
            expected_seeds = rec.seeds
            have = {(r.variant, r.seed) for r in runs}
            # a selection (e.g. runs/<exp>/<variant> folders) expects the seeds of the variants it gave, not the others
            expected = [v for v in rec.variants if v in present] if rec.selection else rec.variants
            for s in rec.seeds:
                for v in expected:
                    if (v, s) not in have:
                        missing.append(f"{v}/seed{s}: no run directory under {rec.root} (not run yet, or deleted)")

    for r in runs:
        for prob in r.problems:
            missing.append(f"{r.label} ({r.path}): {prob}")

    want = baseline or next((rec.baseline for rec in records if rec.baseline), None)
    if want is not None and want not in variants:
        if baseline is not None:
            raise ConfigError(
                f"--baseline {baseline!r}: no runs of that variant; variants: {', '.join(variants) or '(none)'}"
            )
        missing.append(
            f"baseline variant {want!r}: no runs; comparing against {variants[0] if variants else '(none)'} instead"
        )
        want = None
    base = want or (variants[0] if variants else "")
    if base:
        variants = [base] + [v for v in variants if v != base]  # the baseline leads every table and legend

    exp_names = sorted({r.experiment for r in runs}) or names
    if len(exp_names) > 1:
        name = "report"
    else:
        name = names[0] if len(set(names)) == 1 else (exp_names[0] if exp_names else "report")
    question = next((rec.question for rec in records if rec.question), None)
    if question is None:
        missing.append(
            "the question: no experiment file or runs/<experiment>/experiment.yaml found (it is written by `rlhfsim sweep`)"
        )
    overrides: dict[str, dict] = {}
    for rec in records:
        for k, v in (rec.overrides or {}).items():
            overrides.setdefault(k, v)
    design = next((rec.design for rec in records if rec.design), None) or {}
    study = Study(name, question, base, variants, runs, missing, sources, expected_seeds, overrides, **design)
    for rec in records:
        if rec.lenders and rec.root is not None and not rec.selection:
            study.borrowed.update(describe(rec.lenders, rec.root.parent, f"{rec.name}/" if len(exp_names) > 1 else ""))
    flag = study.version_note()
    if flag:
        study.note(flag)
    return study
