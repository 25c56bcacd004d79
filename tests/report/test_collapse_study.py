"""The collapse study's terminal-phase figure and table from fabricated training-group rewards."""

import numpy as np
import pandas as pd
import pytest

from rlhfsim.report import collapse_study as CS
from rlhfsim.report.load import load_study
from rlhfsim.theory import optimal_rewards
from tests.fixtures.studies import fab_reward_only_run

K, G = 8, 6


def _train_parquet(d, opt_open, opt_closed, noise, rng):
    rows = []
    for g in range(G):
        t = "open" if g % 2 else "closed"
        opt = opt_open if t == "open" else opt_closed
        r = np.clip(opt + rng.normal(0, noise, K), 0, 1)
        perm = rng.permutation(K)
        rows.append(
            pd.DataFrame(
                {
                    "group": g,
                    "prompt_id": g,
                    "prompt_type": t,
                    "round_added": 1,
                    "slot": np.arange(K),
                    "rank": perm + 1,
                    "gold": rng.random(K),
                    "logit": 0.0,
                    "reward": r[perm],
                }
            )
        )
    pd.concat(rows).to_parquet(d / "rewards" / "train_round_001.parquet", index=False)


@pytest.fixture
def collapse_root(tmp_path):
    root = tmp_path / "runs" / "study"
    rng = np.random.default_rng(0)
    inv, lin = optimal_rewards("inv", K), optimal_rewards("linear", K)
    for seed in (0, 1):
        d = fab_reward_only_run(root, "inv", seed, {"utility": "inv"})
        _train_parquet(d, inv, inv, 0.0, rng)  # exactly at the optimum for both types: collapse
        d = fab_reward_only_run(root, "aware", seed, {"prompt_aware": {"open": "inv", "closed": "linear"}})
        _train_parquet(d, inv, lin, 0.0, rng)
    return root


def test_profiles_table_and_figure(collapse_root, tmp_path):
    study = load_study([collapse_root])
    assert CS.has_train_rewards(study)
    prof = CS.run_profiles(study)
    assert set(prof["index"]) == set(range(1, K + 1)) and set(prof["prompt_type"]) == {"open", "closed"}
    tab = CS.profile_table(study, prof)
    assert (tab["seeds"] == 2).all()
    np.testing.assert_allclose(tab["theory_maxdev_mean"], 0.0, atol=1e-12)  # every profile sits at its optimum
    inv_row = tab[tab["variant"] == "inv"].iloc[0]
    aware_row = tab[tab["variant"] == "aware"].iloc[0]
    assert inv_row["train_index_mean"] == pytest.approx(0.0, abs=1e-12)  # collapse
    w1 = np.mean(np.abs(optimal_rewards("inv", K) - optimal_rewards("linear", K)))
    assert aware_row["train_index_mean"] == pytest.approx(w1) and aware_row["optimum_index_mean"] == pytest.approx(w1)
    res = CS.fig_terminal_profiles(study)
    assert res.fig is not None and res.skipped is None
    paths = CS.write_tables(study, tmp_path)
    assert [p.name for p in paths] == ["collapse_profiles.csv", "collapse_table.csv"] and all(p.exists() for p in paths)


def test_no_train_rewards_is_skipped(tmp_path):
    root = tmp_path / "runs" / "study"
    d = fab_reward_only_run(root, "a", 0, {"utility": "log"})
    (d / "rewards" / "round_001.parquet").write_bytes(b"")  # held-out rewards only, no train_round file
    study = load_study([root])
    assert not CS.has_train_rewards(study)
    assert CS.fig_terminal_profiles(study).skipped and CS.write_tables(study, tmp_path) == []
