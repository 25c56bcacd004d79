"""Arms borrowed from another experiment file (`m1: {from: other.yaml}`): the checks made when the borrowing file
loads, and the runs it expands to (rlhfsim/experiment/borrow.py)."""

from pathlib import Path

import pytest
import yaml

from rlhfsim.config import ConfigError
from rlhfsim.experiment import load_experiment, write_experiment_record
from tests.fixtures.studies import write_exp_file


def _pair(tmp_path: Path, borrower: dict | None = None, extra: str = "", lender: dict | None = None) -> Path:
    """lender.yaml (m1 = the base config, big = KL 0.2) and borrower.yaml (wide = KL 0.05, m1 borrowed)."""
    write_exp_file(tmp_path / "lender.yaml", "lender", lender or {"m1": "{}", "big": "{optimizer.kl_coef: 0.2}"})
    variants = borrower or {"wide": "{optimizer.kl_coef: 0.05}", "m1": "{from: lender.yaml}"}
    return write_exp_file(tmp_path / "borrower.yaml", "borrower", variants, extra)


def test_a_borrowed_arm_expands_to_the_lenders_runs(tmp_path):
    exp = load_experiment(_pair(tmp_path))
    lender = exp.lenders["m1"]
    assert lender.name == "lender" and lender.variant.name == "m1" and lender.file == tmp_path / "lender.yaml"
    runs = {(r.variant, r.seed): r for r in exp.runs(tmp_path / "runs")}
    m1 = runs[("m1", 1)]
    assert m1.path == tmp_path / "runs" / "lender" / "m1" / "seed1" and m1.lender is lender
    assert m1.config.output.experiment == "lender"  # the config the lender's sweep writes there
    assert (
        runs[("wide", 1)].path == tmp_path / "runs" / "borrower" / "wide" / "seed1" and runs[("wide", 1)].lender is None
    )
    assert exp.baseline == "m1" and [v.overrides for v in exp.variants] == [{"optimizer.kl_coef": 0.05}, {}]


def test_the_long_form_names_another_variant_and_the_record_finds_the_lender_from_anywhere(tmp_path):
    path = _pair(tmp_path, {"wide": "{optimizer.kl_coef: 0.05}", "m1": "{from: {file: lender.yaml, variant: big}}"})
    with pytest.raises(ConfigError) as e:  # big is KL 0.2; this file's m1 is the base config
        load_experiment(path)
    msg = str(e.value)
    assert "optimizer.kl_coef" in msg and str(tmp_path / "lender.yaml") in msg and str(path) in msg, msg
    path = _pair(tmp_path, {"m1": "{}", "big": "{optimizer.kl_coef: 0.2, from: {file: lender.yaml, variant: big}}"}, "")
    exp = load_experiment(path)
    assert exp.lenders["big"].variant.name == "big"
    record = write_experiment_record(exp, tmp_path / "elsewhere" / "runs")  # runs/<name>/experiment.yaml
    raw = yaml.safe_load(record.read_text())
    assert raw["variants"]["big"] == {
        "from": {"file": str((tmp_path / "lender.yaml").resolve()), "variant": "big"},
        "optimizer.kl_coef": 0.2,
    }
    assert load_experiment(record).lenders["big"].name == "lender"  # the record is itself a valid experiment file


def test_a_mismatched_resolved_config_is_refused_naming_the_key_and_both_files(tmp_path):
    """The borrower's base_overrides apply to its m1 too: at KL 0.02 its m1 is not the lender's m1."""
    path = _pair(tmp_path, extra="base_overrides: {optimizer.kl_coef: 0.02}\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    msg = str(e.value)
    for part in (
        str(path),
        str(tmp_path / "lender.yaml"),
        "variant 'm1'",
        "optimizer.kl_coef",
        "optimizer.kl_coef (0.02 here, 0.05 there)",
    ):
        assert part in msg, (part, msg)


def test_keys_that_only_name_the_run_may_differ_and_sweep_overrides_apply_to_both(tmp_path):
    exp = load_experiment(_pair(tmp_path), sets=["reward.epochs=2"])  # --set: the lender is swept with it too
    assert exp.lenders["m1"].experiment.config(exp.lenders["m1"].variant, 0, ["reward.epochs=2"]).reward.epochs == 2


@pytest.mark.parametrize(
    "variants, lender, expected",
    [
        ({"m1": "{from: nowhere.yaml}"}, None, ["nowhere.yaml", "not found"]),
        ({"m1": "{from: {file: lender.yaml, variant: m9}}"}, None, ["no variant 'm9'", "its variants: m1, big"]),
        ({"m1": "{from: borrower.yaml}"}, None, ["cannot borrow from itself"]),
        ({"m1": "{from: 3}"}, None, ["variants", "`from` takes an experiment file"]),
        ({"m1": "{from: {file: lender.yaml, varaint: m1}}"}, None, ["`from` takes", "varaint"]),
        (
            {"m1": "{from: lender.yaml}"},
            {"m1": "{from: other.yaml}", "big": "{optimizer.kl_coef: 0.2}"},
            ["is itself borrowed", "other.yaml"],
        ),
    ],
)
def test_bad_borrows_are_refused_at_load(tmp_path, variants, lender, expected):
    path = _pair(tmp_path, variants, lender=lender)
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    for part in expected:
        assert part in str(e.value), (part, str(e.value))


def test_the_lender_must_run_every_seed_of_the_borrower(tmp_path):
    write_exp_file(tmp_path / "lender.yaml", "lender", {"m1": "{}"}, seeds=2)
    path = write_exp_file(tmp_path / "borrower.yaml", "borrower", {"m1": "{from: lender.yaml}", "w": "{}"}, seeds=3)
    with pytest.raises(ConfigError) as e:
        load_experiment(path)
    assert "not this file's 2" in str(e.value) and "pairs by seed" in str(e.value)


def test_two_files_lending_to_each_other_load_without_recursion(tmp_path):
    write_exp_file(tmp_path / "a.yaml", "a", {"m1": "{}", "big": "{optimizer.kl_coef: 0.2, from: b.yaml}"})
    write_exp_file(tmp_path / "b.yaml", "b", {"m1": "{from: a.yaml}", "big": "{optimizer.kl_coef: 0.2}"})
    assert load_experiment(tmp_path / "a.yaml").lenders["big"].name == "b"
    assert load_experiment(tmp_path / "b.yaml").lenders["m1"].name == "a"
