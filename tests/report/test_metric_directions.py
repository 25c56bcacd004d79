"""issue 30 / 33: metric directions declared once (experiment/metrics.py), "closer to a target" among them, and a metric
reaching the report's default table by that one declaration."""

from __future__ import annotations

import pytest
import yaml

from rlhfsim.experiment import metrics as M
from rlhfsim.experiment.spec import Endpoint
from rlhfsim.report.answer import comparisons, verdicts
from rlhfsim.report.load import load_study
from rlhfsim.report.tables import final_table, table_cells
from tests.fixtures.studies import make_study, read_metrics, write_metrics


def test_shape_rel_is_closer_to_0_wherever_it_is_read():
    for name in (
        "collapse_shape_rel_final",
        "collapse_probe_shape_rel_final",
        "final/collapse/shape_rel",
        "mean/collapse/probe_shape_rel",
    ):
        m = M.direction(name)
        assert (m.better, m.target) == ("closer", 0.0), name
    assert M.direction("gold_gain").better == "higher" and M.direction("kl_final").better is None
    assert M.direction("final/eval/kl") is None
    with pytest.raises(ValueError):
        M.Metric("closer")  # a "closer" direction without its target cannot be declared


def test_an_endpoint_declared_without_better_takes_the_declared_direction():
    assert Endpoint(endpoint="collapse_shape_rel_final").better == "closer"
    assert Endpoint(endpoint="final/adv/gold_corr").better == "higher"
    assert Endpoint(endpoint="kl_final").better == "higher"  # the study's choice: the default
    with pytest.raises(ValueError, match="closer to 0 is better by definition"):
        Endpoint(endpoint="collapse_shape_rel_final", better="higher")


def _set_shape_rel(run_dir, value: float) -> None:
    """The last round's collapse/probe_shape_rel of one fabricated run (the summary is recomputed from metrics.jsonl)."""
    rows = read_metrics(run_dir)
    rows[-1]["collapse/probe_shape_rel"] = value
    write_metrics(run_dir, rows)


def test_a_study_whose_arm_overshoots_gold_is_further_from_0_not_better(tmp_path):
    """collapse_utilities' case on a fabricated study: high_kl's shape_rel -0.8 against low_kl's 0.1 is worse."""
    root = make_study(tmp_path)
    for seed, (base, arm) in enumerate([(0.10, -0.80), (0.12, -0.78)]):
        _set_shape_rel(root / "low_kl" / f"seed{seed}", base)
        _set_shape_rel(root / "high_kl" / f"seed{seed}", arm)
    rec = yaml.safe_load((root / "experiment.yaml").read_text())
    rec["primary"] = {"endpoint": "collapse_probe_shape_rel_final"}  # no `better:`: the declaration decides
    (root / "experiment.yaml").write_text(yaml.safe_dump(rec))
    study = load_study([root])
    assert study.primary["better"] == "closer"
    comps = comparisons(study)
    row = comps[comps["family"] == "primary"].iloc[0]
    assert row["better"] == "closer" and row["diff"] == pytest.approx(((0.80 - 0.10) + (0.78 - 0.12)) / 2)
    (line,) = verdicts(study, comps)
    assert (
        "distance of collapse_probe_shape_rel_final from its target 0" in line and "better" not in line.split(":")[-1]
    )


def test_a_metric_reaches_the_default_table_by_one_declaration(tmp_path, monkeypatch):
    study = load_study([make_study(tmp_path)])
    assert "late gold gain" not in table_cells(study, final_table(study))[0]
    monkeypatch.setitem(M.ENDPOINTS, "gold_gain_late", M.Metric("higher", label="late gold gain", table=True))
    ft = final_table(study)
    header, rows = table_cells(study, ft)
    assert header[-1] == "late gold gain" and set(ft[ft["metric"] == "gold_gain_late"]["variant"]) == set(
        study.variants
    )
    assert all(r[-1][0] != "–" for r in rows)  # a value in every row
