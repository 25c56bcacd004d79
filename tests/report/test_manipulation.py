"""issue 30: the manipulation check on A/B pages: what each arm did to the rewards its optimiser saw (the reward model
against gold, its collapse, the advantages), against the baseline, paired by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlhfsim.cli import main
from rlhfsim.report.manipulation import manipulation_section, manipulation_table
from rlhfsim.report.plots import palette
from rlhfsim.report.registry import CORE_TABLES, Page, build_tables, proxy_free
from rlhfsim.report.rundir import RunData
from rlhfsim.report.study import Study
from tests.fixtures.studies import make_study

ROUNDS = 4


def _run(variant: str, seed: int, acc: float, corr: float, source: str = "learned") -> RunData:
    rounds = np.arange(ROUNDS + 1)
    m = pd.DataFrame(
        {
            "round": rounds,
            "eval/gold": 0.3 + 0.01 * rounds,
            # round 0 (the SFT policy, before any feedback) is not a trained round: a wild value there must not count
            "rm/pairwise_acc": np.where(rounds == 0, 0.0, acc + 0.01 * (rounds - 2.5)),
            "adv/gold_corr": np.where(rounds == 0, np.nan, corr),
        }
    )
    return RunData(
        Path(f"/nowhere/{variant}/seed{seed}"),
        "s",
        variant,
        seed,
        config={"loop": {"reward_source": source}},
        metrics=m,
        summary={"rounds_completed": ROUNDS},
        configured_rounds=ROUNDS,
    )


def _study() -> Study:
    runs = []
    for seed, off in ((0, 0.0), (1, 0.03), (2, -0.02)):  # seeds differ, the paired difference does not
        runs += [
            _run("base", seed, 0.80 + off, 0.5 + off),
            _run("weak", seed, 0.60 + off, 0.3 + off),
            _run("gold", seed, 0.95 + off, 1.0, source="gold"),
        ]
    return Study("s", "q", "base", ["base", "weak", "gold"], runs, [], ["fabricated"])


def test_each_arm_against_the_baseline_over_trained_rounds_paired_by_seed():
    tab = manipulation_table(_study()).set_index(["variant", "metric"])
    assert tab.loc[("base", "rm/pairwise_acc"), "mean"] == pytest.approx(0.80 + 0.01 / 3)  # rounds 1-4 only
    weak = tab.loc[("weak", "rm/pairwise_acc")]
    assert weak["n"] == 3 and weak["n_pairs"] == 3 and weak["sd"] > 0.02  # the seeds' spread ...
    assert (
        weak["diff"] == pytest.approx(-0.2) and weak["lo"] == pytest.approx(-0.2) and weak["hi"] == pytest.approx(-0.2)
    )  # ... paired away
    assert tab.loc[("weak", "adv/gold_corr"), "diff"] == pytest.approx(-0.2)
    assert tab.loc[("base", "rm/pairwise_acc"), "n_pairs"] == 0 and np.isnan(
        tab.loc[("base", "rm/pairwise_acc"), "diff"]
    )
    assert "collapse/probe_shape_rel" not in set(tab.index.get_level_values("metric"))  # not logged: no column


def test_a_gold_reward_arm_has_no_reward_model_to_check():
    sec = manipulation_section(proxy_free(_study()))  # the page's study: gold arms' reward-model columns blanked
    assert sec.title == "Manipulation check: the rewards the optimiser saw, against base"
    assert sec.header == ["variant", "RM pairwise acc. vs gold", "advantage corr. with gold's"]
    rows = {r[0]: r[1:] for r in sec.rows}
    assert rows["base (baseline)"][0].startswith("0.803 ± ") and "Δ" not in rows["base (baseline)"][0]
    assert rows["weak"][0].endswith("Δ -0.200 [-0.200, -0.200]")
    assert rows["gold"][0] == "–" and rows["gold"][1].startswith("1.000")  # its advantages are gold's own


def test_only_ab_pages_carry_it():
    (table,) = [t for t in CORE_TABLES if t.id == "manipulation_check"]
    study = proxy_free(_study())
    for kind, shown in (("ab", True), ("dose", False), ("overopt", False), ("phase", False), ("iterated", False)):
        sections, _ = build_tables(Page(study, kind, palette(study.variants, study.baseline)), [table])
        assert bool(sections) == shown, kind
    one = Study("s", "q", "base", ["base"], [_run("base", 0, 0.8, 0.5)], [], ["fabricated"])
    assert manipulation_section(one) is None  # nothing to compare


@pytest.mark.slow  # a whole report build
def test_an_ab_report_prints_the_check(tmp_path):
    out = tmp_path / "rep"
    assert main(["report", str(make_study(tmp_path)), "-o", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "## Manipulation check: the rewards the optimiser saw, against low_kl" in md
    block = md.split("## Manipulation check", 1)[1].split("\n## ", 1)[0]
    assert "RM pairwise acc. vs gold" in block and "advantage corr. with gold's" in block and "| high_kl |" in block
    assert "Manipulation check" in (out / "report.html").read_text()
