import numpy as np
import pandas as pd
import pytest

from rlhfsim.diagnostics.train_profiles import group_matrices, order_accuracy, train_diagnostics
from rlhfsim.reward.buffer import Group
from rlhfsim.reward.utilities import get_utility
from rlhfsim.theory import optimal_rewards
from rlhfsim.world.base import Prompt


def _group(pid, ptype, gold, k=None):
    gold = np.asarray(gold, dtype=float)
    prefs = gold[:, None] > gold[None, :]  # a total order when gold is distinct
    return Group(
        Prompt(pid, "open" if ptype == "open" else "add", ptype, f"p{pid}"),
        [f"c{pid}_{i}" for i in range(len(gold))],
        gold,
        prefs,
        round=1,
    )


def test_group_matrices_ranks_and_padding():
    gm = group_matrices([_group(0, "open", [0.2, 0.9, 0.5]), _group(1, "closed", [1.0, 0.0])])
    assert gm.valid.tolist() == [[True, True, True], [True, True, False]]
    assert gm.rank[0].tolist() == [1, 3, 2] and gm.rank[1, :2].tolist() == [2, 1] and np.isnan(gm.rank[1, 2])
    assert len(gm.texts) == 5 and gm.types == ["open", "closed"]
    with pytest.raises(ValueError):
        group_matrices([])


def test_order_accuracy():
    prefs = np.zeros((1, 3, 3), dtype=bool)
    prefs[0, 0, 1] = prefs[0, 1, 2] = prefs[0, 0, 2] = True  # 0 > 1 > 2
    assert order_accuracy(np.array([[3.0, 2.0, 1.0]]), prefs) == 1.0
    assert order_accuracy(np.array([[1.0, 2.0, 3.0]]), prefs) == 0.0
    assert order_accuracy(np.array([[2.0, 2.0, 1.0]]), prefs) == pytest.approx(2 / 3)  # a tie is not credited
    assert np.isnan(order_accuracy(np.zeros((1, 3)), np.zeros((1, 3, 3), dtype=bool)))


def test_model_at_the_optimum_has_zero_theory_deviation_and_collapses():
    # every group scored exactly at the -1/x optimum for its rank: the terminal phase of a collapsed model
    k = 8
    opt = optimal_rewards("-1/x", k)  # ascending
    rng = np.random.default_rng(0)
    groups = [_group(i, "open" if i % 2 else "closed", rng.permutation(k) / k) for i in range(6)]
    gm = group_matrices(groups)
    r = opt[(gm.rank[gm.valid] - 1).astype(int)]  # reward of each slot from its rank
    logits = np.log(np.clip(r, 1e-9, 1 - 1e-9) / np.clip(1 - r, 1e-9, 1))
    U = get_utility("-1/x")
    m, table = train_diagnostics(gm, logits, bounded=True, theory={"open": U, "closed": U})
    assert m["collapse_train/order_acc"] == 1.0
    assert m["collapse_train/shape"] == pytest.approx(1.0, abs=1e-6)
    for t in ("open", "closed"):
        assert m[f"collapse_train/{t}_graph_dev_max"] == pytest.approx(0.0, abs=1e-6)
        assert m[f"collapse_train/{t}_objective_gap"] == pytest.approx(0.0, abs=1e-6)
    assert len(table) == 6 * k and set(table.columns) >= {"group", "prompt_type", "rank", "gold", "logit", "reward"}
    assert table["rank"].between(1, k).all()
    # another utility for one type is seen as a deviation
    m2, _ = train_diagnostics(gm, logits, bounded=True, theory={"open": U, "closed": get_utility("linear")})
    assert m2["collapse_train/closed_graph_dev_max"] > 0.1 and m2["collapse_train/closed_objective_gap"] > 0


def test_reward_only_run_with_distinct_total_orders(tmp_path, sft_cache):
    """loop.train_policy false + distinct_oversample + diagnose_train: total orders, train metrics and parquet."""
    from rlhfsim.config import load_config
    from rlhfsim.loop import run
    from rlhfsim.tracking import read_jsonl

    k = 3
    cfg = load_config(
        "configs/tiny.yaml",
        [
            f"policy.cache_dir={sft_cache}",
            "loop.rounds=1",
            "loop.train_policy=false",
            f"loop.completions_per_prompt={k}",
            "loop.distinct_oversample=4",
            "loop.annotator.temperature=0",
            "loop.annotator.ties=break",
            "loop.diagnose_train=true",
            "reward.prompt_aware={open: inv, closed: linear}",
            "reward.epochs=3",
        ],
    )
    run(cfg, out=tmp_path / "r")
    row = read_jsonl(tmp_path / "r" / "metrics.jsonl")[-1]
    assert "objective/kl" not in row  # no PPO
    assert 0 <= row["annot/distinct_share"] <= 1
    assert 0 <= row["collapse_train/order_acc"] <= 1 and 0 <= row["collapse_train/shape"] <= 1
    for t in ("open", "closed"):
        assert 0 <= row[f"collapse_train/{t}_graph_dev_max"] <= 1
        assert np.isfinite(row[f"collapse_train/{t}_objective_gap"])
    df = pd.read_parquet(tmp_path / "r" / "rewards" / "train_round_001.parquet")
    assert df["rank"].between(1, k).all() and df["reward"].between(0, 1).all()
    # groups whose k texts are distinct carry a total order: ranks 1..k each once
    full = df.groupby("group")["rank"].apply(lambda r: sorted(r) == list(range(1, k + 1)))
    assert full.mean() >= row["annot/distinct_share"] - 1e-9


def test_objective_gap_zero_at_the_optimum_positive_off_it():
    from rlhfsim.diagnostics.train_profiles import objective_gap
    from rlhfsim.reward.utilities import get_utility

    U, k = get_utility("linear"), 4
    opt = optimal_rewards(U, k)  # [0, 0, 1, 1]
    rank = np.array([[4, 1, 3, 2]], dtype=float)
    prefs = rank[:, :, None] > rank[:, None, :]
    at_opt = opt[(rank - 1).astype(int)]
    assert objective_gap(at_opt, prefs, U) == pytest.approx(0.0)
    # all rewards equal: every pair has U(0) = 0, while the optimum's mean over the 6 pairs is 4/6
    assert objective_gap(np.full((1, k), 0.5), prefs, U) == pytest.approx(4 / 6)
    # the right sorted values in the wrong order: the profile matches, the objective does not
    assert objective_gap(at_opt[:, ::-1], prefs, U) > 0.5
    # a closed group with one right answer (ties among the wrong ones dropped): the optimum is (1, 0, 0, 0),
    # which the total-order optimum by rank would not give; the gap is 0 there
    closed = np.array([[[False, True, True, True]] + [[False] * 4] * 3])
    assert objective_gap(np.array([[1.0, 0.0, 0.0, 0.0]]), closed, get_utility("-1/x")) == pytest.approx(0.0, abs=1e-9)
