"""The report's cost table: per-run wall time and per-phase seconds per round, from constructed runs."""

import pytest

from rlhfsim.report.cost import cost_section, phase_means
from rlhfsim.report.rundir import RunData
from tests.fixtures.memory import mem_run, mem_study


def _run(variant: str, seed: int, wall: float, policy_s: float) -> RunData:
    rows = [{"round": 0, "eval/gold": 0.5, "time/evaluate": 9.0}]  # round 0: no time/round, excluded from the means
    for r in (1, 2, 3):
        rows.append(
            {
                "round": r,
                "eval/gold": 0.5,
                "time/policy": policy_s * r,
                "time/evaluate": 1.0,
                "time/audit": 0.0,
                "time/round": policy_s * r + 1.0,
            }
        )
    return mem_run(variant, seed, rows, "c", root="runs/c", summary={"wall_time_s": wall})


@pytest.fixture()
def study():
    runs = [_run("a", 0, 60.0, 1.0), _run("a", 1, 80.0, 3.0), _run("b", 0, 100.0, 2.0), _run("b", 1, 300.0, 2.0)]
    return mem_study(runs, "c", "q?", sources=("constructed",))


def test_phase_means_average_rounds_after_zero_and_drop_free_phases(study):
    p = phase_means(study.metrics)
    # variant a: policy seconds r * {1, 3} over rounds 1..3 -> mean 2 * 2 = 4; evaluate 1.0 (round 0's 9.0 excluded)
    assert p.at["a", "time/policy"] == pytest.approx(4.0)
    assert p.at["b", "time/policy"] == pytest.approx(4.0)
    assert p.at["a", "time/evaluate"] == pytest.approx(1.0)
    assert "time/audit" not in p.columns  # never cost anything


def test_cost_section_reports_median_and_range_of_wall_time(study):
    sec = cost_section(study)
    rows = {r[0]: dict(zip(sec.header, r)) for r in sec.rows}
    assert rows["a"]["wall s/run median"] == "70" and rows["a"]["min-max"] == "60-80"
    assert rows["b"]["wall s/run median"] == "200" and rows["b"]["min-max"] == "100-300"
    assert rows["a"]["round s/round"] == "5.00"  # mean of 2r + 1 over r = 1..3
    assert "9 run-minutes" in sec.note  # 540 s in all


def test_cost_section_absent_without_wall_times():
    run = mem_run("a", 0, [{"round": 0}], "c", root="runs/c", summary={})
    assert cost_section(mem_study([run], "c", None, sources=("x",))) is None
