"""Each reported metric declared once: which direction is better (or "closer to a target"), and whether, with which
label and format, the report's default final table shows it. The experiment loader refuses a declared direction that
contradicts one fixed here (a sign error turns every verdict round); the report's paired test runs "closer" endpoints
on |value - target|; report/tables.py builds its columns from `table_metrics()`.

    direction("collapse_probe_shape_rel_final")   # Metric(better="closer", target=0.0, ...)
    direction("final/eval/gold").better           # "higher": final/ and mean/ read the per-round metric's entry
    table_metrics()                               # [(column, label, format)] of the default report table, in order

Adding a metric to the default table is one entry below with `table=True` (docs/architecture.md, "Adding a figure").
Endpoints whose better direction is the study's choice (KL, peak or stagnation rounds, Gao parameters, audit leads)
have better=None.
"""

from __future__ import annotations

from dataclasses import dataclass

HIGHER, LOWER, CLOSER = "higher", "lower", "closer"


@dataclass(frozen=True)
class Metric:
    better: str | None = None  # HIGHER | LOWER | CLOSER (to `target`) | None: the study declares it
    target: float | None = None  # CLOSER only: the value that is best (shape_rel's 0: as prompt-dependent as gold)
    label: str | None = None  # the default report table's column header (with table=True)
    fmt: str = "{:.3f}"
    table: bool = False  # shown in the report's default final table

    def __post_init__(self) -> None:
        if (self.better == CLOSER) != (self.target is not None):
            raise ValueError("a target goes with better='closer', and only with it")
        if self.table and not self.label:
            raise ValueError("a metric in the default table needs a label")


# summary.json / summary.csv columns; the table's columns come first, in the order they are shown
ENDPOINTS: dict[str, Metric] = {
    "gold_gain": Metric(HIGHER, label="gold gain", table=True),
    "gold_final": Metric(HIGHER, label="final gold", table=True),
    "gold_peak": Metric(HIGHER, label="peak gold", table=True),
    "gold_peak_round": Metric(label="round of peak", fmt="{:.1f}", table=True),
    "stagnation_round": Metric(label="stagnation round", fmt="{:.1f}", table=True),
    "kl_final": Metric(label="final KL (nats)", table=True),
    # 0 when the model's profiles are as prompt-dependent as gold's, 1 when collapsed, < 0 when more spread than gold
    # (not "less collapsed"): closer to 0 is better
    "collapse_probe_shape_rel_final": Metric(CLOSER, 0.0, label="collapse (probe, vs gold; 1 = collapsed)", table=True),
    "collapse_shape_rel_final": Metric(CLOSER, 0.0),
    "gold_gain_late": Metric(HIGHER),
    "gold_open_final": Metric(HIGHER),
    "accuracy_closed_final": Metric(HIGHER),
    "gold_drop_after_peak": Metric(HIGHER),  # final - peak <= 0: closer to 0 is higher
    "rm_pairwise_acc_final": Metric(HIGHER),
}

# per-round metrics (metrics.jsonl), reached from the summary as final/<metric> and mean/<metric>; adv/*: agreement of
# the applied advantages with gold's
ROUND_METRICS: dict[str, Metric] = {
    "eval/gold": Metric(HIGHER),
    "eval/accuracy_closed": Metric(HIGHER),
    "rm/pairwise_acc": Metric(HIGHER),
    "rm/heldout_acc": Metric(HIGHER),
    "collapse/shape_rel": Metric(CLOSER, 0.0),
    "collapse/probe_shape_rel": Metric(CLOSER, 0.0),
    **{
        f"adv/{k}": Metric(HIGHER)
        for k in (
            "gold_corr",
            "gold_corr_seq",
            "sign_agree",
            "sign_agree_seq",
            "pair_agree",
            "pg_cos",
            "gold_corr_score",
            "sign_agree_score",
        )
    },
}
PREFIXES = ("final/", "mean/")  # summary columns that carry a per-round metric


def direction(name: str) -> Metric | None:
    """The declaration of a summary column (or of the per-round metric under final/ or mean/), None if undeclared."""
    if name in ENDPOINTS:
        return ENDPOINTS[name]
    for prefix in PREFIXES:
        if name.startswith(prefix):
            return ROUND_METRICS.get(name[len(prefix) :])
    return None


def table_metrics() -> list[tuple[str, str, str]]:
    """(column, label, format) of every endpoint the default report table shows, in declaration order."""
    return [(k, m.label or k, m.fmt) for k, m in ENDPOINTS.items() if m.table]
