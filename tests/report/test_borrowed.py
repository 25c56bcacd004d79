"""A report of a file that borrows an arm (rlhfsim/report/borrowed.py): the lender's runs stand for the arm, paired by
seed; unfinished lender runs stop the report with the command that finishes them; the reproduction block says so."""

import shutil

import pandas as pd
import pytest

from rlhfsim.cli import main
from rlhfsim.report.answer import seed_section
from rlhfsim.report.load import load_study
from rlhfsim.report.methods import reproduction
from tests.fixtures.studies import fab_experiment_runs, write_exp_file

NUMS = ["gold_peak", "gold_final", "gold_gain", "kl_final"]


def _studies(tmp_path):
    """lender.yaml (m1, big) and borrower.yaml (wide, m1 borrowed), both swept (fabricated runs) under tmp/runs."""
    lender = write_exp_file(tmp_path / "lender.yaml", "lender", {"m1": "{}", "big": "{optimizer.kl_coef: 0.2}"})
    borrower = write_exp_file(
        tmp_path / "borrower.yaml", "borrower", {"wide": "{optimizer.kl_coef: 0.05}", "m1": "{from: lender.yaml}"}
    )
    runs = tmp_path / "runs"
    fab_experiment_runs(lender, runs, {"big": 0.03})
    fab_experiment_runs(borrower, runs, {"wide": 0.02})
    return lender, borrower, runs


def test_the_borrowed_arm_is_the_lenders_runs_paired_by_seed(tmp_path):
    lender, borrower, runs = _studies(tmp_path)
    mine, theirs = load_study([borrower], runs_root=runs), load_study([lender], runs_root=runs)
    assert mine.name == "borrower" and mine.baseline == "m1" and mine.variants == ["m1", "wide"]
    assert not [m for m in mine.missing if "seed" in m and "no run directory" in m], mine.missing
    a = mine.summary.set_index(["variant", "seed"]).loc["m1"]
    b = theirs.summary.set_index(["variant", "seed"]).loc["m1"]
    pd.testing.assert_frame_equal(a[NUMS], b[NUMS])  # the shared arm's numbers are the lender's
    assert set(a["run"]) == {str(runs / "lender" / "m1" / f"seed{s}") for s in (0, 1)}
    assert set(a["experiment"]) == {"borrower"}  # one study, not two side by side
    sec = seed_section(mine)  # the primary's per-seed pairs: the lender's m1 against this file's wide, seed by seed
    w = mine.summary.set_index(["variant", "seed"])["gold_peak"]
    assert sec.rows[1] == ["1", f"{b.loc[1, 'gold_peak']:+.3f}", f"{w[('wide', 1)] - b.loc[1, 'gold_peak']:+.3f}"]
    assert mine.borrowed == {
        "m1": {
            "file": str(lender),
            "variant": "m1",
            "runs": str(runs / "lender" / "m1"),
            "sweep": f"rlhfsim sweep {lender} --jobs 2 --out {runs}",
        }
    }


def test_the_reproduction_block_names_the_lender_and_its_sweep_first(tmp_path):
    lender, borrower, runs = _studies(tmp_path)
    r = reproduction(load_study([borrower], runs_root=runs), "out/b", runs_root=str(runs))
    assert r["commands"] == [
        f"rlhfsim sweep {lender} --jobs 2 --out {runs}",
        f"rlhfsim sweep {borrower} --jobs 2 --out {runs}",
        f"rlhfsim report {borrower} --runs {runs} -o out/b",
    ]
    assert r["borrowed"] == [
        f"Arm m1 is borrowed: its runs are {lender}'s arm m1 ({runs / 'lender' / 'm1'}/), run by that file's sweep"
    ]


def test_the_runs_root_record_finds_the_lender_too_and_own_copies_are_ignored(tmp_path):
    lender, borrower, runs = _studies(tmp_path)
    shutil.copytree(runs / "lender" / "big" / "seed0", runs / "borrower" / "m1" / "seed0")  # left from an older sweep
    cfg = runs / "borrower" / "m1" / "seed0" / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace("experiment: lender", "experiment: borrower").replace("variant: big", "variant: m1")
    )
    study = load_study([runs / "borrower"])
    assert sorted(map(str, study.summary.query("variant == 'm1'")["run"])) == [
        str(runs / "lender" / "m1" / f"seed{s}") for s in (0, 1)
    ]
    assert any("ignored; arm 'm1' is borrowed from" in m for m in study.missing), study.missing


@pytest.mark.parametrize("gap", ["no run directory", "unfinished"])
def test_incomplete_lender_runs_stop_the_report_naming_the_lenders_sweep(tmp_path, capsys, gap):
    lender, borrower, runs = _studies(tmp_path)
    d = runs / "lender" / "m1" / "seed1"
    if gap == "no run directory":
        shutil.rmtree(d)
    else:
        (d / "summary.json").unlink()
    assert main(["report", str(borrower), "--runs", str(runs), "-o", str(tmp_path / "rep")]) == 2
    cap = capsys.readouterr()
    err = " ".join((cap.out + cap.err).split())
    assert f"rlhfsim sweep {lender} --jobs 2 --out {runs}" in err and f"seed1 ({gap}" in err, err
    assert "arm 'm1' is borrowed from" in err and not (tmp_path / "rep").exists()


def test_a_lender_changed_since_is_refused_by_the_report_as_by_the_sweep(tmp_path, capsys):
    lender, borrower, runs = _studies(tmp_path)
    lender.write_text(lender.read_text().replace("rounds_override: 3", "rounds_override: 4"))
    assert main(["report", str(borrower), "--runs", str(runs), "-o", str(tmp_path / "rep")]) == 2
    cap = capsys.readouterr()
    assert "loop.rounds (3 here, 4 there)" in " ".join((cap.out + cap.err).split())


@pytest.mark.slow  # a whole report build
def test_the_page_of_the_borrowing_file(tmp_path):
    lender, borrower, runs = _studies(tmp_path)
    out = tmp_path / "rep"
    assert main(["report", str(borrower), "--runs", str(runs), "-o", str(out)]) == 0
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert f"Arm m1 is borrowed: its runs are {lender}'s arm m1" in md and f"rlhfsim sweep {lender} --jobs 2" in md
    assert f"{lender}&#x27;s arm m1" in html or f"{lender}'s arm m1" in html
    csv = pd.read_csv(out / "summary.csv")
    lent = load_study([lender], runs_root=runs).summary.set_index(["variant", "seed"]).loc["m1"]
    got = csv[csv["variant"] == "m1"].set_index("seed")
    assert got["gold_peak"].round(9).tolist() == lent["gold_peak"].round(9).tolist()
