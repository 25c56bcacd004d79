"""The sweep of a file with a borrowed arm: the lender's runs are planned as "borrow", never run or written here."""

from rlhfsim.cli import main
from rlhfsim.experiment import load_experiment
from rlhfsim.sweep import execute, plan
from tests.fixtures.studies import fab_experiment_runs, write_exp_file


def _pair(tmp_path):
    lender = write_exp_file(tmp_path / "lender.yaml", "lender", {"m1": "{}", "big": "{optimizer.kl_coef: 0.2}"})
    borrower = write_exp_file(
        tmp_path / "borrower.yaml", "borrower", {"wide": "{optimizer.kl_coef: 0.05}", "m1": "{from: lender.yaml}"}
    )
    return lender, borrower


def test_the_dry_run_shows_borrowed_runs_and_skips_them(tmp_path, capsys):
    _, borrower = _pair(tmp_path)
    runs = tmp_path / "runs"
    assert main(["sweep", str(borrower), "--dry-run", "--out", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "start 2, resume 0, skip 0, conflict 0, borrow 2)" in " ".join(out.split()), out
    assert "runs borrowed from" in out and "lender.yaml" in out
    assert not runs.exists()  # a dry run writes nothing, the lender's folder least of all


def test_borrowed_jobs_report_the_lenders_state_and_are_never_started(tmp_path):
    lender, borrower = _pair(tmp_path)
    runs = tmp_path / "runs"
    exp = load_experiment(borrower)
    jobs = {(j.spec.variant, j.spec.seed): j for j in plan(exp, runs)}
    assert jobs[("m1", 0)].decision.action == "borrow" and not jobs[("m1", 0)].decision.lender_done
    assert "rlhfsim sweep" in jobs[("m1", 0)].decision.reason and jobs[("wide", 0)].decision.action == "start"
    fab_experiment_runs(lender, runs)  # the lender's sweep has run
    jobs = [j for j in plan(exp, runs) if j.decision.action == "borrow"]
    assert len(jobs) == 2 and all(j.decision.lender_done for j in jobs)
    assert all(j.spec.path.parent == runs / "lender" / "m1" for j in jobs)
    before = {p: p.stat().st_mtime_ns for p in (runs / "lender").rglob("*") if p.is_file()}
    execute(jobs, 1, fork=False)  # only borrowed jobs: nothing to launch
    assert [j.status for j in jobs] == ["borrowed", "borrowed"]
    assert {p: p.stat().st_mtime_ns for p in (runs / "lender").rglob("*") if p.is_file()} == before
