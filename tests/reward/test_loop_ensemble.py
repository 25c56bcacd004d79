"""Ensembles, early stopping and run-level stopping through the real loop (tiny config)."""

import json

import pandas as pd

from rlhfsim.config import load_config
from rlhfsim.loop import run
from rlhfsim.tracking import read_jsonl


def test_ensemble_with_early_stopping_runs_end_to_end(tmp_path, sft_cache):
    cfg = load_config(
        "configs/tiny.yaml",
        [
            f"policy.cache_dir={sft_cache}",
            "reward.ensemble_size=2",
            "reward.aggregation=uwo",
            "reward.ensemble_data=bootstrap",
            "reward.epochs=3",
            "reward.early_stop.mode=patience",
            "reward.early_stop.holdout=0.3",
            "loop.rounds=3",
            "loop.stop_on_stagnation=true",
            "loop.stagnation_window=2",
            "loop.stagnation_slope=10.0",
            "optimizer.lr=3e-3",
            "optimizer.iterations=3",
        ],
    )  # a policy that clearly moves (its KL estimate beyond noise)
    summary = run(cfg, out=tmp_path / "r")
    rows = read_jsonl(tmp_path / "r" / "metrics.jsonl")
    last = rows[-1]
    assert last["rm/stacked"] == 1 and 1 <= last["rm/epochs"] <= 3
    assert last["rm/stop_reason"] in ("max_epochs", "patience", "no_heldout")
    for key in ("rm/ens_std", "rm/ens_std_open", "rm/ens_err_corr_open", "rm/heldout_loss", "rm/kept_epoch"):
        assert key in last, key
    assert last["rm/ens_std"] > 0  # members differ
    # band 10: every 2-round window is flat, so the run ends at the first window in which the policy moved and says so
    moved = [
        r["round"] for r in rows if r["round"] >= 2 and r["eval/policy_move"] - 1.96 * r["eval/policy_move_se"] > 1e-3
    ]
    assert summary["early_stop"]["round"] == moved[0] == summary["rounds_completed"]
    stop = json.loads((tmp_path / "r" / "summary.json").read_text())["early_stop"]
    assert stop["stagnation_round"] == moved[0] - 1 and stop["kind"] == "stagnation"
    df = pd.read_parquet(tmp_path / "r" / "rewards" / "round_001.parquet")
    assert {"proxy_m0", "proxy_m1"} <= set(df.columns)
