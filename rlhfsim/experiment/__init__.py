"""The experiment-file model: what a study declares (variants x seeds, factors, endpoints, headline figures) and the
run configs it expands to. Below both `rlhfsim sweep` (which runs them) and `rlhfsim report` (which reads them), which
do not import each other.

    spec.py    the experiment file: schema, validation, expansion into run configs
    names.py   variant names (safe directory names), grid expansion, dotted overrides
    design.py  a study's design checked at load: dose factors, label factors, the primary test's `where`
    ids.py     figure ids and summary columns an experiment may name, and their documented better directions

The format of experiment files is in experiments/README.md.
"""

from rlhfsim.experiment.names import MAX_NAME, dedup_names, flatten, grid_variants, safe_name, set_dotted, to_set_args
from rlhfsim.experiment.spec import (
    RESERVED_KEYS,
    Experiment,
    ExperimentSpec,
    RunSpec,
    Variant,
    baseline_name,
    build_experiment,
    expand_variants,
    load_experiment,
    parse_experiment,
    write_experiment_record,
)

__all__ = [
    "MAX_NAME", "RESERVED_KEYS", "Experiment", "ExperimentSpec", "RunSpec", "Variant", "baseline_name", "build_experiment",
    "dedup_names", "expand_variants", "flatten", "grid_variants", "load_experiment", "parse_experiment", "safe_name",
    "set_dotted", "to_set_args", "write_experiment_record",
]
