"""The reward-quality calibration table and figure on a constructed study whose gain shares are known."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report.calibration import calibration_table, fig_calibration, late_gain, share_interval
from rlhfsim.report.load import load_study
from tests.fixtures.studies import edit_config, edit_metrics, fab_run

SEEDS = (0, 1, 2, 3)
SHARES = {"weak": 0.3, "realistic": 0.7, "gold": 1.0}  # each arm's gain as a share of the ceiling's, every seed


def arm(root, variant, seed, share, source, spearman):
    d = fab_run(root, variant, seed, 0.05, 0.0, rounds=6)
    edit_config(d, lambda c: c["loop"].update(reward_source=source))
    ceiling = 0.1 + 0.02 * seed  # seeds differ; the share within a seed is exact

    def row(r):
        r["eval/gold"] = 0.4 + (share * ceiling if r["round"] >= 1 else 0.0)
        r["time/round"] = 2.0 if variant == "realistic" else 1.0
        if r["round"] >= 1:
            r["rm/within_prompt_spearman"] = spearman
            r["rm/closed_pairwise_acc"] = 0.5 + spearman / 2

    edit_metrics(d, row)


@pytest.fixture()
def study(tmp_path):
    root = tmp_path / "runs" / "study"
    for seed in SEEDS:
        for v, s in SHARES.items():
            arm(
                root, v, seed, s, "gold" if v == "gold" else "learned", {"weak": 0.15, "realistic": 0.6, "gold": 1.0}[v]
            )
    s = load_study([root])
    s.baseline, s.variants, s.headline = "weak", list(SHARES), ["calibration"]
    return s


def test_late_gain_is_the_mean_of_the_last_two_thirds_minus_round_zero():
    m = pd.DataFrame({"round": range(7), "eval/gold": [0.1, 9, 9, 0.3, 0.3, 0.5, 0.5]})
    assert late_gain(m) == pytest.approx(0.4 - 0.1)  # rounds 3..6 of 1..6


def test_shares_round_cost_and_agreement_are_recovered(study):
    tab = calibration_table(study).set_index("variant")
    for v, s in SHARES.items():
        assert tab.loc[v, "gain_share"] == pytest.approx(s)
        assert tab.loc[v, "gain_share_lo"] <= s + 1e-9 <= tab.loc[v, "gain_share_hi"] + 2e-9
    assert tab.loc["realistic", "round_cost_vs_baseline"] == pytest.approx(2.0)
    assert tab.loc["realistic", "within_prompt_spearman_r1"] == pytest.approx(0.6)
    assert tab.loc["realistic", "closed_pairwise_acc_last"] == pytest.approx(0.8)
    assert tab.loc["gold", "source"] == "gold" and tab.loc["weak", "seeds"] == len(SEEDS)
    fig = fig_calibration(study)
    assert fig.fig is not None and fig.skipped is None


def test_share_interval_is_paired_by_seed():
    c = pd.Series([0.1, 0.2, 0.3, 0.4], index=[0, 1, 2, 3])
    share, lo, hi = share_interval(0.5 * c, c)
    assert (
        share == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    )  # exact within every seed
    noisy = share_interval(0.5 * c + np.array([0.05, -0.05, 0.05, -0.05]), c)
    assert noisy[1] < 0.5 < noisy[2]


def test_the_figure_is_opt_in(study):
    study.headline = []
    assert fig_calibration(study).fig is None and calibration_table(study).shape[0] == 3


@pytest.mark.slow  # a whole report build
def test_the_report_carries_the_figure_table_and_csv(study, tmp_path):
    from rlhfsim.report.render import build_report

    build_report(study, tmp_path / "rep")
    out = tmp_path / "rep"
    assert (out / "calibration.png").exists() and (out / "calibration.csv").exists()
    md = (out / "report.md").read_text()
    assert "share of the gold ceiling's gain" in md and "0.70 [0.70, 0.70]" in md
