"""Studies: an experiment file expands to variants x seeds; `rlhfsim sweep` runs them.

    experiments/<study>.yaml  ->  runs/<study>/<variant>/seed<k>/   (one `rlhfsim run` subprocess each)

    plan.py        per run directory: skip (finished), resume (checkpoint), start, or conflict
    runner.py      the runs as subprocesses, N at once (one GPU each where there are GPUs), progress
    cli.py         `rlhfsim sweep`: plan, run, final table

The experiment file itself (schema, names, design checks) is rlhfsim/experiment/, which the report reads too; it is
re-exported here. The format of experiment files is in experiments/README.md.
"""

from rlhfsim.experiment import (
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
from rlhfsim.experiment.names import MAX_NAME, dedup_names, flatten, grid_variants, safe_name, set_dotted, to_set_args
from rlhfsim.sweep.cli import cmd_sweep, plan_table, register, results_table
from rlhfsim.sweep.plan import (
    Decision,
    Job,
    checkpoint_round,
    clear_run_dir,
    config_differences,
    decide,
    plan,
    read_summary,
)
from rlhfsim.sweep.runner import child_env, execute, metrics_round, run_command, sft_group, tail_reason, visible_gpus

__all__ = [
    "MAX_NAME",
    "RESERVED_KEYS",
    "Decision",
    "Experiment",
    "ExperimentSpec",
    "Job",
    "RunSpec",
    "Variant",
    "baseline_name",
    "build_experiment",
    "checkpoint_round",
    "child_env",
    "clear_run_dir",
    "cmd_sweep",
    "config_differences",
    "decide",
    "dedup_names",
    "execute",
    "expand_variants",
    "flatten",
    "grid_variants",
    "load_experiment",
    "metrics_round",
    "parse_experiment",
    "plan",
    "plan_table",
    "read_summary",
    "register",
    "results_table",
    "run_command",
    "safe_name",
    "set_dotted",
    "sft_group",
    "tail_reason",
    "to_set_args",
    "visible_gpus",
    "write_experiment_record",
]
