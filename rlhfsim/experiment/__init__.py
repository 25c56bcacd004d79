"""The experiment-file model: what a study declares (variants x seeds, factors, endpoints, headline figures) and the
run configs it expands to. Below both `rlhfsim sweep` (which runs them) and `rlhfsim report` (which reads them), which
do not import each other.

    spec.py    the experiment file's schema: fields, types, ranges, the checks one file makes on its own
    expand.py  the file expanded: variants, each variant x seed's run config, loading from disk, the sweep's record
    borrow.py  arms borrowed from another experiment file (`from:`): the lender found and checked at load
    names.py   variant names (safe directory names), grid expansion, dotted overrides
    design.py  a study's design checked at load: dose factors, label factors, the primary test's `where`
    ids.py     figure ids and summary columns an experiment may name, and their documented better directions

The format of experiment files is in experiments/README.md.
"""

from rlhfsim.experiment.borrow import Lender
from rlhfsim.experiment.expand import (
    RESERVED_KEYS,
    Experiment,
    RunSpec,
    Variant,
    baseline_name,
    build_experiment,
    expand_variants,
    load_experiment,
    write_experiment_record,
)
from rlhfsim.experiment.names import MAX_NAME, dedup_names, flatten, grid_variants, safe_name, set_dotted, to_set_args
from rlhfsim.experiment.spec import BORROW_KEY, Borrow, ExperimentSpec, parse_experiment

__all__ = [
    "BORROW_KEY",
    "MAX_NAME",
    "RESERVED_KEYS",
    "Borrow",
    "Experiment",
    "ExperimentSpec",
    "Lender",
    "RunSpec",
    "Variant",
    "baseline_name",
    "build_experiment",
    "dedup_names",
    "expand_variants",
    "flatten",
    "grid_variants",
    "load_experiment",
    "parse_experiment",
    "safe_name",
    "set_dotted",
    "to_set_args",
    "write_experiment_record",
]
