"""`rlhfsim bench --only study` at a tiny shape: the phases add up, the floor and the baseline arm are filled in, and a
phase's time is attributed once. No timing is asserted: speed targets live in the benchmark (docs/performance.md)."""

import json
import math

import pytest

from rlhfsim.bench import study_driver
from rlhfsim.bench.study_driver import PHASES
from rlhfsim.cli import main


@pytest.mark.slow
def test_study_section_tiny_with_baseline(tmp_path, sft_cache):
    out = tmp_path / "b.json"
    rc = main(
        [
            "bench",
            "--only",
            "study",
            "--study-config",
            "configs/tiny.yaml",
            "--study-runs",
            "2",
            "--study-rounds",
            "1",
            "--study-jobs",
            "2",
            "--study-threads",
            "1",
            "--study-cache",
            sft_cache,
            "--baseline",
            "HEAD",
            "--study-sweep",
            "--json",
            str(out),
            "--markdown",
            str(tmp_path / "b.md"),
        ]
    )
    assert rc == 0
    s = json.loads(out.read_text())["study"]
    for arm in ("current", "baseline"):
        r = s[arm]
        assert set(r["phases_s_per_round"]) == set(PHASES)
        assert all(v >= 0 and math.isfinite(v) for v in r["phases_s_per_round"].values())
        assert math.isclose(sum(r["shares"].values()), 1.0)
        assert r["runs_per_hour"] > 0 and r["run_s"] > 0
        # the phases cover the run: per-round sum x rounds is the mean run's seconds
        assert math.isclose(r["round_s"] * s["rounds"], r["run_s"], rel_tol=1e-6)
    assert s["speedup_run_s"] > 0 and s["runs_per_hour_ratio"] > 0
    assert (
        set(s["sweep_runs_per_hour"]) == {"current", "baseline"}
        and min(min(v) for v in s["sweep_runs_per_hour"].values()) > 0
    )
    # the GEMM floor: products in the policy update, sampling and evaluation, none in the report
    floor = s["floor_s_per_round"]
    assert floor["policy update"] > 0 and "report" not in floor
    assert "study runs/hour" in (tmp_path / "b.md").read_text()


def test_nested_phase_time_is_exclusive(monkeypatch):
    """A phase called inside another counts once: the outer keeps only its own time; an absorbing phase keeps all.
    A fake clock (each `tick` advances it by 1 s), so nothing here depends on the machine's speed."""
    clock = [0.0]
    monkeypatch.setattr(study_driver, "SECONDS", dict.fromkeys(PHASES, 0.0))
    monkeypatch.setattr(study_driver, "CPU", dict.fromkeys(PHASES, 0.0))
    monkeypatch.setattr(
        study_driver,
        "time",
        type(
            "Clock",
            (),
            {"perf_counter": staticmethod(lambda: clock[0]), "process_time": staticmethod(lambda: clock[0])},
        ),
    )

    def tick():
        clock[0] += 1.0

    class Box:
        @staticmethod
        def inner():
            tick()

        @staticmethod
        def outer():
            tick()
            Box.inner()
            tick()

        @staticmethod
        def absorbing():
            Box.inner()

    study_driver.wrap(Box, "inner", "gold scoring")
    study_driver.wrap(Box, "outer", "evaluation")
    study_driver.wrap(Box, "absorbing", "policy update")
    Box.outer()
    sec = study_driver.SECONDS
    assert (sec["evaluation"], sec["gold scoring"]) == (2.0, 1.0)
    Box.absorbing()
    assert (sec["gold scoring"], sec["policy update"]) == (1.0, 1.0)
    cpu = study_driver.CPU  # CPU seconds are split by the same rule (here the fake clock is both clocks)
    assert (cpu["evaluation"], cpu["gold scoring"], cpu["policy update"]) == (2.0, 1.0, 1.0)
